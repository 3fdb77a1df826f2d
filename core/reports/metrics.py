"""Metric formulas the report plugins share: classification rates, calibration, bootstrap intervals,
returns-based finance ratios and ranking metrics.

Each function takes plain arrays and returns a float, or ``None`` where the formula is undefined
on the given data (a zero denominator, a single class); callers put the reason in their notes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


# -- classification -------------------------------------------------------------------------------


def binary_rates(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """Accuracy, sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP), NPV TN/(TN+FN).

    ``y_true`` and ``y_pred`` are booleans (True = positive). A rate whose denominator is zero is
    ``None``. Also returns the counts ``tp``, ``fp``, ``tn``, ``fn``.
    """
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    tp, fp = int(np.sum(t & p)), int(np.sum(~t & p))
    tn, fn = int(np.sum(~t & ~p)), int(np.sum(t & ~p))
    return {"accuracy": _ratio(tp + tn, len(t)), "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def auroc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the Mann-Whitney statistic (ties count one half).

    AUROC = (R+ - n+(n+ + 1)/2) / (n+ n-), with R+ the sum of the positives' ranks among all scores
    (average ranks for ties). ``None`` when only one class is present.
    """
    from scipy.stats import rankdata

    t = np.asarray(y_true, dtype=bool)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary AUROC of the positive column for 2 classes; else the mean one-vs-rest AUROC over the
    classes present with both positives and negatives (``None`` if none)."""
    if proba.shape[1] == 2:
        return auroc(y == 1, proba[:, 1])
    values = [a for c in range(proba.shape[1]) if (a := auroc(y == c, proba[:, c])) is not None]
    return float(np.mean(values)) if values else None


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Brier score: mean (p - y)^2 of the positive class for 2 classes (as sklearn's
    ``brier_score_loss``); for C > 2, mean over samples of sum_k (p_k - [y = k])^2 (Brier, 1950)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 2:
        return float(np.mean((proba[:, 1] - (y == 1)) ** 2))
    onehot = np.eye(proba.shape[1])[y]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of the top-label confidence over equal-width bins.

    ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)|, where bin b holds the samples whose confidence
    max_k p_k lies in (b/n_bins, (b+1)/n_bins], acc is the share predicted right and conf the mean
    confidence (Guo et al., 2017).
    """
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    bins = np.digitize(conf, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], right=True)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def bootstrap_ci(statistic: Callable[[np.ndarray], float | None], n: int, *, n_boot: int = 200,
                 level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Percentile bootstrap interval of ``statistic(rows)`` over ``n`` rows resampled with replacement.

    Returns ``{"low", "high", "level", "n_boot"}`` where ``n_boot`` counts the resamples on which
    the statistic was defined; ``low``/``high`` are ``None`` when none were.
    """
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        value = statistic(rng.integers(0, n, n))
        if value is not None and np.isfinite(value):
            values.append(value)
    if not values:
        return {"low": None, "high": None, "level": level, "n_boot": 0}
    alpha = (1.0 - level) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return {"low": float(low), "high": float(high), "level": level, "n_boot": len(values)}


# -- returns --------------------------------------------------------------------------------------


def sharpe_ratio(returns: np.ndarray, periods_per_year: float = 252.0, risk_free: float = 0.0) -> float | None:
    """Annualised Sharpe ratio: mean(r - rf) / sd(r - rf) * sqrt(periods_per_year).

    ``risk_free`` is the risk-free return per period; sd uses ddof=1. ``None`` with fewer than two
    returns or no variation.
    """
    excess = np.asarray(returns, dtype=np.float64) - risk_free
    if len(excess) < 2:
        return None
    sd = excess.std(ddof=1)
    return float(excess.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else None


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough loss of the compounded wealth curve, as a positive fraction.

    W_t = prod_{s<=t} (1 + r_s), W_0 = 1; drawdown_t = 1 - W_t / max_{s<=t} W_s; the maximum.
    """
    wealth = np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))])
    return float(np.max(1.0 - wealth / np.maximum.accumulate(wealth)))


def sortino_ratio(returns: np.ndarray, periods_per_year: float = 252.0, risk_free: float = 0.0) -> float | None:
    """Annualised Sortino ratio: mean(r - rf) / downside deviation * sqrt(periods_per_year), where the
    downside deviation is sqrt(mean(min(r - rf, 0)^2)) over all periods. ``None`` with fewer than two
    returns or no period below the risk-free return."""
    excess = np.asarray(returns, dtype=np.float64) - risk_free
    if len(excess) < 2:
        return None
    downside = np.sqrt(np.mean(np.minimum(excess, 0.0) ** 2))
    return float(excess.mean() / downside * np.sqrt(periods_per_year)) if downside > 0 else None


def calmar_ratio(returns: np.ndarray, periods_per_year: float = 252.0) -> float | None:
    """Annualised compound return over the maximum drawdown. ``None`` without a drawdown or with fewer
    than two returns."""
    r = np.asarray(returns, dtype=np.float64)
    drawdown = max_drawdown(r)
    if len(r) < 2 or drawdown <= 0:
        return None
    growth = float(np.prod(1.0 + r))
    if growth <= 0:
        return None
    annual = growth ** (periods_per_year / len(r)) - 1.0
    return float(annual / drawdown)


def information_ratio(returns: np.ndarray, benchmark: np.ndarray, periods_per_year: float = 252.0) -> float | None:
    """Annualised information ratio: mean(r - b) / sd(r - b) * sqrt(periods_per_year) (sd ddof=1)."""
    active = np.asarray(returns, dtype=np.float64) - np.asarray(benchmark, dtype=np.float64)
    return sharpe_ratio(active, periods_per_year)


def directional_accuracy(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    """Share of periods whose predicted sign matches the realised sign, over periods with r != 0."""
    actual = np.asarray(actual, dtype=np.float64)
    moved = actual != 0
    if not moved.any():
        return None
    return float(np.mean(np.sign(np.asarray(predicted, dtype=np.float64)[moved]) == np.sign(actual[moved])))


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation; ``None`` when either series is constant or shorter than two."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# -- ranking --------------------------------------------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, k) item indices by descending score; equal scores keep item order."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    return order[:, :k]


def _relevant_rows(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).sum(axis=1) > 0


def precision_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / k."""
    k = min(k, y.shape[1])
    hits = np.take_along_axis(np.asarray(y) > 0, top_k(scores, k), axis=1)
    return float(hits.sum(axis=1).mean() / k)


def recall_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    """Mean over users with at least one relevant item of |top-k ∩ relevant| / |relevant|."""
    rows = _relevant_rows(y)
    if not rows.any():
        return None
    y, scores = np.asarray(y)[rows] > 0, np.asarray(scores)[rows]
    hits = np.take_along_axis(y, top_k(scores, min(k, y.shape[1])), axis=1).sum(axis=1)
    return float(np.mean(hits / y.sum(axis=1)))


def ndcg_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    """Mean NDCG@k over users with at least one relevant item (binary gains), by scikit-learn.

    DCG@k = sum_{i=1..k} rel_i / log2(i + 1); IDCG@k is the DCG of the ideal order, so NDCG = DCG/IDCG.
    Items with tied scores share the average gain of the positions they span (``ndcg_score``'s tie
    handling), so a recommender that scores everything alike is not credited with the items' order.
    """
    from sklearn.metrics import ndcg_score

    rows = _relevant_rows(y)
    if not rows.any():
        return None
    y, scores = (np.asarray(y)[rows] > 0).astype(float), np.asarray(scores, dtype=np.float64)[rows]
    if y.shape[1] < 2:  # sklearn needs two items to rank; one relevant item alone is a perfect ranking
        return 1.0
    return float(ndcg_score(y, scores, k=min(k, y.shape[1])))


def mean_average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """MAP over users with at least one relevant item, on the full ranking.

    AP = (1/|R|) sum_{i: item i relevant} precision@rank(i).
    """
    rows = _relevant_rows(y)
    if not rows.any():
        return None
    y, scores = np.asarray(y)[rows] > 0, np.asarray(scores)[rows]
    ranked = np.take_along_axis(y, top_k(scores, y.shape[1]), axis=1)
    precision = np.cumsum(ranked, axis=1) / np.arange(1, y.shape[1] + 1)
    return float(np.mean((precision * ranked).sum(axis=1) / ranked.sum(axis=1)))


def catalog_coverage(scores: np.ndarray, k: int) -> float:
    """Share of all items that appear in at least one user's top-k list."""
    return float(len(np.unique(top_k(scores, min(k, scores.shape[1])))) / scores.shape[1])


def intra_list_diversity(lists: np.ndarray, item_vectors: np.ndarray) -> float | None:
    """Mean over lists of the mean pairwise cosine distance 1 - cos(v_i, v_j) between listed items.

    An item with a zero vector has similarity 0 to every other item. ``None`` for lists of one item.
    """
    if lists.shape[1] < 2:
        return None
    v = np.asarray(item_vectors, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    unit = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    sim = unit @ unit.T
    k = lists.shape[1]
    iu = np.triu_indices(k, 1)
    pair_sims = sim[lists[:, iu[0]], lists[:, iu[1]]]
    return float(np.mean(1.0 - pair_sims))


__all__ = ["auroc", "binary_rates", "bootstrap_ci", "brier_score", "catalog_coverage", "correlation",
           "directional_accuracy", "expected_calibration_error", "information_ratio", "intra_list_diversity",
           "macro_auroc", "max_drawdown", "mean_average_precision", "ndcg_at_k", "precision_at_k",
           "recall_at_k", "sharpe_ratio", "top_k"]
