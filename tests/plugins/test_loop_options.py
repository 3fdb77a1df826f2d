"""The neural loop's data and evaluation options: shuffle, drop_last, eval_interval, memory cleanup,
and the CUDA backend switches (set while a learner trains, restored after)."""

from __future__ import annotations

import numpy as np
import torch

from modalbag import hookimpl
from modalbag.plugins.trainers.neural import _loop
from tests.conftest import make_model
from tests.plugins.test_precision import _fit_one


class Batches:
    """Sees every training batch (through the auxiliary-loss hook, adding no term)."""

    def __init__(self):
        self.targets: list[np.ndarray] = []
        self.flags: list[tuple[bool, bool, bool]] = []

    @hookimpl
    def modalbag_auxiliary_losses(self, run, fit, batch, output):
        self.targets.append(batch["target"].numpy().copy())
        self.flags.append((torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
                           torch.backends.cudnn.allow_tf32))


def test_shuffle_false_keeps_the_rows_order_and_drop_last_leaves_out_the_short_batch():
    seen = Batches()
    _fit_one(batch_size=40, steps=1, epochs=2, shuffle=False, drop_last=True, plugins=[seen])
    assert [len(t) for t in seen.targets] == [40, 40, 40, 40]  # 96 rows: two full batches an epoch
    np.testing.assert_array_equal(np.concatenate(seen.targets[:2]), np.concatenate(seen.targets[2:]))  # same order
    shuffled = Batches()
    _fit_one(batch_size=40, steps=1, epochs=2, plugins=[shuffled])
    assert [len(t) for t in shuffled.targets] == [40, 40, 16, 40, 40, 16]  # the short batch is kept by default
    assert not np.array_equal(np.concatenate(shuffled.targets[:3]), np.concatenate(shuffled.targets[3:]))


def test_eval_interval_validates_every_n_epochs_and_the_last_and_patience_counts_validations():
    _, result = _fit_one(batch_size=32, steps=1, epochs=7, eval_interval=3, validation_split=0.25,
                         early_stopping_patience=0)
    measured = [r.epoch for r in result.records if r.val_loss is not None]
    skipped = [r.epoch for r in result.records if r.validation_skipped]
    assert measured == [3, 6, 7] and skipped == [1, 2, 4, 5]
    # a loss that never improves: patience 2 stops after two validations without improvement (epoch 6 of
    # interval 2 means validations at 2, 4, 6), not after two epochs
    _, stopped = _fit_one(batch_size=32, steps=1, epochs=20, eval_interval=2, validation_split=0.25,
                          early_stopping_patience=2, min_delta=1.0)
    stop = [n for n in stopped.notes if n.startswith("stopped after epoch")]
    assert stop and "stopped after epoch 6" in stop[0] and "2 validations" in stop[0], stopped.notes


def test_memory_cleanup_runs_every_n_epochs(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(_loop, "release_memory", lambda device: calls.append(device.type))
    _fit_one(batch_size=32, steps=1, epochs=6, memory_cleanup_interval=2)
    assert calls == ["cpu", "cpu", "cpu"]


def test_cuda_backend_switches_hold_while_the_learner_trains_and_are_restored():
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    seen = Batches()
    _fit_one(batch_size=32, steps=1, epochs=1, cudnn_benchmark=True, tf32=True, plugins=[seen])
    assert set(seen.flags) == {(True, True, True)}
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32) == before


def test_modality_balancing_hides_the_heavier_modality_more_often():
    from modalbag.plugins.trainers.neural._loop import modality_drop_rates
    from modalbag.plugins.trainers.neural._mixing import drop_modalities
    from modalbag.plugins.trainers.neural._options import NeuralOptions

    analysis = {"importance": {"text": 0.3, "image": 0.1, "meta": None}}  # analyze_modality_importance's form
    options = NeuralOptions(modality_balancing=True, modality_weights=analysis, modality_dropout=0.2)
    rates = modality_drop_rates(options, ("text", "image", "meta"), torch.device("cpu"))
    torch.testing.assert_close(rates, torch.tensor([0.3, 0.1, 0.2]))  # mean 0.2; meta gets the mean weight
    torch.manual_seed(0)
    masks = drop_modalities(torch.ones(20000, 3, dtype=torch.bool), rates)
    hidden = 1 - masks.float().mean(dim=0)
    assert hidden[0] > hidden[2] > hidden[1]
    assert modality_drop_rates(NeuralOptions(), ("a", "b"), torch.device("cpu")) is None
    _, result = _fit_one(batch_size=32, steps=1, epochs=1, modality_balancing=True,
                         modality_weights={"text": 2.0, "image": 1.0})
    assert np.isfinite(result.records[-1].train_loss)


def test_test_time_augmentation_predicts_the_mean_of_seeded_augmented_copies():
    import attrs

    from modalbag.plugins.trainers.neural import _options

    _, result = _fit_one(batch_size=32, steps=1, epochs=2)
    learner = result.model
    model = make_model(n_samples=200, seed=3)
    inputs = {m: model.dataset.arrays[m][:50] for m in learner.spec.modalities}
    plain = learner.predict_output(inputs)
    learner.options = attrs.evolve(learner.options, test_time_augmentation=True, tta_samples=5)
    averaged = learner.predict_output(inputs)
    x = {m: torch.as_tensor(v, dtype=torch.float32) for m, v in inputs.items()}
    copies = learner.augmented_outputs(x, torch.ones(50, len(x), dtype=torch.bool))
    assert copies.shape == (5, 50, plain.shape[1])
    np.testing.assert_allclose(averaged, copies.mean(axis=0), rtol=0, atol=1e-7)  # the mean of the copies
    assert np.abs(copies[0] - copies[1]).max() > 1e-4  # the copies differ ...
    np.testing.assert_array_equal(learner.predict_output(inputs), averaged)  # ... but the same seed, same result
    learner.options = attrs.evolve(learner.options, tta_seed=1)
    assert np.abs(learner.predict_output(inputs) - averaged).max() > 1e-6
    learner.options = attrs.evolve(learner.options, tta_noise=0.0, tta_modality_dropout=0.0)
    np.testing.assert_allclose(learner.predict_output(inputs), plain, atol=1e-6)  # no augmentation: the plain output
    assert _options.NeuralOptions().test_time_augmentation is False


def test_the_adversarial_copy_raises_the_loss_and_adversarial_training_records_its_term():
    from modalbag.plugins.trainers.neural._adversarial import adversarial_inputs, feature_scales

    _, result = _fit_one(batch_size=32, steps=1, epochs=3, adversarial_training=True, adversarial_epsilon=0.2)
    assert all("adversarial" in r.loss_terms for r in result.records)
    net = result.model.model.eval()
    model = make_model(n_samples=200, seed=3)
    mods = result.model.spec.modalities
    x = {m: torch.as_tensor(model.dataset.arrays[m][:64]) for m in mods}
    masks = torch.ones(64, len(mods), dtype=torch.bool)
    from modalbag.data.dataset import encode_labels

    target = torch.as_tensor(encode_labels(model.dataset.labels, "classification")[0][:64])
    loss_fn = torch.nn.CrossEntropyLoss()
    scales = feature_scales(net)
    with torch.no_grad():
        clean = float(loss_fn(net(x, masks)["logits"], target))
    for steps in (1, 5):  # FGSM and PGD
        radius = {m: 0.2 * scales[m] for m in mods}
        adv = adversarial_inputs(net, loss_fn, x, masks, target, radius, steps)
        with torch.no_grad():
            assert float(loss_fn(net(adv, masks)["logits"], target)) > clean
        for m in mods:  # within the ball
            assert torch.all((adv[m] - x[m]).abs() <= radius[m] + 1e-5)
    assert all(p.grad is None for p in net.parameters())  # the search leaves no parameter gradient
