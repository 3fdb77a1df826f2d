"""The financial performance report on an ensemble shaped like the spec's trading example."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import ConfigError, DataError
from modalbag.plugins.reports.finance import fractional_returns, strategy_returns
from modalbag.reports import metrics as rm
from tests.plugins.test_reports_medical import train

TRADING = {"price_data": (10, "tabular"), "order_book": (8, "tabular"), "news_sentiment": (12, "text"),
           "macro_indicators": (5, "tabular"), "technical_indicators": (6, "tabular"),
           "alternative_data": (6, "tabular")}


@pytest.fixture(scope="module")
def trading():
    model, (data, labels) = train(TRADING, task_type="regression", n_bags=4, validation_strategy="time_series",
                                  walk_forward_validation=True, market_regime_testing=True)
    returns = labels * 0.01  # the predicted quantity, read as a daily return
    benchmark = np.random.default_rng(5).normal(0.0003, 0.01, len(labels))
    return model, data, returns, benchmark


@pytest.fixture(scope="module")
def report(trading):
    model, data, returns, benchmark = trading
    return model.get_financial_performance_report(data, returns, benchmark=benchmark, transaction_cost=0.0005)


def test_headline_figures_follow_the_formulas(trading, report):
    model, data, returns, benchmark = trading
    pred = model.predict(data)
    s = strategy_returns(np.sign(pred), returns, 0.0005)
    assert report["prediction_accuracy"] == pytest.approx(rm.directional_accuracy(pred, returns))
    assert report["sharpe_ratio"] == pytest.approx(rm.sharpe_ratio(s))
    assert report["max_drawdown"] == pytest.approx(rm.max_drawdown(s))
    assert report["information_ratio"] == pytest.approx(rm.information_ratio(s, benchmark))
    assert report["market_correlation"] == pytest.approx(np.corrcoef(s, benchmark)[0, 1])
    assert report["total_return"] == pytest.approx(np.prod(1 + s) - 1)
    assert report.get("alt_data_alpha") is None and "data_importance" in report["notes"]["alt_data_alpha"]


def test_modality_contributions_are_ablations(trading, report):
    model, data, returns, _ = trading
    for m, drop in report["data_importance"].items():
        without = model.predict({k: v for k, v in data.items() if k != m})
        assert drop == pytest.approx(report["prediction_accuracy"] - rm.directional_accuracy(without, returns))
        assert report["modality_contributions"][m]["accuracy_drop"] == drop


def test_walk_forward_windows_and_regimes_from_the_training_config(trading, report):
    model, data, returns, _ = trading
    windows = report["walk_forward"]
    assert len(windows) == 5 and windows[0]["start"] == 0 and windows[-1]["end"] == len(returns) - 1
    pred = model.predict(data)
    first = slice(windows[0]["start"], windows[0]["end"] + 1)
    assert windows[0]["sharpe_ratio"] == pytest.approx(rm.sharpe_ratio(strategy_returns(np.sign(pred[first]),
                                                                                        returns[first], 0.0005)))
    regimes = report["regimes"]
    assert set(regimes) == {"low", "medium", "high"}
    assert sum(r["n_periods"] for r in regimes.values()) == len(returns) - 1  # the first period has no history
    off = model.get_financial_performance_report(data, returns, walk_forward_validation=False,
                                                 market_regime_testing=False)
    assert off.get("walk_forward") is None and off.get("regimes") is None
    assert "buy-and-hold" in off["notes"]["benchmark"]
    assert off["information_ratio"] == pytest.approx(rm.information_ratio(strategy_returns(np.sign(pred), returns),
                                                                          returns))


def test_long_only_never_shorts(trading):
    model, data, returns, _ = trading
    report = model.get_financial_performance_report(data, returns, long_only=True)
    pred = model.predict(data)
    assert report["sharpe_ratio"] == pytest.approx(rm.sharpe_ratio(np.maximum(np.sign(pred), 0) * returns))
    # a predicted fall is held flat, yet it is still a direction predicted right or wrong
    assert report["directional_accuracy"] == pytest.approx(rm.directional_accuracy(pred, returns))
    assert np.any(pred < 0), "the check above needs some predicted falls"


def test_a_classifier_needs_returns_and_directions(trained_model, held_out):
    data, labels = held_out
    with pytest.raises(DataError, match="pass returns="):
        trained_model.get_financial_performance_report(data, labels)
    returns = np.random.default_rng(0).normal(0, 0.01, len(labels))
    with pytest.raises(ConfigError, match="position_map"):
        trained_model.get_financial_performance_report(data, labels, returns=returns)
    report = trained_model.get_financial_performance_report(data, labels, returns=returns,
                                                            position_map={0: -1, 1: 0, 2: 1})
    pred = trained_model.predict(data)
    positions = np.array([-1.0, 0.0, 1.0])[pred]
    assert report["prediction_accuracy"] == pytest.approx(np.mean(pred == labels))
    assert report["sharpe_ratio"] == pytest.approx(rm.sharpe_ratio(positions * returns))
    with pytest.raises(DataError, match="returns has 3 values"):
        trained_model.get_financial_performance_report(data, labels, returns=returns[:3],
                                                       position_map={0: -1, 1: 0, 2: 1})


def test_a_regime_window_needs_two_periods(trading):
    model, data, returns, _ = trading
    with pytest.raises(ConfigError, match="regime_window"):  # one period has no standard deviation
        model.get_financial_performance_report(data, returns, regime_window=1)


def test_risk_adjusted_metrics_add_sortino_and_calmar_by_the_formulas(trading, report):
    model, data, returns, benchmark = trading
    s = strategy_returns(np.sign(model.predict(data)), returns, 0.0005)
    downside = np.sqrt(np.mean(np.minimum(s, 0) ** 2))
    assert report["sortino_ratio"] == pytest.approx(s.mean() / downside * np.sqrt(252))
    annual = np.prod(1 + s) ** (252 / len(s)) - 1
    assert report["calmar_ratio"] == pytest.approx(annual / rm.max_drawdown(s))
    off = model.get_financial_performance_report(data, returns, benchmark=benchmark, risk_adjusted_metrics=False)
    assert "sortino_ratio" not in off and off["sharpe_ratio"] is not None


def test_returns_in_another_unit_are_refused_with_the_fix(trading):
    model, data, returns, benchmark = trading  # the fixture's labels are these returns
    with pytest.raises(DataError, match=r"^returns must be fractional returns.*smallest value is .*divide them by 100$"):
        model.get_financial_performance_report(data, returns, returns=returns * 100)  # percentages
    prices = 100 * np.cumprod(1 + returns)
    with pytest.raises(DataError, match=r"median absolute value is .*look like prices: pass returns = prices\[1:\]"):
        model.get_financial_performance_report(data, returns, returns=prices)
    with pytest.raises(DataError, match=r"^benchmark must be fractional returns"):
        model.get_financial_performance_report(data, returns, benchmark=benchmark * 100)
    with pytest.raises(DataError, match=r"^the labels, read as returns .*divide them by 100 or pass returns=$"):
        model.get_financial_performance_report(data, returns * 100)  # labels in percent, no returns=


def test_fractional_returns_accepts_fractions_up_to_the_limits():
    r = np.array([-1.0, 0.5, -0.5, 0.01, 2.0])  # a total loss, large moves: still fractions (median |r| 0.5)
    assert fractional_returns("returns", r) is r
    with pytest.raises(DataError, match=r"smallest value is -1\.5"):
        fractional_returns("returns", np.array([-1.5, 0.01, 0.02]))


def test_without_held_out_data_the_out_of_fold_periods_trade(trading):
    """Returns are given one per training period; the signals are the out-of-fold predictions of the
    periods the ensemble has evidence for."""
    model, _, _, _ = trading
    training_returns = np.asarray(model.dataset.labels, dtype=np.float64) * 0.01
    report = model.get_financial_performance_report(returns=training_returns)
    assert report["measured_on"] == "out-of-fold predictions of the training rows"
    assert 0 < report["n_periods"] <= len(training_returns)
    assert report["r2"] == pytest.approx(model.performance_check()["score"])
    assert np.isfinite(report["sharpe_ratio"]) and "training periods" in report["notes"]["n_periods"]
    with pytest.raises(DataError, match="one per sample"):
        model.get_financial_performance_report(returns=training_returns[:-1])
