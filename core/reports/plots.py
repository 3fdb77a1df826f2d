"""Pictures of a run as PNG bytes: robustness curves, training curves per learner, learner comparison,
modality importance.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display needed); matplotlib
is the ``plots`` extra and is imported only here, when a picture is asked for.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from modalbag.errors import ModalbagError
from modalbag.kernel.records import TrainedLearner

#: At most this many learners get a curve panel (the rest are listed in the report's tables).
MAX_CURVE_PANELS = 24
#: At most this many modality subsets get a bar (all are in the report's table).
MAX_SUBSET_BARS = 20


class PlotsUnavailableError(ModalbagError, ImportError):
    """matplotlib is not installed: ``pip install 'modalbag[plots]'``."""


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotsUnavailableError("plots need matplotlib: pip install 'modalbag[plots]'") from exc
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def training_curves_png(learners: Mapping[str, TrainedLearner]) -> bytes:
    """One panel per learner: training and validation loss per epoch (validation accuracy on the right)."""
    shown = [(lid, r) for lid, r in learners.items() if r.records][:MAX_CURVE_PANELS]
    if not shown:
        shown = list(learners.items())[:1]
    cols = min(4, max(1, len(shown)))
    rows = math.ceil(len(shown) / cols)
    figure = _figure(3.2 * cols, 2.4 * rows)
    for i, (lid, learner) in enumerate(shown, start=1):
        ax = figure.add_subplot(rows, cols, i)
        epochs = [r.epoch for r in learner.records]
        ax.plot(epochs, [r.train_loss for r in learner.records], label="train loss", color="tab:blue")
        val = [(r.epoch, r.val_loss) for r in learner.records if r.val_loss is not None]
        if val:
            ax.plot(*zip(*val, strict=True), label="val loss", color="tab:orange")
        acc = [(r.epoch, r.accuracy) for r in learner.records if r.accuracy is not None]
        if acc:
            twin = ax.twinx()
            twin.plot(*zip(*acc, strict=True), label="val accuracy", color="tab:green", linestyle="--")
            twin.set_ylim(0, 1)
            twin.tick_params(labelsize=7)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_title(f"{lid} ({learner.spec.trainer}, {learner.status})", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        if i == 1:
            ax.legend(fontsize=6)
    return _png(figure)


def learner_comparison_png(learners: Mapping[str, TrainedLearner], metric: str) -> bytes:
    """Validation ``metric`` and training time per learner, side by side (failed learners at 0, hatched)."""
    ids = list(learners)
    figure = _figure(10, 0.3 * len(ids) + 1.5)
    left, right = figure.subplots(1, 2, sharey=True)
    scores = [float(learners[lid].validation.get(metric, 0.0)) for lid in ids]
    colors = ["tab:blue" if learners[lid].ok else "tab:red" for lid in ids]
    bars = left.barh(ids, scores, color=colors)
    for bar, lid in zip(bars, ids, strict=True):
        if not learners[lid].ok:
            bar.set_hatch("//")
    left.set_xlabel(f"validation {metric}")
    left.invert_yaxis()
    right.barh(ids, [learners[lid].training_time for lid in ids], color="tab:gray")
    right.set_xlabel("training time (s)")
    return _png(figure)


def modality_importance_png(importance: Mapping[str, float], metric: str) -> bytes:
    """The drop in ``metric`` when each modality is removed (positive: the modality helps)."""
    names = list(importance)
    figure = _figure(6, 0.4 * len(names) + 1.5)
    ax = figure.add_subplot(1, 1, 1)
    values = [float(importance[n]) for n in names]
    ax.barh(names, values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"drop in {metric} without the modality")
    ax.invert_yaxis()
    return _png(figure)


def robustness_png(headline: Mapping[str, Any]) -> bytes:
    """The ensemble's score as modalities go missing: by share missing (left), by subset present (right)."""
    metric = headline["metric"]
    figure = _figure(10, 3.2)
    left, right = figure.subplots(1, 2)
    curve = [(p["share_missing"], p["score"]) for p in headline["by_share_missing"] if p["score"] is not None]
    if curve:
        left.plot(*zip(*curve, strict=True), marker="o", color="tab:blue")
    left.set_xlabel("share of (row, modality) pairs missing")
    left.set_ylabel(metric)
    left.set_title(f"{metric} as modalities go missing", fontsize=9)
    subsets = [(" + ".join(s["present"]), s["score"]) for s in headline["by_subset"] if s["score"] is not None]
    subsets = subsets[:MAX_SUBSET_BARS]
    right.barh([n for n, _ in subsets], [v for _, v in subsets], color="tab:green")
    right.invert_yaxis()
    right.set_xlabel(metric)
    right.set_title("with only these modalities present", fontsize=9)
    right.tick_params(axis="y", labelsize=7)
    return _png(figure)


__all__ = ["MAX_CURVE_PANELS", "MAX_SUBSET_BARS", "PlotsUnavailableError", "learner_comparison_png",
           "modality_importance_png", "robustness_png", "training_curves_png"]
