"""The neural trainer's loop options: data paths, progressive stages, regularisation, compilation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modalbag
from modalbag import ConfigError
from modalbag.data.dataset import is_memory_mapped
from modalbag.kernel.schedules import ConstantSchedule
from modalbag.plugins.trainers.neural._mixing import cutmix_images, drop_modalities, mixed_loss
from modalbag.training.progressive import StageScaledSchedule, matches
from tests.conftest import FAST, make_model

QUICK = {**FAST, "epochs": 3, "early_stopping_patience": 0, "threads_per_learner": 1}


def _train(n_bags: int = 2, model=None, **options):
    model = model or make_model(n_samples=240, seed=5)
    model.create_ensemble(n_bags=n_bags, random_state=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**QUICK, **options})
    return model


def _predictions(model, data):
    return model.predict_proba(data)


# -- data paths -----------------------------------------------------------------------------------


def test_streamed_dataloader_path_gives_the_in_memory_result(tmp_path):
    memory = _train(data_loading="memory")
    streamed = _train(data_loading="loader")
    data, _ = memory.synthetic_task.sample(50, random_state=2)
    assert any("streamed by a DataLoader" in n for r in streamed.learners.values() for n in r.notes)
    np.testing.assert_allclose(_predictions(streamed, data), _predictions(memory, data), rtol=1e-5, atol=1e-6)
    for lid, record in memory.learners.items():
        assert [e.train_loss for e in streamed.learners[lid].records] == pytest.approx(
            [e.train_loss for e in record.records], rel=1e-5)


def test_memory_mapped_files_stream_with_worker_processes(tmp_path):
    source = make_model(n_samples=240, seed=5)
    paths = {}
    for name, array in source.dataset.arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        paths[name] = (str(tmp_path / f"{name}.npy"), source.dataset.specs[name].type)
    on_disk = modalbag.create_model_from_files(paths, source.dataset.labels)
    assert all(is_memory_mapped(a) for a in on_disk.dataset.arrays.values())
    streamed = _train(model=on_disk, n_bags=1, num_workers=1, persistent_workers=True)
    in_memory = _train(model=make_model(n_samples=240, seed=5), n_bags=1, data_loading="memory")
    notes = [n for r in streamed.learners.values() for n in r.notes]
    assert any("streamed by a DataLoader (1 workers)" in n for n in notes)
    data, _ = source.synthetic_task.sample(40, random_state=3)
    np.testing.assert_allclose(_predictions(streamed, data), _predictions(in_memory, data), rtol=1e-5, atol=1e-6)


def test_dataloader_workers_never_outnumber_the_cores(monkeypatch):
    from modalbag.plugins.trainers.neural import _batches

    monkeypatch.setattr(_batches, "available_cores", lambda: 1)  # the spec's num_workers=16, on one core
    model = _train(n_bags=1, epochs=1, num_workers=16, persistent_workers=True)
    notes = [n for r in model.learners.values() for n in r.notes]
    assert any("num_workers=16 is more than the 1 cores" in n for n in notes), notes
    assert any("streamed by a DataLoader (1 workers)" in n for n in notes), notes
    assert _batches.loader_workers(0) == 0 and _batches.loader_workers(1) == 1


# -- progressive learning -------------------------------------------------------------------------


class _Snapshots:
    """Keeps each learner's parameters after setup and after every epoch."""

    def __init__(self):
        self.after: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    @modalbag.hookimpl
    def modalbag_fit_setup(self, run, fit):
        self.after[(fit.spec.learner_id, 0)] = {k: v.detach().clone() for k, v in fit.model.named_parameters()}

    @modalbag.hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        self.after[(fit.spec.learner_id, record.epoch)] = {k: v.detach().clone()
                                                           for k, v in fit.model.named_parameters()}


STAGES = [{"epochs": 2, "frozen_layers": ["encoder"], "lr_multiplier": 0.1},
          {"epochs": 1, "frozen_layers": [], "lr_multiplier": 1.0},
          {"epochs": 1, "fine_tuning": True, "lr_multiplier": 0.01}]


def test_progressive_stages_freeze_layers_and_scale_the_learning_rate():
    snaps = _Snapshots()
    model = make_model(n_samples=240, seed=5, plugins=[snaps])
    _train(model=model, n_bags=1, epochs=4, scheduler_type="none", warmup_epochs=0,
           enable_progressive_learning=True, progressive_stages=STAGES)
    (lid, record), = model.learners.items()
    start, epoch2, epoch3 = snaps.after[(lid, 0)], snaps.after[(lid, 2)], snaps.after[(lid, 3)]
    encoder = [k for k in start if k.startswith("encoders.")]
    others = [k for k in start if k.startswith("head.")]
    assert encoder and others
    for k in encoder:  # frozen through stage one
        assert torch.equal(start[k], epoch2[k]), k
    assert any(not torch.equal(start[k], epoch2[k]) for k in others)
    assert any(not torch.equal(epoch2[k], epoch3[k]) for k in encoder)  # unfrozen in stage two
    rates = [r.learning_rate for r in record.records]
    assert rates == pytest.approx([1e-4, 1e-4, 1e-3, 1e-5])  # learning_rate 1e-3 x the stage multipliers
    assert sum("lr x0.1" in n for n in record.notes) == 1 and any("fine-tuning" in n for n in record.notes)


def test_progressive_stage_naming_an_unknown_module_fails_the_learner_clearly():
    model = make_model(n_samples=120, seed=5)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    with pytest.raises(modalbag.TrainingFailedError, match="freezes 'decoder'.*modules: .*encoders"):
        model.train_ensemble(**QUICK, enable_progressive_learning=True,
                             progressive_stages=[{"epochs": 1, "frozen_layers": ["decoder"]}])


def test_progressive_config_errors_name_the_stage():
    with pytest.raises(ConfigError, match=r"progressive_stages\[1\].lr_multiplier must be a number > 0"):
        modalbag.TrainingConfig.from_dict({"enable_progressive_learning": True,
                                           "progressive_stages": [{"epochs": 2}, {"epochs": 2, "lr_multiplier": 0}]})


def test_stage_multiplier_leaves_a_relative_schedule_its_own_state():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)

    class Halving:
        def after_batch(self):
            for g in optimizer.param_groups:
                g["lr"] *= 0.5

        def after_epoch(self, val_loss):
            pass

    scaled = StageScaledSchedule(optimizer, Halving())
    scaled.set_multiplier(0.1)
    scaled.after_batch()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    scaled.set_multiplier(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    StageScaledSchedule(optimizer, ConstantSchedule()).after_epoch(None)


def test_layer_names_match_module_paths():
    assert matches("encoders.text.body.0.weight", "encoder")
    assert matches("head.3.bias", "head") and not matches("head.3.bias", "encoder")


# -- regularisation -------------------------------------------------------------------------------


def test_modality_dropout_hides_present_modalities_but_never_all():
    torch.manual_seed(0)
    masks = torch.ones(4000, 3, dtype=torch.bool)
    masks[:1000, 1] = False
    dropped = drop_modalities(masks, 0.3)
    assert dropped.any(dim=1).all()
    assert not (dropped & ~masks).any()  # never reveals a missing modality
    share = 1 - dropped[1000:].float().mean().item()
    assert 0.25 < share < 0.32  # about the rate, less the rows rescued from losing everything


def test_mixed_loss_weights_both_targets():
    loss_fn = torch.nn.CrossEntropyLoss()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 1])
    perm = torch.tensor([1, 0])
    expected = 0.7 * loss_fn(logits, target) + 0.3 * loss_fn(logits, target[perm])
    assert mixed_loss(loss_fn, logits, target, 0.7, perm) == pytest.approx(expected.item())


def test_cutmix_pastes_a_box_whose_area_sets_lambda():
    torch.manual_seed(1)
    images = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 8, 8).clone()
    inputs = {"img": images.clone(), "vec": torch.zeros(2, 3)}
    lam, perm = cutmix_images(inputs, alpha=1.0)
    changed = (inputs["img"] != images).float().mean(dim=(1, 2, 3))
    if perm.tolist() == [1, 0]:
        assert changed.tolist() == pytest.approx([1 - lam, 1 - lam])
    assert cutmix_images({"vec": torch.zeros(2, 3)}, alpha=1.0) is None


@pytest.mark.parametrize("option", [{"modality_dropout": 0.3}, {"mixup_alpha": 0.4}, {"feature_dropout": 0.2},
                                    {"noise_injection": 0.1}])
def test_regularised_training_is_reproducible_and_changes_the_model(option):
    first, again, plain = _train(n_bags=1, **option), _train(n_bags=1, **option), _train(n_bags=1)
    data, _ = first.synthetic_task.sample(30, random_state=4)
    np.testing.assert_array_equal(_predictions(first, data), _predictions(again, data))
    assert not np.allclose(_predictions(first, data), _predictions(plain, data))


def test_cutmix_and_image_augmentation_act_on_raw_images_only():
    def model():
        return modalbag.create_synthetic_model({"img": ((3, 8, 8), "image"), "meta": (4, "tabular")},
                                               n_samples=160, n_classes=2, random_state=0)

    mixed, plain = _train(model=model(), n_bags=1, cutmix_alpha=0.5, image_augmentation=True), _train(model=model(), n_bags=1)
    assert all(np.isfinite([e.train_loss for r in mixed.learners.values() for e in r.records]))
    data, _ = mixed.synthetic_task.sample(30, random_state=4)
    assert not np.allclose(_predictions(mixed, data), _predictions(plain, data))
    vectors_only = _train(n_bags=1, cutmix_alpha=0.5, image_augmentation=True)  # 'image' is a feature vector here
    reference = _train(n_bags=1)
    data, _ = reference.synthetic_task.sample(30, random_state=4)
    np.testing.assert_array_equal(_predictions(vectors_only, data), _predictions(reference, data))


def test_text_normalization_makes_predictions_blind_to_text_scale():
    model = _train(n_bags=1, text_normalization=True)
    data, _ = model.synthetic_task.sample(30, random_state=4)
    scaled = {**data, "text": data["text"] * 7.0}
    np.testing.assert_allclose(_predictions(model, scaled), _predictions(model, data), rtol=1e-4, atol=1e-6)


# -- compilation ----------------------------------------------------------------------------------


def test_compile_failure_falls_back_to_eager_with_a_note(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = _train(n_bags=1, compile_model=True)
    (record,) = model.learners.values()
    assert record.ok and any("torch.compile failed (RuntimeError: no compiler here)" in n for n in record.notes)


@pytest.mark.slow
def test_compile_model_trains_compiled_where_the_compiler_works():
    model = _train(n_bags=1, compile_model=True, epochs=2)
    (record,) = model.learners.values()
    assert record.ok and any(n.startswith("compile_model:") for n in record.notes)


def test_trainer_options_are_checked_before_training():
    report = modalbag.validate_training_config({"device": "tpu", "mixup_alpha": -1})
    assert not report["valid"] and any("device must be" in i for i in report["issues"])
    assert any("mixup_alpha" in i for i in report["issues"])
    model = make_model(n_samples=100)
    with pytest.raises(ConfigError, match="device must be"):
        model.train_ensemble(**QUICK, device="tpu")
    assert model.learners == {}


def test_apply_multimodal_preprocessing_reaches_training():
    model = make_model(n_samples=240, seed=5)
    model.apply_multimodal_preprocessing(text_normalization=True, feature_scaling=True, modality_dropout=0.2)
    _train(model=model, n_bags=1)
    data, _ = model.synthetic_task.sample(30, random_state=4)
    scaled = {**data, "text": data["text"] * 5.0}
    np.testing.assert_allclose(model.predict_proba(scaled), model.predict_proba(data), rtol=1e-4, atol=1e-6)
    assert model.training_config.plugin_options["modality_dropout"] == 0.2
    with pytest.raises(ConfigError, match="modality_dropout"):
        model.apply_multimodal_preprocessing(modality_dropout=1.5)



def test_multilabel_label_smoothing_pulls_each_label_toward_one_half():
    """The spec's recommendation example smooths multilabel targets: y*(1-eps)+eps/2 per label."""
    from modalbag.plugins.trainers.neural._learner import SmoothedBCEWithLogitsLoss

    logits = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    loss = SmoothedBCEWithLogitsLoss(0.1)(logits, targets)
    p = torch.sigmoid(logits)[0]  # by hand: targets 0.95 and 0.05
    expected = -(0.95 * torch.log(p[0]) + 0.05 * torch.log(1 - p[0]) + 0.05 * torch.log(p[1]) + 0.95 * torch.log(1 - p[1])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    model = make_model(n_samples=120, n_classes=3, task_type="multilabel")
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    assert model.train_ensemble(**{**FAST, "epochs": 1, "label_smoothing": 0.1})
    with pytest.raises(ConfigError, match="label_smoothing applies to classification and multilabel"):
        modalbag.TrainingConfig.from_dict({"task_type": "regression", "label_smoothing": 0.1})
