"""``finance``: the ensemble's predictions used as trading signals on the user's returns.

Rows are periods in time order. The position each period is the sign of the predicted return
(regression) or the direction of the predicted class (classification, through ``position_map``),
held for that period: strategy return s_t = p_t * r_t - cost * |p_t - p_{t-1}|. From it:
directional accuracy, Sharpe ratio, maximum drawdown, information ratio and correlation against a
benchmark series (buy-and-hold of the asset when none is given), per-modality contribution by
ablation, and the same figures per walk-forward window (``walk_forward_validation``) and per
volatility regime of the benchmark (``market_regime_testing``). The ensemble is trained once: the
windows evaluate that one model period by period, they do not refit it. Without held-out ``(data,
labels)`` the signals are the ensemble's out-of-fold predictions of the training periods
(``measured_on`` says which); ``returns=`` and ``benchmark=`` then give one value per training period.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.errors import DataError
from modalbag.kernel import Register
from modalbag.kernel.options import finite, integer_at_least, non_negative, positive
from modalbag.plugins.reports._common import require_task, rows_expected, scored_rows, series, switch


@attrs.frozen(kw_only=True)
class FinanceOptions:
    periods_per_year: float = attrs.field(default=252.0, validator=positive, metadata={
        "help": "Periods (rows) per year, used to annualise the Sharpe and information ratios (252: "
                "trading days)."})
    risk_free: float = attrs.field(default=0.0, validator=finite, metadata={
        "help": "Risk-free return per period, subtracted from the strategy's returns in the Sharpe ratio."})
    transaction_cost: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Cost per unit of position change, as a return: s_t = p_t * r_t - cost * |p_t - p_(t-1)| "
                "(0: free trading)."})
    long_only: bool = attrs.field(default=False, metadata={
        "help": "Never go short: a predicted fall is held flat instead."})
    position_map: Mapping[Any, float] | None = attrs.field(default=None, metadata={
        "help": "Classification: the position (+1 long, -1 short, 0 flat) for each class value (None: classes "
                "0 and 1 mean down and up, classes among -1, 0, 1 are positions themselves)."})
    walk_forward_windows: int = attrs.field(default=5, validator=positive, metadata={
        "help": "Consecutive windows of about equal length the periods are split into for the walk-forward "
                "figures."})
    regime_window: int = attrs.field(default=20, validator=integer_at_least(2), metadata={
        "help": "Periods in the trailing window whose benchmark standard deviation sets the volatility regime "
                "(at least 2)."})
    walk_forward_validation: bool | None = attrs.field(default=None, metadata={
        "help": "Add the figures per walk-forward window (None: the training config's walk_forward_validation)."})
    risk_adjusted_metrics: bool | None = attrs.field(default=None, metadata={
        "help": "Add the Sortino and Calmar ratios beside the Sharpe ratio (None: the training config's "
                "risk_adjusted_metrics, true by default)."})
    market_regime_testing: bool | None = attrs.field(default=None, metadata={
        "help": "Add the figures per volatility regime of the benchmark, by tercile (None: the training "
                "config's market_regime_testing)."})


def strategy_returns(positions: np.ndarray, returns: np.ndarray, cost: float = 0.0) -> np.ndarray:
    """s_t = p_t * r_t - cost * |p_t - p_{t-1}|, starting flat (p_{-1} = 0)."""
    turnover = np.abs(np.diff(np.concatenate([[0.0], positions])))
    return positions * returns - cost * turnover


def fractional_returns(name: str, r: np.ndarray, also: str = "") -> np.ndarray:
    """``r`` if it reads as fractional returns per period (0.01 for +1%), else a `DataError`.

    Compounding another unit is silent and enormous (percentage returns compounded as fractions gave
    a maximum drawdown of 2.3e14), so two signs of one are refused: a return below -1 (more than the
    whole stake lost in one period) and a median absolute return above 0.5 (a 50% move in a typical
    period): percentages, or prices when every value is positive.
    """
    typical = float(np.median(np.abs(r))) if len(r) else 0.0
    if r.min(initial=0.0) >= -1 and typical <= 0.5:
        return r
    if r.min(initial=0.0) < -1:
        found = f"its smallest value is {r.min():.4g}, a loss of more than everything in one period"
    else:
        found = f"its median absolute value is {typical:.4g}, a move of {typical:.0%} in a typical period"
    if (r > 0).all():
        fix = "these look like prices: pass returns = prices[1:] / prices[:-1] - 1"
    else:
        fix = "these look like percentages: divide them by 100"
    raise DataError(f"{name} must be fractional returns per period (0.01 for +1%, -0.02 for -2%), but {found}; "
                    f"{fix}{' ' + also if also else ''}")


def volatility_regimes(benchmark: np.ndarray, window: int) -> np.ndarray:
    """'low' / 'medium' / 'high' per period by tercile of the trailing ``window``-period standard
    deviation (ddof=1) of the benchmark; '' for the first period, which has no history."""
    n = len(benchmark)
    vol = np.full(n, np.nan)
    for t in range(1, n):
        past = benchmark[max(0, t - window + 1):t + 1]
        vol[t] = past.std(ddof=1)
    out = np.full(n, "", dtype=object)
    valid = ~np.isnan(vol)
    if valid.sum() >= 3:
        low, high = np.quantile(vol[valid], [1 / 3, 2 / 3])
        out[valid] = np.where(vol[valid] <= low, "low", np.where(vol[valid] <= high, "medium", "high"))
    return out


class FinanceReport:
    def __init__(self, options: FinanceOptions | None):
        self.options = options or FinanceOptions()

    def generate(self, model: Any, data: Any, labels: Any, *, returns: Any = None,
                 benchmark: Any = None) -> dict[str, Any]:
        from modalbag.reports.robustness import scorer_for

        require_task(model, "finance", ["regression", "classification"])
        o = self.options
        notes: dict[str, str] = {
            "alt_data_alpha": "which modality is 'alternative data' is the user's naming: see data_importance",
            "news_impact": "which modality is 'news' is the user's naming: see data_importance",
        }
        metric = "r2" if model.task_type == "regression" else "accuracy"
        scorer = scorer_for(model, data, labels, metric)
        n, given = scorer.n, rows_expected(scorer, model)
        if returns is None:
            if model.task_type != "regression" or scorer.targets.shape[1] != 1:
                raise DataError("pass returns=: the realised return of each period (one per sample); a classifier's "
                                "labels are not returns")
            r = fractional_returns("the labels, read as returns since returns= was not given,",
                                   scorer.targets[:, 0].astype(np.float64), "or pass returns=")
            notes["returns"] = "the labels (realised returns the model predicts)"
        else:
            r = fractional_returns("returns", scored_rows(scorer, model, series("returns", returns, given)))
        if benchmark is None:
            b = r
            notes["benchmark"] = "no benchmark given: buy-and-hold of the asset (the returns)"
        else:
            b = fractional_returns("benchmark", scored_rows(scorer, model, series("benchmark", benchmark, given)))
        self._classes = None if model.classes_ is None else list(np.asarray(model.classes_).tolist())
        config = getattr(model, "training_config", None)
        self._risk_adjusted = (bool(o.risk_adjusted_metrics) if o.risk_adjusted_metrics is not None
                               else bool(getattr(config, "risk_adjusted_metrics", True)))

        def figures(output: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
            return self._figures(output, scorer, r, b, rows, model.task_type)

        every = np.arange(n)
        output = scorer.output()
        headline = figures(output, every)
        contributions, importance = {}, {}
        for m in scorer.modalities:
            without = figures(scorer.output(scorer.without([m])), every)
            acc_drop = _minus(headline["prediction_accuracy"], without["prediction_accuracy"])
            contributions[m] = {"accuracy_drop": acc_drop,
                                "sharpe_drop": _minus(headline["sharpe_ratio"], without["sharpe_ratio"]),
                                "total_return_drop": _minus(headline["total_return"], without["total_return"])}
            importance[m] = acc_drop
        walk_forward = None
        if switch(model, o.walk_forward_validation, "walk_forward_validation"):
            parts = np.array_split(every, min(o.walk_forward_windows, n))
            walk_forward = [{"window": i, "start": int(p[0]), "end": int(p[-1])} | figures(output, p)
                            for i, p in enumerate(parts) if len(p)]
        else:
            notes["walk_forward"] = "not computed: pass walk_forward_validation=True"
        regimes = None
        if switch(model, o.market_regime_testing, "market_regime_testing"):
            tags = volatility_regimes(b, o.regime_window)
            regimes = {name: figures(output, np.flatnonzero(tags == name)) | {"n_periods": int(np.sum(tags == name))}
                       for name in ("low", "medium", "high") if np.any(tags == name)}
            notes["regimes"] = (f"terciles of the benchmark's trailing {o.regime_window}-period volatility; "
                                f"drawdowns compound each regime's periods as if consecutive")
        else:
            notes["regimes"] = "not computed: pass market_regime_testing=True"
        for key in ("sharpe_ratio", "information_ratio", "market_correlation"):
            if headline[key] is None:
                notes[key] = "undefined: a series without variation (or fewer than two periods)"
        if scorer.rows is not None:
            notes["n_periods"] = ("the training periods with out-of-fold predictions, in time order; periods "
                                  "without are left out of the strategy's returns")
        return {
            "measured_on": scorer.source,
            "n_periods": n, "periods_per_year": o.periods_per_year, "transaction_cost": o.transaction_cost,
            **headline,
            "data_importance": importance, "modality_contributions": contributions,
            "alt_data_alpha": None, "news_impact": None,
            "walk_forward": walk_forward, "regimes": regimes,
            "notes": notes,
        }

    # -- pieces ---------------------------------------------------------------------------------

    def positions(self, output: np.ndarray, task_type: str, *, long_only: bool | None = None) -> np.ndarray:
        """+1 long, -1 short, 0 flat per period (shorts become flat with ``long_only``, by default
        the option's value; ``long_only=False`` gives the predicted direction itself)."""
        if task_type == "regression":
            pos = np.sign(output[:, 0])
        else:
            pos = self._class_positions()[output.argmax(axis=1)]
        flat_shorts = self.options.long_only if long_only is None else long_only
        return np.maximum(pos, 0.0) if flat_shorts else pos

    def _class_positions(self) -> np.ndarray:
        from modalbag.errors import ConfigError

        classes = self._classes or []
        mapping = self.options.position_map
        if mapping is not None:
            missing = [c for c in classes if c not in mapping]
            if missing:
                raise ConfigError(f"position_map has no position for classes {missing}; classes: {classes}")
            return np.array([float(mapping[c]) for c in classes])
        if set(classes) <= {-1, 0, 1} and all(isinstance(c, (int, float)) for c in classes):
            if set(classes) == {0, 1}:
                return np.array([-1.0, 1.0])  # 1 = up, 0 = down
            return np.array([float(c) for c in classes])
        raise ConfigError(f"classes {classes} do not say a direction: pass position_map={{class: +1/-1/0}}")

    def _figures(self, output: np.ndarray, scorer: Any, r: np.ndarray, b: np.ndarray, rows: np.ndarray,
                 task_type: str) -> dict[str, Any]:
        from modalbag.reports import metrics as rm

        o = self.options
        pos = self.positions(output, task_type)[rows]
        s = strategy_returns(pos, r[rows], o.transaction_cost)
        # the predicted direction, not the position: with long_only a predicted fall is held flat,
        # and that prediction is still right when the price falls
        direction = rm.directional_accuracy(self.positions(output, task_type, long_only=False)[rows], r[rows])
        out: dict[str, Any] = {
            "prediction_accuracy": (direction if task_type == "regression"
                                    else float(np.mean(output[rows].argmax(axis=1) == scorer.targets[rows]))),
            "directional_accuracy": direction,
            "sharpe_ratio": rm.sharpe_ratio(s, o.periods_per_year, o.risk_free),
            "max_drawdown": rm.max_drawdown(s),
            "information_ratio": rm.information_ratio(s, b[rows], o.periods_per_year),
            "market_correlation": rm.correlation(s, b[rows]),
            "total_return": float(np.prod(1.0 + s) - 1.0),
            "benchmark_total_return": float(np.prod(1.0 + b[rows]) - 1.0),
        }
        if self._risk_adjusted:
            out["sortino_ratio"] = rm.sortino_ratio(s, o.periods_per_year, o.risk_free)
            out["calmar_ratio"] = rm.calmar_ratio(s, o.periods_per_year)
        if task_type == "regression":
            from modalbag.training.metrics import regression_metrics

            out |= {k: v for k, v in regression_metrics(scorer.targets[rows], output[rows]).items() if k in ("mse", "r2")}
        return out


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@hookimpl
def modalbag_register_reports(register: Register) -> None:
    register("finance", FinanceReport, options=FinanceOptions,
             summary="predictions as signals: directional accuracy, Sharpe, drawdown, IR, walk-forward, regimes")
