"""Many modalities: one shared combination serves every availability pattern, whatever the call."""

from __future__ import annotations

import numpy as np
import pytest

import modalbag
from modalbag.ensemble.ensemble import EXACT_PATTERN_MAX_MODALITIES

QUIET = {"epochs": 2, "save_checkpoints": False, "threads_per_learner": 1, "random_state": 0}
N_MODALITIES = EXACT_PATTERN_MAX_MODALITIES + 2


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.random.default_rng(99).normal(size=(N_MODALITIES, 3, 3))
    return {f"m{i}": (centres[i][y] * 0.8 + rng.normal(size=(n, 3))).astype(np.float32)
            for i in range(N_MODALITIES)}, y


def _missing(data, p: float, seed: int):
    rng = np.random.default_rng(seed)
    n = len(next(iter(data.values())))
    keep = rng.random((n, len(data))) >= p
    keep[~keep.any(axis=1), 0] = True
    return {m: np.where(keep[:, [j]], x, np.nan).astype(np.float32) for j, (m, x) in enumerate(data.items())}


@pytest.fixture(scope="module")
def model():
    data, y = _data(300, 0)
    model = modalbag.create_model_from_arrays({k: (v, "tabular") for k, v in data.items()}, labels=y)
    model.create_ensemble(n_bags=10, random_state=0)
    model.select_base_learners(task_type="classification", num_classes=3, instantiate=False, trainers=["logistic"])
    model.train_ensemble(**QUIET)
    return model


def test_patterns_use_the_shared_combination_fitted_in_training(model):
    ensemble = model.ensemble
    assert ensemble.shared is not None and ensemble.shared.rule == "product"  # fitted with the ensemble
    test, y = _data(200, 1)
    missing = _missing(test, 0.5, 2)
    ensemble.forget_pattern_combinations()
    proba = model.predict_proba(missing)
    assert set(ensemble.combinations) <= {frozenset(ensemble.learners)}  # no pattern fitted one by one
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(proba.argmax(axis=1) == y) > 0.6  # three classes, about half the modalities left


def test_a_row_is_predicted_the_same_alone_or_with_any_other_rows(model):
    test, _ = _data(120, 3)
    missing = _missing(test, 0.5, 4)
    together = model.predict_proba(missing)
    model.ensemble.forget_pattern_combinations()
    for row in (0, 17, 88):
        alone = model.predict_proba({m: x[row:row + 1] for m, x in missing.items()})
        np.testing.assert_allclose(alone[0], together[row], rtol=0, atol=1e-12)


def test_the_vectorised_pass_equals_each_patterns_restricted_combination(model):
    ensemble = model.ensemble
    test, _ = _data(80, 5)
    missing = _missing(test, 0.6, 6)
    proba = model.predict_proba(missing)
    masks = {m: ~np.isnan(x).all(axis=1) for m, x in missing.items()}
    for row in range(0, 80, 7):
        available = [lid for lid, r in ensemble.learners.items() if all(masks[m][row] for m in r.spec.modalities)]
        if not available or frozenset(available) == frozenset(ensemble.learners):
            continue
        combination = ensemble.combination_for(available)
        experts = ensemble.experts_of(available)
        outputs = np.stack([np.mean([ensemble.learners[lid].model.predict_output(
            {m: missing[m][row:row + 1] for m in ensemble.learners[lid].spec.modalities}) for lid in experts[name]],
            axis=0) for name in combination.experts])
        np.testing.assert_allclose(combination.predict(outputs, "classification")[0], proba[row], atol=1e-10)


def test_the_shared_combination_is_saved_with_the_model(model, tmp_path):
    test, _ = _data(60, 7)
    missing = _missing(test, 0.5, 8)
    path = model.export_training_artifacts(tmp_path / "export")
    loaded = modalbag.load_ensemble(path)
    assert loaded.ensemble.shared is not None
    np.testing.assert_allclose(loaded.ensemble.shared.weights, model.ensemble.shared.weights)
    np.testing.assert_allclose(loaded.predict_proba(missing), model.predict_proba(missing), atol=1e-12)


def test_diversity_weight_is_kept_and_its_effect_is_measured_on_held_out_data(tmp_path):
    data, y = _data(300, 0)
    test, y_test = _data(200, 9)
    model = modalbag.create_model_from_arrays({k: (v, "tabular") for k, v in list(data.items())[:3]}, labels=y)
    model.create_ensemble(n_bags=6, random_state=0)
    model.select_base_learners(task_type="classification", num_classes=3, instantiate=False,
                               trainers=["logistic", "knn"])
    model.train_ensemble(**QUIET, ensemble_diversity_weight=0.5)
    report = model.get_diversity_report({k: test[k] for k in list(data)[:3]}, y_test)
    experts = report["experts"]
    assert len(experts) >= 2 and report["diversity_weight"] == 0.5
    for a in experts:
        assert report["disagreement"][a][a] == 0 and report["error_correlation"][a][a] == pytest.approx(1.0)
    assert 0 < report["accuracy"] <= 1 and 0 < report["accuracy_without_diversity"] <= 1
    assert model.ensemble.diversity_weight == 0.5  # the measurement put the term back
    path = model.export_training_artifacts(tmp_path / "export")
    assert modalbag.load_ensemble(path).ensemble.diversity_weight == 0.5


def test_a_distilled_student_matches_the_ensembles_soft_targets_and_predicts_from_any_subset(tmp_path):
    from tests.conftest import make_model

    model = make_model(n_samples=300)
    model.create_ensemble(n_bags=4, random_state=0)
    model.select_base_learners(trainers=["logistic", "knn"], instantiate=False)
    model.train_ensemble(epochs=2, enable_denoising=False, save_checkpoints=False, threads_per_learner=1,
                         random_state=0)
    student = model.distill(temperature=2.0, epochs=40, learning_rate=3e-3, batch_size=32, early_stopping_patience=0)
    assert student.ok and student.validation["teacher_agreement"] > 0.85
    data = {m: model.dataset.arrays[m] for m in model.dataset.specs}
    teacher = model.predict_proba(data)
    mine = student.model.predict_output(data)
    assert np.mean(mine.argmax(axis=1) == teacher.argmax(axis=1)) > 0.85  # matches the ensemble's soft targets
    held, labels = model.synthetic_task.sample(200, random_state=3)
    only = {"text": held["text"], "meta": held["meta"]}  # no image at all
    masks = {"text": np.ones(200, bool), "meta": np.ones(200, bool), "image": np.zeros(200, bool)}
    partial = student.model.predict_output({**only, "image": np.zeros_like(held["image"])}, masks)
    assert partial.shape == (200, 3) and np.allclose(partial.sum(axis=1), 1.0)
    saved = student.model.save(tmp_path / "student")
    again = type(student.model).load(saved)
    np.testing.assert_allclose(again.predict_output(data), mine, atol=1e-5)


def test_availability_patterns_are_numpys_row_unique_in_linear_time():
    from modalbag.ensemble.ensemble import availability_patterns

    rng = np.random.default_rng(0)
    for shape, p in (((500, 12), 0.5), ((300, 70), 0.5), ((40, 3), 0.0), ((0, 4), 0.5)):
        a = rng.random(shape) >= p
        patterns, inverse = availability_patterns(a)
        if len(a):
            expected, expected_inverse = np.unique(a, axis=0, return_inverse=True)
            np.testing.assert_array_equal(patterns, expected)
            np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))
        np.testing.assert_array_equal(patterns[inverse], a)
