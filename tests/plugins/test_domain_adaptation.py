"""domain_adaptation: CORAL and DANN on the fused representation of the neural trainer, target_data
checks, the config key, the note on learners without a representation, and the importance weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalbag import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import encode_labels
from modalbag.data.domain import AdaptedDataset, importance_weights, target_domain_inputs
from modalbag.engine.engine import Engine
from modalbag.errors import ConfigError, DataError
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.registry import default_catalog
from modalbag.kernel.run import TaskInfo
from modalbag.plugins.trainers.neural._domain import (
    DOMAIN_CLASSIFIER,
    coral_loss,
    covariance,
    grad_reverse,
    reversal_coefficient,
)
from tests.conftest import make_model

MODS = ("text", "image", "meta")
BASE = {"epochs": 10, "enable_denoising": False, "save_checkpoints": False, "early_stopping_patience": 0,
        "warmup_epochs": 0, "validation_split": 0.0, "threads_per_learner": 1, "batch_size": 64,
        "learning_rate": 3e-3}


def shift(data: dict[str, np.ndarray], seed: int = 7) -> dict[str, np.ndarray]:
    """A covariate shift: every feature rescaled (0.3x to 3x) and moved by about one of its deviations."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, x in data.items():
        sd = x.std(axis=0) + 1e-6
        out[name] = (x * rng.uniform(0.3, 3.0, x.shape[1:]) + rng.normal(0, 1, x.shape[1:]) * sd).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def domains():
    model = make_model(n_samples=400, seed=5)
    target, target_labels = model.synthetic_task.sample(400, 99)
    return model, shift(target), target_labels


def fit_one(model, target=None, **options):
    dataset = model.dataset
    if target is not None:
        dataset = AdaptedDataset.of(dataset, target_domain_inputs(target, dataset.specs))
    targets, classes = encode_labels(dataset.labels, "classification")
    task = TaskInfo("classification", len(classes), classes, np.bincount(targets) / len(targets))
    config = TrainingConfig.from_dict({**BASE, **options})
    engine = Engine(default_catalog())
    run = engine.prepare(config, task)
    n = dataset.n_samples
    bag = Bag(0, MODS, np.arange(n), np.empty(0, dtype=np.int64), seed=11)
    spec = LearnerSpec("bag_000", 0, "neural", MODS, {m: dataset.specs[m].type for m in MODS},
                       {"hidden_dim": 32, "embedding_dim": 16})
    result = fit_learner(spec, bag, dataset, targets, run, engine.catalog)
    assert result.ok, result.error
    return result


def fused(result, data):
    net = result.model.model.eval()
    x = {m: torch.as_tensor(data[m]) for m in MODS}
    with torch.no_grad():
        return net(x, torch.ones(len(x[MODS[0]]), len(MODS), dtype=torch.bool))["fused"]


def accuracy(result, data, labels):
    return float(np.mean(result.model.predict_output(data).argmax(axis=1) == labels))


# -- the mechanism ---------------------------------------------------------------------------------


def test_coral_loss_is_zero_for_one_distribution_and_matches_the_formula():
    x = torch.randn(64, 5)
    assert float(coral_loss(x, x.clone())) == 0.0
    y = torch.randn(64, 5) * 2.0
    expected = ((np.cov(x.numpy(), rowvar=False) - np.cov(y.numpy(), rowvar=False)) ** 2).sum() / (4 * 25)
    np.testing.assert_allclose(float(coral_loss(x, y)), expected, rtol=1e-4)
    np.testing.assert_allclose(covariance(x).numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-5)
    # half-precision features: the covariance is still computed in fp32, and the loss is fp32
    assert coral_loss(x.half(), y.half()).dtype == torch.float32


def test_gradient_reversal_is_the_identity_forward_and_flips_the_gradient():
    x = torch.randn(8, 3, requires_grad=True)
    w = torch.randn(3)
    (x * w).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    out = grad_reverse(x, 0.5)
    torch.testing.assert_close(out, x)
    (out * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * plain)
    assert reversal_coefficient(0.0, 2.0) == 0.0 and 1.98 < reversal_coefficient(1.0, 2.0) <= 2.0


def test_a_source_only_model_degrades_on_the_shifted_target_and_coral_narrows_the_covariance_gap(domains):
    model, target, target_labels = domains
    source = {m: model.dataset.arrays[m] for m in MODS}
    plain = fit_one(model)
    assert accuracy(plain, source, model.dataset.labels) - accuracy(plain, target, target_labels) > 0.1
    coral = fit_one(model, target, domain_adaptation="coral", domain_adaptation_weight=10.0)
    assert all("coral" in r.loss_terms for r in coral.records)
    gaps = {}
    for name, result in (("plain", plain), ("coral", coral)):
        gaps[name] = float(coral_loss(fused(result, source), fused(result, target)))
    assert gaps["coral"] < 0.5 * gaps["plain"], gaps
    assert any("domain_adaptation='coral' on 400 target rows" in n for n in coral.notes)


def test_dann_trains_a_domain_classifier_that_is_not_saved_with_the_learner(domains, tmp_path):
    model, target, _ = domains
    result = fit_one(model, target, domain_adaptation="dann", epochs=3)
    assert all("domain" in r.loss_terms for r in result.records)
    assert DOMAIN_CLASSIFIER in result.model.model.aux
    from modalbag.plugins.trainers.neural import NeuralLearner

    loaded = NeuralLearner.load(result.model.save(tmp_path / "learner"))  # the aux head is training-only
    np.testing.assert_allclose(loaded.predict_output({m: model.dataset.arrays[m][:20] for m in MODS}),
                               result.model.predict_output({m: model.dataset.arrays[m][:20] for m in MODS}),
                               atol=1e-5)


@pytest.mark.parametrize("method", ["coral", "dann"])
def test_domain_adaptation_runs_under_mixed_precision_and_with_denoising(domains, method):
    model, target, _ = domains
    result = fit_one(model, target, domain_adaptation=method, epochs=2, mixed_precision=True, amp_dtype="bf16",
                     enable_denoising=True, denoising_objectives=["reconstruction", "alignment"])
    term = "coral" if method == "coral" else "domain"
    assert all(np.isfinite(r.loss_terms[term]) and "denoising.reconstruction" in r.loss_terms
               for r in result.records)


# -- target_data and the config key ----------------------------------------------------------------


def test_the_key_validates_and_true_means_coral():
    assert TrainingConfig.from_dict({"domain_adaptation": True}).domain_adaptation == "coral"
    assert TrainingConfig.from_dict({"domain_adaptation": "DANN"}).domain_adaptation == "dann"
    assert TrainingConfig.from_dict({"domain_adaptation": False}).domain_adaptation is None
    assert TrainingConfig.from_dict({"domain_adaptation": "dann"}).domain_weight() == 0.3  # per-method defaults
    assert TrainingConfig.from_dict({"domain_adaptation": "coral"}).domain_weight() == 1.0
    with pytest.raises(ConfigError, match="must be 'coral', 'dann'"):
        TrainingConfig.from_dict({"domain_adaptation": "mmd"})
    with pytest.raises(ConfigError, match="domain_adaptation_weight must be > 0"):
        TrainingConfig.from_dict({"domain_adaptation_weight": 0})


def test_target_data_is_checked_against_the_training_modalities():
    model = make_model(n_samples=50)
    specs = model.dataset.specs
    good = {"text": np.zeros((10, 16)), "meta": np.ones((10, 6))}  # a missing modality is allowed
    ds = target_domain_inputs(good, specs)
    assert ds.names == list(specs) and not ds.masks["image"].any() and ds.masks["meta"].all()
    with pytest.raises(DataError, match="target_data has modality 'txt'.*did you mean 'text'"):
        target_domain_inputs({"txt": np.zeros((10, 16))}, specs)
    with pytest.raises(DataError, match=r"target_data\['meta'\] has per-sample shape \(5,\).*\(6,\)"):
        target_domain_inputs({"meta": np.zeros((10, 5))}, specs)
    with pytest.raises(DataError, match="at least 2 target rows"):
        target_domain_inputs({"meta": np.zeros((1, 6))}, specs)
    with pytest.raises(DataError, match="non-empty mapping"):
        target_domain_inputs(np.zeros((10, 6)), specs)


def test_domain_adaptation_without_target_data_is_an_error_naming_target_data():
    model = make_model(n_samples=60)
    with pytest.raises(ConfigError, match=r"pass target_data=\{modality: array\}"):
        model.train_ensemble(domain_adaptation=True, epochs=1)


def test_classical_learners_note_that_domain_adaptation_does_not_apply(domains):
    model, target, _ = domains
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble(domain_adaptation="coral", target_data=target, epochs=1, enable_denoising=False,
                         save_checkpoints=False)
    notes = [n for r in model.learners.values() for n in r.notes]
    assert notes and all("does not apply to this logistic learner" in n for n in notes if "domain" in n)
    assert any("does not apply" in n for n in notes)


# -- importance weights ----------------------------------------------------------------------------


def test_importance_weights_favour_source_rows_that_look_like_the_target():
    rng = np.random.default_rng(0)
    source = target_domain_inputs({"x": rng.normal(0, 1, (600, 2))}, {"x": _spec((2,))})
    target = target_domain_inputs({"x": rng.normal(1.0, 1, (600, 2))}, {"x": _spec((2,))})
    found = importance_weights(source, target)
    w, x = found.weights, source.arrays["x"]
    np.testing.assert_allclose(w.mean(), 1.0)
    assert np.corrcoef(np.log(w), x.sum(axis=1))[0, 1] > 0.9  # rows nearer the target's mean weigh more
    assert 0.6 < found.auc < 0.95
    alike = importance_weights(source, target_domain_inputs({"x": rng.normal(0, 1, (600, 2))}, {"x": _spec((2,))}))
    assert alike.auc < 0.6 and alike.weights.std() < 0.2


def _spec(shape):
    from modalbag.kernel.modalities import ModalitySpec

    return ModalitySpec("x", "tabular", shape)


def test_importance_weights_move_the_combination_to_the_expert_that_is_right_where_the_target_is():
    from modalbag.ensemble.combination import choose_combination, greedy_weights

    n = 200
    y = np.zeros(n, dtype=np.int64)
    good, bad = np.tile([0.9, 0.1], (n, 1)), np.tile([0.3, 0.7], (n, 1))
    first = np.where(np.arange(n)[:, None] < n // 2, good, bad)  # right on the first half only
    second = np.where(np.arange(n)[:, None] < n // 2, np.tile([0.2, 0.8], (n, 1)), good)
    outputs = np.stack([first, second])
    plain = greedy_weights(outputs, y, "classification")
    target_like = np.where(np.arange(n) < n // 2, 0.1, 1.9)  # the target looks like the second half
    weighted = greedy_weights(outputs, y, "classification", sample_weight=target_like)
    assert plain[0] > plain[1] and weighted[1] > weighted[0]
    combination = choose_combination(["a", "b"], outputs, y, "classification", sample_weight=target_like)
    shares = combination.weights / combination.weights.sum() if combination.rule != "stacking" else None
    assert shares is None or shares[1] > shares[0]


def test_an_adapted_ensemble_keeps_its_importance_weights_through_export(domains, tmp_path):
    import modalbag

    model, target, _ = domains
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble(domain_adaptation="dann", target_data=target, epochs=1, enable_denoising=False,
                         save_checkpoints=False)
    weights = model.ensemble.row_weights
    assert weights is not None and len(weights) == model.dataset.n_samples
    np.testing.assert_allclose(weights.mean(), 1.0)
    assert model.domain_weights.summary()["domain_auc"] > 0.9  # the shift is plain to a linear classifier
    data = {m: target[m][:50] for m in MODS}
    expected = model.predict_proba(data)
    model.export_training_artifacts(tmp_path / "export")
    loaded = modalbag.load_ensemble(tmp_path / "export")
    np.testing.assert_allclose(loaded.ensemble.row_weights, weights)
    np.testing.assert_allclose(loaded.predict_proba(data), expected, atol=1e-6)


def test_the_target_rows_reach_worker_processes_inline_or_as_memory_mapped_files(domains, tmp_path):
    from modalbag.execution.workers import SharedData

    model, target, _ = domains
    adapted = AdaptedDataset.of(model.dataset, target_domain_inputs(target, model.dataset.specs))
    for shared in (SharedData.of(adapted, ["text", "meta"]),
                   SharedData.of(adapted, ["text", "meta"]).as_files(str(tmp_path), threshold=0)):
        opened = shared.open()
        assert opened.target_domain is not None and opened.target_domain.names == ["text", "meta"]
        np.testing.assert_array_equal(opened.target_domain.arrays["meta"], adapted.target_domain.arrays["meta"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["modality-0.npy", "modality-1.npy",
                                                         "target-modality-0.npy", "target-modality-1.npy"]
    assert SharedData.of(model.dataset, ["meta"]).domain is None
