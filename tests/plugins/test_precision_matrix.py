"""Every training feature under every precision, forced whatever this machine's hardware would pick.

``amp_dtype='auto'`` follows the hardware (bf16 on a CPU with AVX512-BF16/AMX or an Ampere GPU, fp32
elsewhere), so a suite that only ran the default would meet one path per machine: these tests force
fp32, bf16 autocast and fp16 autocast with dynamic loss scaling (emulated on a CPU, but the same
code path a pre-Ampere GPU takes) through the whole training loop. CUDA runs of the same matrix are
marked ``cuda`` and run by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modalbag
from modalbag import hookimpl

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]
PRECISIONS = ["fp32", "bf16", "fp16"]
#: What each forced precision writes in the learner's notes.
NOTE = {"fp32": "fp32 forced", "bf16": "bf16 autocast", "fp16": "fp16 autocast with dynamic loss scaling"}
OBJECTIVES = ["reconstruction", "alignment", "consistency", "information", "prediction"]
STAGES = [{"epochs": 1, "frozen_layers": ["encoder"], "lr_multiplier": 0.1},
          {"epochs": 2, "frozen_layers": [], "lr_multiplier": 1.0}]

BASE = {"epochs": 3, "batch_size": 32, "mixed_precision": True, "save_checkpoints": False, "warmup_epochs": 0,
        "early_stopping_patience": 0, "threads_per_learner": 1, "enable_denoising": False, "random_state": 0}

#: One row per feature on the training path: the options that switch it on.
FEATURES = {
    **{f"objective-{name}": {"enable_denoising": True, "denoising_objectives": [name],
                             "denoising_strategy": "fixed"} for name in OBJECTIVES},
    **{f"strategy-{name}": {"enable_denoising": True, "denoising_objectives": OBJECTIVES,
                            "denoising_strategy": name} for name in ("fixed", "adaptive", "curriculum")},
    "objectives-taking-turns": {"enable_denoising": True, "denoising_objectives": OBJECTIVES,
                                "denoising_objectives_per_step": 1},
    "mixup": {"mixup_alpha": 0.4, "enable_denoising": True, "denoising_objectives": ["consistency"]},
    "cutmix": {"cutmix_alpha": 0.5},
    "modality-dropout": {"modality_dropout": 0.3, "enable_denoising": True, "denoising_objectives": ["reconstruction"]},
    "progressive": {"enable_progressive_learning": True, "progressive_stages": STAGES, "scheduler_type": "none"},
    "accumulation": {"gradient_accumulation_steps": 2, "enable_denoising": True,
                     "denoising_objectives": ["alignment"]},
    "early-stopping": {"early_stopping_patience": 1, "epochs": 12, "learning_rate": 0.1},
    "adversarial-pgd": {"adversarial_training": True, "adversarial_steps": 2, "enable_denoising": True,
                        "denoising_objectives": ["reconstruction", "alignment"]},
    "test-time-augmentation": {"test_time_augmentation": True, "tta_samples": 2},
    "domain-coral": {"domain_adaptation": "coral", "enable_denoising": True,
                     "denoising_objectives": ["reconstruction", "alignment"]},
    "domain-dann": {"domain_adaptation": "dann", "enable_denoising": True, "denoising_objectives": ["consistency"]},
    "ncl-members": {"ncl_members": 3, "ncl_lambda": 0.5, "mixup_alpha": 0.4, "enable_denoising": True,
                    "denoising_objectives": ["reconstruction", "consistency"]},
}


def _model(plugins=(), n_samples: int = 120):
    """Three modalities, one of them raw images (so CutMix has something to cut)."""
    return modalbag.create_synthetic_model(
        {"img": ((3, 8, 8), "image"), "text": (12, "text"), "meta": (5, "tabular")},
        n_samples=n_samples, n_classes=3, random_state=4, plugins=list(plugins))


def _train(precision: str, device: str, plugins=(), **options):
    model = _model(plugins)
    if options.get("domain_adaptation"):  # unlabelled target rows: another draw, every feature moved
        options["target_data"] = {m: x * 1.5 + 0.5 for m, x in model.synthetic_task.sample(60, 9)[0].items()}
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**BASE, "amp_dtype": precision, "device": device, **options})
    (record,) = model.learners.values()
    return model, record


def _assert_trained_in(record, precision: str) -> None:
    assert record.status == "trained", record.error
    assert any(NOTE[precision] in note for note in record.notes), record.notes
    for epoch in record.records:
        assert np.isfinite(epoch.train_loss), epoch
        assert all(np.isfinite(v) for v in epoch.loss_terms.values()), epoch.loss_terms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("feature", list(FEATURES))
def test_every_feature_trains_under_every_precision(feature, precision, device):
    options = FEATURES[feature]
    model, record = _train(precision, device, **options)
    _assert_trained_in(record, precision)
    if options.get("enable_denoising"):  # the objectives ran, with finite terms, under this precision
        ran = {key.split(".")[1] for epoch in record.records for key in epoch.loss_terms if key.startswith("denoising.")}
        assert ran == set(options["denoising_objectives"]), ran
    if options.get("domain_adaptation"):  # the domain term ran, finite, under this precision
        term = "coral" if options["domain_adaptation"] == "coral" else "domain"
        assert all(term in epoch.loss_terms for epoch in record.records), record.records[-1].loss_terms
    if options.get("ncl_members"):  # the heads' ambiguity, finite, under this precision
        assert all("ncl_ambiguity" in epoch.loss_terms for epoch in record.records), record.records[-1].loss_terms
    if feature == "early-stopping":
        assert any("restored the weights of epoch" in note for note in record.notes), record.notes
    data, _ = model.synthetic_task.sample(20, random_state=1)
    proba = model.predict_proba(data)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_denoised_training_learns_under_every_precision(precision):
    _, record = _train(precision, "cpu", epochs=6, enable_denoising=True, denoising_objectives=OBJECTIVES,
                       learning_rate=3e-3)
    _assert_trained_in(record, precision)
    losses = [epoch.train_loss for epoch in record.records]
    assert losses[-1] < losses[0], losses


def test_half_precision_activations_reach_the_objectives():
    """The heads really run in bf16 (the point of autocast) while the losses they return are fp32."""
    seen: dict[str, torch.dtype] = {}

    class Spy:
        @hookimpl
        def modalbag_auxiliary_losses(self, run, fit, batch, output):
            seen["embeddings"] = output["embeddings"].dtype

    _, record = _train("bf16", "cpu", plugins=[Spy()], enable_denoising=True, denoising_objectives=OBJECTIVES)
    _assert_trained_in(record, "bf16")
    assert seen["embeddings"] == torch.bfloat16


class _Interrupt:
    """Stops the run (as Ctrl-C would) at the end of one epoch, before its checkpoint is written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    @hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        if record.epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_checkpoint_and_resume_continue_exactly_under_every_precision(precision, device, tmp_path):
    """The loss scale, autocast choice and objective state survive a resume: the same losses, the same model."""
    options = {"epochs": 4, "save_checkpoints": True, "checkpoint_interval": 1, "enable_denoising": True,
               "denoising_objectives": OBJECTIVES, "denoising_strategy": "adaptive"}
    reference, ref_record = _train(precision, device, run_dir=str(tmp_path / "ref"), **options)
    with pytest.raises(KeyboardInterrupt):
        _train(precision, device, plugins=[_Interrupt(2)], run_dir=str(tmp_path / "run"), **options)
    resumed, record = _train(precision, device, run_dir=str(tmp_path / "run"), resume=True, **options)
    _assert_trained_in(record, precision)
    assert any("resumed from the checkpoint of epoch 1" in note for note in record.notes), record.notes
    assert [e.train_loss for e in record.records] == [e.train_loss for e in ref_record.records]
    data, _ = reference.synthetic_task.sample(20, random_state=1)
    np.testing.assert_array_equal(resumed.predict_proba(data), reference.predict_proba(data))
