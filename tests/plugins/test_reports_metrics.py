"""Report formulas against hand-computed values on small fixed inputs, and against sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    ndcg_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from modalbag.plugins.reports.autonomous import average_watts, read_energy_uj
from modalbag.plugins.reports.finance import strategy_returns, volatility_regimes
from modalbag.plugins.reports.recommendation import (
    experiment_uplift,
    two_proportion_p_value,
)
from modalbag.plugins.reports.robustness import (
    choose_subsets,
    effective_robustness,
    relative_robustness,
)
from modalbag.reports import metrics as rm

# -- classification -------------------------------------------------------------------------------


def test_binary_rates_by_hand_and_against_sklearn():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    r = rm.binary_rates(y == 1, p == 1)
    assert (r["tp"], r["fn"], r["fp"], r["tn"]) == (3, 1, 1, 5)
    assert r["sensitivity"] == pytest.approx(3 / 4) == recall_score(y, p)
    assert r["specificity"] == pytest.approx(5 / 6) == recall_score(y, p, pos_label=0)
    assert r["ppv"] == pytest.approx(3 / 4) == precision_score(y, p)
    assert r["npv"] == pytest.approx(5 / 6) == precision_score(y, p, pos_label=0)
    assert r["accuracy"] == pytest.approx(0.8)


def test_binary_rates_with_a_zero_denominator_are_none():
    r = rm.binary_rates(np.zeros(4, bool), np.array([True, False, False, False]))
    assert r["sensitivity"] is None and r["npv"] == 1.0 and r["ppv"] == 0.0


def test_auroc_by_hand_with_ties_and_against_sklearn():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    assert rm.auroc(np.array([0, 0, 1, 1]) == 1, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert rm.auroc(np.array([False, True]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert rm.auroc(np.ones(3, bool), np.arange(3.0)) is None
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    assert rm.auroc(y == 1, s) == pytest.approx(roc_auc_score(y, s))


def test_macro_auroc_matches_sklearn_one_vs_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    proba = rng.dirichlet(np.ones(3), 150) + np.eye(3)[y] * 0.3
    proba /= proba.sum(axis=1, keepdims=True)
    assert rm.macro_auroc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def test_brier_score_binary_and_multiclass():
    assert rm.brier_score(np.array([1, 0]), np.array([[0.2, 0.8], [0.7, 0.3]])) == pytest.approx((0.04 + 0.09) / 2)
    assert rm.brier_score(np.array([0]), np.array([[0.7, 0.2, 0.1]])) == pytest.approx(0.09 + 0.04 + 0.01)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)
    p1 = rng.random(100)
    assert rm.brier_score(y, np.stack([1 - p1, p1], axis=1)) == pytest.approx(brier_score_loss(y, p1))


def test_expected_calibration_error_by_hand():
    proba = np.array([[0.95, 0.05], [0.85, 0.15], [0.25, 0.75], [0.65, 0.35]])
    y = np.array([0, 1, 1, 0])  # right, wrong, right, right
    # ten bins: one sample per bin, |acc - conf| = 0.05, 0.85, 0.25, 0.35, each weighted 1/4
    assert rm.expected_calibration_error(y, proba, 10) == pytest.approx((0.05 + 0.85 + 0.25 + 0.35) / 4)
    # two bins: all in (0.5, 1]: accuracy 3/4, mean confidence (0.95+0.85+0.75+0.65)/4 = 0.8
    assert rm.expected_calibration_error(y, proba, 2) == pytest.approx(0.05)


def test_bootstrap_ci_is_the_percentile_interval_of_resampled_statistics():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    ci = rm.bootstrap_ci(lambda rows: float(values[rows].mean()), 5, n_boot=300, level=0.9, seed=3)
    rng = np.random.default_rng(3)
    stats = [values[rng.integers(0, 5, 5)].mean() for _ in range(300)]
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.quantile(stats, [0.05, 0.95])))
    assert ci["n_boot"] == 300 and ci["low"] <= 0.6 <= ci["high"]
    assert rm.bootstrap_ci(lambda rows: None, 5, n_boot=10)["low"] is None


# -- returns --------------------------------------------------------------------------------------


def test_sharpe_drawdown_information_ratio_by_hand():
    r = np.array([0.01, 0.02, -0.01, 0.03])
    sd = math.sqrt((0.0025 ** 2 + 0.0075 ** 2 + 0.0225 ** 2 + 0.0175 ** 2) / 3)
    assert rm.sharpe_ratio(r, 252) == pytest.approx(0.0125 / sd * math.sqrt(252))
    assert rm.sharpe_ratio(np.array([0.01, 0.01])) is None
    assert rm.max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(0.5)  # 1.1 -> 0.55
    assert rm.max_drawdown(np.array([-0.2, 0.1])) == pytest.approx(0.2)  # from the starting capital
    assert rm.max_drawdown(np.array([0.1, 0.2])) == 0.0
    # active returns 0.01, 0, 0.02: mean 0.01, sd 0.01
    assert rm.information_ratio(np.array([0.02, 0.01, 0.03]), np.full(3, 0.01), 252) == pytest.approx(math.sqrt(252))


def test_directional_accuracy_and_correlation():
    assert rm.directional_accuracy(np.array([1, -1, 1, 1]), np.array([0.5, -0.2, -0.1, 0.0])) == pytest.approx(2 / 3)
    a, b = np.array([1.0, 2.0, 4.0]), np.array([2.0, 1.0, 5.0])
    assert rm.correlation(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert rm.correlation(a, np.ones(3)) is None


def test_strategy_returns_charge_turnover():
    s = strategy_returns(np.array([1.0, -1.0, -1.0]), np.array([0.01, 0.02, -0.03]), cost=0.001)
    assert s == pytest.approx([0.01 - 0.001, -0.02 - 0.002, 0.03])


def test_volatility_regimes_split_by_trailing_volatility_terciles():
    b = np.array([0.0, 0.001, -0.001, 0.001, 0.05, -0.05, 0.05, -0.05, 0.01, -0.01])
    tags = volatility_regimes(b, window=2)
    assert tags[0] == ""
    assert set(tags[1:]) == {"low", "medium", "high"}
    assert tags[5] == "high" and tags[2] == "low"


# -- ranking --------------------------------------------------------------------------------------

Y = np.array([[1, 0, 1, 0], [0, 0, 0, 1]])
S = np.array([[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.3, 0.4]])


def test_ranking_metrics_by_hand():
    assert rm.precision_at_k(Y, S, 2) == pytest.approx(0.5)
    assert rm.recall_at_k(Y, S, 2) == pytest.approx((1 / 2 + 1) / 2)
    assert rm.ndcg_at_k(Y, S, 2) == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1) / 2)
    assert rm.mean_average_precision(Y, S) == pytest.approx(((1 + 2 / 4) / 2 + 1) / 2)
    assert rm.catalog_coverage(S, 2) == 1.0 and rm.catalog_coverage(S, 1) == 0.5


def test_ranking_metrics_against_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random((60, 12)) < 0.25).astype(int)
    y[y.sum(axis=1) == 0, 0] = 1
    s = rng.random((60, 12)) + 0.3 * y
    assert rm.ndcg_at_k(y, s, 5) == pytest.approx(ndcg_score(y, s, k=5))
    assert rm.mean_average_precision(y, s) == pytest.approx(np.mean([average_precision_score(y[i], s[i])
                                                                     for i in range(60)]))


def test_users_without_relevant_items_are_left_out_of_recall_ndcg_map():
    y = np.vstack([Y, np.zeros(4, int)])
    s = np.vstack([S, np.arange(4.0)])
    assert rm.ndcg_at_k(y, s, 2) == rm.ndcg_at_k(Y, S, 2)
    assert rm.precision_at_k(y, s, 2) == pytest.approx((0.5 + 0.5 + 0.0) / 3)  # precision counts every user
    assert rm.recall_at_k(np.zeros((2, 3)), np.ones((2, 3)), 2) is None


def test_intra_list_diversity_is_mean_pairwise_cosine_distance():
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert rm.intra_list_diversity(np.array([[0, 1], [0, 2]]), vectors) == pytest.approx(0.5)
    assert rm.intra_list_diversity(np.array([[0], [1]]), vectors) is None


def test_experiment_uplift_and_two_proportion_test():
    out = experiment_uplift({"control": {"impressions": 1000, "clicks": 50, "conversions": 10, "engagement": [1, 3]},
                             "treatment": {"impressions": 1000, "clicks": 60, "conversions": 15,
                                           "engagement": [3, 3]}})
    assert out["ctr_improvement"] == pytest.approx(0.2)
    assert out["conversion_impact"] == pytest.approx(0.5)
    assert out["engagement_score"] == pytest.approx(0.5)
    se = math.sqrt(0.055 * 0.945 * 2 / 1000)
    assert out["ctr_p_value"] == pytest.approx(math.erfc(0.01 / se / math.sqrt(2)))
    assert two_proportion_p_value(0, 10, 0, 10) is None


# -- robustness -----------------------------------------------------------------------------------


def test_multibench_relative_and_effective_robustness_by_hand():
    f = np.array([0.9, 0.8, 0.6])
    assert relative_robustness(f, np.array([0.0, 0.1, 0.2])) == pytest.approx((0.85 + 0.7) * 0.1)
    g = np.array([0.8, 0.6, 0.3])  # shifted to start at 0.9: 0.9, 0.7, 0.4
    assert effective_robustness(f, g) == pytest.approx(0.3)
    assert effective_robustness(f, g, higher_is_better=False) == pytest.approx(-0.3)


def test_choose_subsets_enumerates_then_samples_keeping_the_key_subsets():
    names = ["a", "b", "c"]
    every, sampled = choose_subsets(names, 255, np.random.default_rng(0))
    assert len(every) == 7 and not sampled
    names = list("abcdef")
    some, sampled = choose_subsets(names, 20, np.random.default_rng(0))
    assert sampled and len(some) == 20 and len(set(some)) == 20
    assert tuple(names) in some and all((x,) in some for x in names)
    assert all(tuple(n for n in names if n != x) in some for x in names)


# -- power ----------------------------------------------------------------------------------------


def test_rapl_reading_and_counter_wrap(tmp_path):
    assert read_energy_uj(str(tmp_path))[0] is None
    package = tmp_path / "intel-rapl:0"
    (tmp_path / "intel-rapl:0:0").mkdir(parents=True)  # a sub-zone: not counted
    package.mkdir()
    (package / "energy_uj").write_text("900\n")
    (package / "max_energy_range_uj").write_text("1000\n")
    before, why = read_energy_uj(str(tmp_path))
    assert why is None and before == {str(package): (900, 1000)}
    (package / "energy_uj").write_text("100\n")
    after, _ = read_energy_uj(str(tmp_path))
    assert average_watts(before, after, 1e-4) == pytest.approx(200 / 1e6 / 1e-4)  # wrapped: 100 + 1000 - 900


def test_ndcg_shares_the_gain_of_tied_scores_like_scikit_learn():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    y = (rng.random((40, 8)) < 0.3).astype(int)
    y[:, 0] = 1  # every user has a relevant item
    constant = np.zeros((40, 8))  # a recommender that ranks nothing: item order must not count
    assert rm.ndcg_at_k(y, constant, 5) == pytest.approx(ndcg_score(y, constant, k=5))
    partly_tied = np.round(rng.random((40, 8)), 1)
    assert rm.ndcg_at_k(y, partly_tied, 3) == pytest.approx(ndcg_score(y, partly_tied, k=3))
