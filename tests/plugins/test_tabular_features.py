"""The tabular trainers' shared machinery: feature reductions with modality provenance, importance
aggregation, class weights, and validation / cross-validation splits without leakage."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import Bag, ConfigError, TrainingConfig
from modalbag.data.bags import split_validation
from modalbag.kernel.modalities import ModalitySpec
from modalbag.plugins.trainers._tabular import (
    FeatureLayout,
    cv_folds,
    feature_importance,
    sample_weights,
)

SPECS = {
    "meta": ModalitySpec("meta", "tabular", (3,)),
    "scan": ModalitySpec("scan", "image", (2, 5, 4)),
    "vitals": ModalitySpec("vitals", "sequence", (6, 2)),
}


def _data(n: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(n, *spec.shape)).astype(np.float32) for name, spec in SPECS.items()}


# --- features ---------------------------------------------------------------------------------------


def test_layout_names_every_column_and_keeps_its_modality():
    layout = FeatureLayout.build(["meta", "scan", "vitals"], SPECS, image_grid=2)
    assert layout.n_features == 3 + 2 * (4 + 2 * 2) + 2 * 7
    names = layout.feature_names
    assert names[:3] == ["meta[0]", "meta[1]", "meta[2]"]
    assert names[3:11] == ["scan:c0:mean", "scan:c0:std", "scan:c0:min", "scan:c0:max",
                           "scan:c0:cell0,0", "scan:c0:cell0,1", "scan:c0:cell1,0", "scan:c0:cell1,1"]
    assert names[-7:] == [f"vitals:f1:{s}" for s in ("mean", "std", "min", "max", "first", "last", "slope")]
    assert list(layout.feature_modalities) == ["meta"] * 3 + ["scan"] * 16 + ["vitals"] * 14
    assert set(layout.describe()) == {"meta", "scan", "vitals"}


def test_image_and_sequence_reductions_are_the_documented_statistics():
    data = _data()
    x = FeatureLayout.build(["scan", "vitals"], SPECS, image_grid=2).transform(data)
    image, seq = data["scan"], data["vitals"]
    c1 = x[:, 8:16]  # channel 1 of the image
    np.testing.assert_allclose(c1[:, 0], image[:, 1].reshape(7, -1).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(c1[:, 1], image[:, 1].reshape(7, -1).std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(c1[:, 3], image[:, 1].reshape(7, -1).max(axis=1), rtol=1e-6)
    # a 5x4 image on a 2x2 grid: rows 0-1 | 2-4, columns 0-1 | 2-3
    np.testing.assert_allclose(c1[:, 4], image[:, 1, :2, :2].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(c1[:, 7], image[:, 1, 2:, 2:].mean(axis=(1, 2)), rtol=1e-5)
    f0 = x[:, 16:23]  # feature 0 of the sequence
    slope = np.polyfit(np.arange(6), seq[:, :, 0].T, 1)[0]
    np.testing.assert_allclose(f0, np.column_stack([seq[:, :, 0].mean(1), seq[:, :, 0].std(1), seq[:, :, 0].min(1),
                                                    seq[:, :, 0].max(1), seq[:, 0, 0], seq[:, -1, 0], slope]),
                               rtol=1e-4, atol=1e-6)


def test_grid_shrinks_to_small_images():
    spec = {"tiny": ModalitySpec("tiny", "image", (1, 2, 3))}
    layout = FeatureLayout.build(["tiny"], spec, image_grid=4)
    assert layout.n_features == 4 + 2 * 3  # a 2x3 grid: every pixel its own cell
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    np.testing.assert_array_equal(layout.transform({"tiny": x})[0, 4:], np.arange(6))


def test_missing_modality_rows_become_nan_in_that_modality_only():
    data = _data()
    present = {"meta": np.ones(7, bool), "scan": np.array([1, 0, 1, 1, 0, 1, 1], bool)}
    layout = FeatureLayout.build(["meta", "scan"], SPECS)
    x = layout.transform(data, present, rows=np.array([0, 1, 1, 4]))
    assert x.shape == (4, layout.n_features) and x.dtype == np.float32
    scan = layout.feature_modalities == "scan"
    assert np.isnan(x[1:, scan]).all() and not np.isnan(x[0]).any() and not np.isnan(x[:, ~scan]).any()


def test_layout_round_trips_through_plain_data():
    layout = FeatureLayout.build(["vitals", "meta", "scan"], SPECS, image_grid=3)
    again = FeatureLayout.from_dict(layout.to_dict())
    assert again == layout
    data = _data()
    np.testing.assert_array_equal(again.transform(data), layout.transform(data))


# --- importance ---------------------------------------------------------------------------------------


def test_importance_is_normalised_and_summed_per_modality():
    layout = FeatureLayout.build(["meta", "vitals"], SPECS)  # 3 + 14 columns
    raw = np.zeros(17)
    raw[1], raw[3], raw[4] = 6.0, 3.0, 1.0
    found = feature_importance(layout, raw, "gain", top=2)
    assert found["importance_type"] == "gain"
    assert found["top_features"] == {"meta[1]": 0.6, "vitals:f0:mean": 0.3}
    assert found["modality_weights"] == pytest.approx({"meta": 0.6, "vitals": 0.4})


# --- class weights ------------------------------------------------------------------------------------


def test_class_weights_become_sample_weights():
    y = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(sample_weights((1.0, 3.0, 0.5), y, "classification", 3), [1, 3, 0.5, 3])
    np.testing.assert_array_equal(sample_weights({2: 4.0}, y, "classification", 3), [1, 1, 4, 1])
    assert sample_weights(None, y, "classification", 3) is None
    with pytest.raises(ConfigError, match="3 classes"):
        sample_weights((1.0, 2.0), y, "classification", 3)


# --- validation splits ---------------------------------------------------------------------------------


@pytest.fixture
def bootstrap_bag():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(200, 200, replace=True))  # a bootstrap: duplicates, and time order by index
    return Bag(0, ("meta",), rows, np.setdiff1d(np.arange(200), rows), seed=11)


def test_time_series_validation_rows_all_follow_every_training_row(bootstrap_bag):
    train, val = split_validation(bootstrap_bag, 0.25, bootstrap_bag.seed, "time_series")
    assert len(val) == round(0.25 * len(np.unique(bootstrap_bag.rows)))
    assert train.max() < val.min()  # no validation sample precedes a training sample
    assert np.isin(bootstrap_bag.rows, val).sum() + len(train) == len(bootstrap_bag.rows)


def test_stratified_validation_keeps_the_class_shares(bootstrap_bag):
    targets = (np.arange(200) % 4 == 0).astype(np.int64)  # 25% class 1
    _, val = split_validation(bootstrap_bag, 0.3, bootstrap_bag.seed, "stratified", targets)
    distinct = np.unique(bootstrap_bag.rows)
    assert abs(targets[val].mean() - targets[distinct].mean()) < 0.02
    again = split_validation(bootstrap_bag, 0.3, bootstrap_bag.seed, "stratified", targets)[1]
    np.testing.assert_array_equal(val, again)


def test_default_validation_split_is_unchanged(bootstrap_bag):
    old = split_validation(bootstrap_bag, 0.2, 5)
    new = split_validation(bootstrap_bag, 0.2, 5, "random", np.zeros(200, np.int64))
    for a, b in zip(old, new, strict=True):
        np.testing.assert_array_equal(a, b)


def test_walk_forward_folds_never_validate_before_training(bootstrap_bag):
    targets = np.zeros(200, dtype=np.int64)
    folds = cv_folds(bootstrap_bag.rows, targets, 4, task_type="classification", time_series=True, seed=0)
    assert folds.splitter == "TimeSeriesSplit" and len(folds) == 4
    ends = []
    for train, val in folds.folds:
        assert train.max() < val.min()  # no validation sample precedes a training sample
        assert len(np.unique(val)) == len(val)
        ends.append(val.max())
    assert ends == sorted(ends)  # the window walks forward


def test_stratified_folds_split_distinct_rows_with_their_copies(bootstrap_bag):
    targets = np.arange(200) % 3
    folds = cv_folds(bootstrap_bag.rows, targets, 3, task_type="classification", time_series=False, seed=1)
    assert folds.splitter == "StratifiedKFold"
    distinct = np.unique(bootstrap_bag.rows)
    seen = np.concatenate([val for _, val in folds.folds])
    np.testing.assert_array_equal(np.sort(seen), distinct)  # every distinct row validated exactly once
    for train, val in folds.folds:
        assert not np.isin(train, val).any()  # no bootstrap copy of a validation row in training
        assert np.isin(bootstrap_bag.rows, val).sum() + len(train) == len(bootstrap_bag.rows)
        shares = np.bincount(targets[val], minlength=3) / len(val)
        assert np.allclose(shares, 1 / 3, atol=0.06)


def test_folds_fall_back_to_kfold_where_stratifying_cannot_apply(bootstrap_bag):
    regression = cv_folds(bootstrap_bag.rows, np.zeros((200, 1)), 3, task_type="regression", time_series=False, seed=0)
    assert regression.splitter == "KFold"
    rare = np.zeros(200, dtype=np.int64)
    rare[np.unique(bootstrap_bag.rows)[0]] = 1  # a class with one row cannot be stratified
    assert cv_folds(bootstrap_bag.rows, rare, 3, task_type="classification", time_series=False, seed=0).splitter == "KFold"


def test_config_checks_the_validation_options():
    config = TrainingConfig.from_dict({"validation_strategy": "time_series", "walk_forward_validation": True,
                                       "cross_validation_folds": 4, "hpo_trials": 3, "hpo_time_budget": 2.5})
    assert (config.validation_strategy, config.walk_forward_validation) == ("time_series", True)
    assert (config.hpo_trials, config.hpo_time_budget) == (3, 2.5)
    defaults = TrainingConfig()
    assert (defaults.validation_strategy, defaults.walk_forward_validation, defaults.hpo_trials,
            defaults.hpo_time_budget) == ("random", False, 0, None)
    with pytest.raises(ConfigError, match="walk_forward_validation needs validation_strategy='time_series'"):
        TrainingConfig.from_dict({"walk_forward_validation": True})
    with pytest.raises(ConfigError, match="validation_strategy must be in|validation_strategy"):
        TrainingConfig.from_dict({"validation_strategy": "sideways"})
    with pytest.raises(ConfigError, match="classification only"):
        TrainingConfig.from_dict({"validation_strategy": "stratified", "task_type": "regression"})
