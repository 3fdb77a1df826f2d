"""benchmarks/real_data.py: its fusion helper, its missing-view masks, and one small run's structure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_data_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_product_rule_is_the_sum_of_the_present_views_log_probabilities(bench):
    a = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    b = np.log(np.array([[0.6, 0.4], [0.3, 0.7]]))
    present = np.array([[True, True], [True, False]])  # sample 1 lacks view b
    scores = bench.product_rule([a, b], present)
    expected = np.array([[np.log(0.9) + np.log(0.6), np.log(0.1) + np.log(0.4)],
                         [np.log(0.2), np.log(0.8)]])
    np.testing.assert_allclose(scores, expected)

    prior = np.array([0.7, 0.3])
    scores = bench.product_rule([a, b], present, np.log(prior))
    expected[0] -= np.log(prior)  # two views: minus (2 - 1) log prior; one view: nothing
    np.testing.assert_allclose(scores, expected)
    np.testing.assert_allclose(np.exp(scores[0]), [0.9 * 0.6 / 0.7, 0.1 * 0.4 / 0.3])


@pytest.mark.parametrize(("n_views", "p"), [(2, 0.5), (2, 0.7), (3, 0.5), (4, 0.7), (12, 0.5)])
def test_missing_view_mask_keeps_a_view_per_sample_at_the_expected_rate(bench, n_views, p):
    n = 200_000
    keep = bench.missing_view_mask(n, n_views, p, np.random.default_rng(0))
    assert keep.shape == (n, n_views) and keep.dtype == bool
    assert keep.any(axis=1).all()
    missing = 1 - keep.mean()
    expected = bench.expected_missing_share(n_views, p)  # p, less the redrawn all-missing samples
    assert abs(missing - expected) < 0.005
    if p ** n_views < 1e-3:  # redraws are rare: the rate is p itself
        assert abs(missing - p) < 0.005
    # each view is dropped independently and equally often
    np.testing.assert_allclose(1 - keep.mean(axis=0), expected, atol=0.01)
    again = bench.missing_view_mask(n, n_views, p, np.random.default_rng(0))
    np.testing.assert_array_equal(keep, again)


def test_conditions_are_fixed_by_seed_and_dataset(bench):
    first = bench.conditions(["mean", "error"], 500, 0, "tiny", [0.5, 0.7])
    again = bench.conditions(["mean", "error"], 500, 0, "tiny", [0.5, 0.7])
    other = bench.conditions(["mean", "error"], 500, 1, "tiny", [0.5, 0.7])
    assert list(first) == ["all", "only mean", "only error", "missing p=0.5", "missing p=0.7"]
    for c in first:
        np.testing.assert_array_equal(first[c], again[c])
    assert not np.array_equal(first["missing p=0.5"], other["missing p=0.5"])
    np.testing.assert_array_equal(first["only error"], np.array([[False, True]] * 500))


def test_views_follow_the_datasets_feature_groups(bench):
    views, y = bench.load_dataset("breast_cancer")
    assert {v: x.shape for v, x in views.items()} == {"mean": (569, 10), "error": (569, 10), "worst": (569, 10)}
    views, y = bench.load_dataset("digits")
    assert list(views) == ["top_left", "top_right", "bottom_left", "bottom_right"]
    assert all(x.shape == (1797, 16) for x in views.values())
    from sklearn.datasets import load_digits

    images = load_digits().images
    np.testing.assert_array_equal(views["bottom_right"][:, 0], images[:, 4, 4])
    np.testing.assert_array_equal(views["top_right"][:, 3], images[:, 0, 7])


def test_tiny_case_baselines_and_modalbag_fill_every_cell(bench):
    result = bench.run_dataset("tiny", seeds=[0], strategies=["balanced"], missing_rates=[0.5, 0.7],
                               modalbag_options={"epochs": 5})
    methods = ["svm_prod", "hgb_nan", "logreg_imp", "mb_balanced"]
    assert result["methods"] == methods
    (run,) = result["per_seed"]
    assert run["n_train"] == 40 and run["n_test"] == 569 - 40
    assert run["errors"] == {}
    conditions = ["all", "only mean", "only error", "missing p=0.5", "missing p=0.7"]
    assert list(run["accuracy"]) == conditions
    for c in conditions:
        assert set(run["accuracy"][c]) == set(methods)
        assert all(0 <= a <= 1 for a in run["accuracy"][c].values()), run["accuracy"][c]
    assert set(run["train_seconds"]) == set(methods)
    assert all(s > 0 for s in run["train_seconds"].values())
    assert run["missing_share"]["all"] == 0 and run["missing_share"]["only mean"] == 0.5
    assert 0 < run["missing_share"]["missing p=0.5"] < run["missing_share"]["missing p=0.7"] < 0.5
    assert result["mean"]["accuracy"] == run["accuracy"]
    assert sum(run["modalbag"]["mb_balanced"]["trainers"].values()) > 0  # which trainers the strategy picked
    table = bench.format_table(result)
    assert all(f"| {c} |" in table for c in conditions) and "| train seconds |" in table
