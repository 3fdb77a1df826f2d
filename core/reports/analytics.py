"""The formulas behind the training reports: plain functions over learners' epoch records.

Every function reads measured records (`EpochRecord`, `TrainedLearner`) and returns numbers that
can be checked by hand; a value that cannot be computed from what was recorded is ``None``. The
definitions (docs/monitoring.md repeats them with examples):

- monitored loss ``m_e``: epoch e's validation loss, or its training loss without a validation split.
- **convergence epoch**: the first epoch with ``m_e <= m_min + 0.05 * (m_1 - m_min)``, i.e. where
  95% of the learner's total improvement had been made.
- **convergence rate**: ``(m_1 - m_c) / (m_1 * max(1, c - 1))`` for convergence epoch ``c``: the
  fraction of the first epoch's loss removed per epoch on the way to convergence.
- **overfitting score**: ``(v_last - v_min) / v_last`` over validation losses ``v``: 0 when the last
  epoch is the best, towards 1 as validation loss climbs away from its minimum.
- **generalization gap**: ``(v_b - t_b) / v_b`` at the best epoch b (validation vs training loss).
- **stability score**: ``D / (D + U)`` over the training-loss curve, D the summed decreases and U the
  summed increases between consecutive epochs (1.0 when it never rises; a flat curve is 1.0).
  1 = monotone descent, 0.5 = as much up as down, 0 = monotone ascent.
- **throughput**: ``sum(samples_per_second_e * time_e) / sum(time_e)``: samples over seconds.
- **update rate**: ``sum(optimizer_steps_e) / sum(time_e)``: optimizer updates per second (the
  steps are counted where gradients are clipped, so it needs ``gradient_clipping``).
- **objective effectiveness**: ``(L_first - L_last) / L_first`` of a denoising objective's own
  (unweighted) loss, first and last epoch it was active: how much of it the learner learned away.
- **denoising share**: mean over epochs of ``sum(terms) / (task_loss + sum(terms))``: the part of
  the optimised loss the denoising terms made up.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from modalbag.kernel.records import EpochRecord, TrainedLearner

#: Fraction of the total improvement left when a learner counts as converged.
CONVERGENCE_TOLERANCE = 0.05
#: The stability score below which training counts as unstable (the spec's own threshold).
STABLE_SCORE = 0.8
#: Stability below this is a high-severity issue.
VERY_UNSTABLE_SCORE = 0.6
#: An epoch whose training loss exceeds the previous one's by this factor is a spike.
LOSS_SPIKE_FACTOR = 1.5
#: An epoch whose largest gradient norm exceeds this many times the learner's median mean norm.
GRADIENT_SPIKE_FACTOR = 10.0
#: Overfitting score above which a learner counts as overfitting.
OVERFITTING_THRESHOLD = 0.1
#: Mean generalization gap above which the run counts as generalising poorly.
GAP_THRESHOLD = 0.3
#: Denoising terms larger than this multiple of the task loss dominate it.
DENOISING_DOMINANCE = 1.0
#: Peak memory above this fraction of the limit is a memory issue.
MEMORY_PRESSURE = 0.8
#: A learner slower than this fraction of the median throughput is a speed issue.
SLOW_FRACTION = 0.25

#: The validation score each task ranks learners by (all higher-is-better).
PRIMARY_METRIC = {"classification": "accuracy", "multilabel": "accuracy", "regression": "r2"}


# -- one learner --------------------------------------------------------------------------------


def monitored(records: Sequence[EpochRecord]) -> list[float]:
    return [r.monitored() for r in records]


def convergence_epoch(records: Sequence[EpochRecord], tolerance: float = CONVERGENCE_TOLERANCE) -> int | None:
    """First epoch with ``m_e <= m_min + tolerance * (m_1 - m_min)``; None without records."""
    m = monitored(records)
    if not m:
        return None
    lowest = min(m)
    threshold = lowest + tolerance * max(0.0, m[0] - lowest)
    return next(r.epoch for r, value in zip(records, m, strict=True) if value <= threshold)


def convergence_rate(records: Sequence[EpochRecord]) -> float | None:
    """``(m_1 - m_c) / (m_1 * max(1, c - 1))``, c the convergence epoch's position (1-based)."""
    m = monitored(records)
    epoch = convergence_epoch(records)
    if epoch is None or m[0] <= 0:
        return None
    c = next(i for i, r in enumerate(records, start=1) if r.epoch == epoch)
    return (m[0] - m[c - 1]) / (m[0] * max(1, c - 1))


def overfitting_score(records: Sequence[EpochRecord]) -> float | None:
    """``(v_last - v_min) / v_last`` over the validation losses; None without any."""
    v = [r.val_loss for r in records if r.val_loss is not None]
    if not v or v[-1] <= 0:
        return None if not v else 0.0
    return (v[-1] - min(v)) / v[-1]


def best_epoch_index(records: Sequence[EpochRecord]) -> int | None:
    m = monitored(records)
    return int(np.argmin(m)) if m else None


def generalization_gap(records: Sequence[EpochRecord]) -> float | None:
    """``(v_b - t_b) / v_b`` at the best epoch b; None without validation losses."""
    b = best_epoch_index(records)
    if b is None or records[b].val_loss is None or records[b].val_loss <= 0:
        return None
    r = records[b]
    return (r.val_loss - r.train_loss) / r.val_loss


def stability_score(records: Sequence[EpochRecord]) -> float | None:
    """``D / (D + U)`` over consecutive training losses; None with fewer than two epochs."""
    t = [r.train_loss for r in records]
    if len(t) < 2:
        return None
    steps = np.diff(t)
    down, up = float(-steps[steps < 0].sum()), float(steps[steps > 0].sum())
    return 1.0 if down + up == 0 else down / (down + up)


#: A learner whose monitored loss fell by more than this share over its last fifth of epochs, ending
#: at its lowest, was still learning when training stopped.
STILL_IMPROVING = 0.01


def still_improving(records: Sequence[EpochRecord]) -> float | None:
    """The share by which the monitored loss fell over the last ``max(1, round(E / 5))`` epochs, when
    the last epoch has the lowest loss and the fall exceeds `STILL_IMPROVING`; ``None`` otherwise
    (fewer than two epochs, a loss that flattened or rose again)."""
    losses = [r.monitored() for r in records]
    losses = [v for v in losses if v is not None]
    if len(losses) < 2:
        return None
    k = max(1, round(len(losses) / 5))
    before, last = losses[-1 - k], losses[-1]
    if last > min(losses) or before <= 0:
        return None
    fall = (before - last) / before
    return float(fall) if fall > STILL_IMPROVING else None


def throughput(records: Iterable[EpochRecord]) -> float | None:
    """Samples per second over the epochs: ``sum(sps * t) / sum(t)``."""
    pairs = [(r.samples_per_second, r.training_time) for r in records
             if r.samples_per_second is not None and r.training_time > 0]
    seconds = sum(t for _, t in pairs)
    return sum(s * t for s, t in pairs) / seconds if seconds > 0 else None


def update_rate(records: Iterable[EpochRecord]) -> float | None:
    """Optimizer updates per second: ``sum(optimizer_steps) / sum(time)`` over epochs that counted them."""
    pairs = [(r.metrics["optimizer_steps"], r.training_time) for r in records
             if "optimizer_steps" in r.metrics and r.training_time > 0]
    seconds = sum(t for _, t in pairs)
    return sum(n for n, _ in pairs) / seconds if seconds > 0 else None


def objective_losses(records: Sequence[EpochRecord]) -> dict[str, list[float]]:
    """Each denoising objective's own loss per epoch it was active (``<name>.loss`` metrics)."""
    out: dict[str, list[float]] = {}
    for r in records:
        for key, value in r.metrics.items():
            if key.endswith(".loss") and not key.startswith("weight."):
                out.setdefault(key[: -len(".loss")], []).append(float(value))
    return out


def objective_effectiveness(records: Sequence[EpochRecord]) -> dict[str, float]:
    """``(L_first - L_last) / L_first`` per objective (objectives with a positive first loss)."""
    return {name: (losses[0] - losses[-1]) / losses[0]
            for name, losses in objective_losses(records).items() if losses[0] > 0}


def denoising_share(records: Sequence[EpochRecord]) -> float | None:
    """Mean over epochs with denoising terms of ``sum(terms) / (task_loss + sum(terms))``."""
    shares = []
    for r in records:
        terms = sum(v for k, v in r.loss_terms.items() if k.startswith("denoising."))
        if any(k.startswith("denoising.") for k in r.loss_terms) and r.train_loss + terms > 0:
            shares.append(terms / (r.train_loss + terms))
    return float(np.mean(shares)) if shares else None


def learner_summary(learner: TrainedLearner) -> dict[str, Any]:
    """Every per-learner number above for one learner."""
    records = learner.records
    b = best_epoch_index(records)
    last = records[-1] if records else None
    return {
        "epochs": len(records),
        "best_epoch": records[b].epoch if b is not None else None,
        "best_monitored_loss": records[b].monitored() if b is not None else None,
        "final_train_loss": last.train_loss if last else None,
        "final_val_loss": last.val_loss if last else None,
        "final_accuracy": last.accuracy if last else None,
        "convergence_epoch": convergence_epoch(records),
        "convergence_rate": convergence_rate(records),
        "overfitting_score": overfitting_score(records),
        "generalization_gap": generalization_gap(records),
        "stability_score": stability_score(records),
        "throughput": throughput(records),
        "update_rate": update_rate(records),
        "avg_epoch_time": float(np.mean([r.training_time for r in records])) if records else None,
        "peak_memory_mb": max((r.memory_usage_mb for r in records if r.memory_usage_mb is not None), default=None),
        "denoising_effectiveness": objective_effectiveness(records),
        "denoising_share": denoising_share(records),
    }


# -- many learners ------------------------------------------------------------------------------


def mean_or_none(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def median_or_none(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(statistics.median(kept)) if kept else None


def primary_score(learner: TrainedLearner, task_type: str) -> float | None:
    value = learner.validation.get(PRIMARY_METRIC[task_type])
    return None if value is None else float(value)


def best_learner(learners: Mapping[str, TrainedLearner], task_type: str) -> str | None:
    """The trained learner with the highest validation score (ties: the first in run order)."""
    scored = [(primary_score(r, task_type), lid) for lid, r in learners.items() if r.ok]
    scored = [(s, lid) for s, lid in scored if s is not None]
    if not scored:
        return None
    best = max(s for s, _ in scored)
    return next(lid for s, lid in scored if s == best)


def denoising_analysis(learners: Iterable[TrainedLearner]) -> dict[str, float]:
    """Mean effectiveness of each objective over the learners that trained with it."""
    per: dict[str, list[float]] = {}
    for learner in learners:
        for name, value in objective_effectiveness(learner.records).items():
            per.setdefault(name, []).append(value)
    return {name: float(np.mean(values)) for name, values in sorted(per.items())}


def stability_issues(learner_id: str, learner: TrainedLearner) -> list[dict[str, Any]]:
    """Oscillating loss, loss spikes, gradient spikes and divergence of one learner."""
    issues: list[dict[str, Any]] = []
    if not learner.ok and learner.error and "TrainingDivergedError" in learner.error:
        issues.append({"type": "diverged", "severity": "high", "learner_id": learner_id,
                       "description": learner.error})
    records = learner.records
    score = stability_score(records)
    if score is not None and score < STABLE_SCORE:
        issues.append({"type": "oscillating_loss", "learner_id": learner_id,
                       "severity": "high" if score < VERY_UNSTABLE_SCORE else "medium",
                       "description": f"training loss rose for {1 - score:.0%} of its movement "
                                      f"(stability {score:.3f} < {STABLE_SCORE})"})
    for prev, cur in zip(records, records[1:], strict=False):
        if prev.train_loss > 0 and cur.train_loss > LOSS_SPIKE_FACTOR * prev.train_loss:
            issues.append({"type": "loss_spike", "severity": "high", "learner_id": learner_id, "epoch": cur.epoch,
                           "description": f"training loss jumped from {prev.train_loss:.4g} to {cur.train_loss:.4g} "
                                          f"at epoch {cur.epoch}"})
    means = [r.metrics["grad_norm"] for r in records if "grad_norm" in r.metrics]
    if means:
        typical = statistics.median(means)
        for r in records:
            peak = r.metrics.get("grad_norm_max")
            if peak is not None and typical > 0 and peak > GRADIENT_SPIKE_FACTOR * typical:
                issues.append({"type": "gradient_spike", "severity": "medium", "learner_id": learner_id,
                               "epoch": r.epoch, "description": f"gradient norm reached {peak:.4g}, "
                                                                f"{peak / typical:.1f}x the median {typical:.4g}"})
    return issues


# -- the ensemble on out-of-bag rows ------------------------------------------------------------


def oob_combined(ensemble: Any, learner_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's output using only ``learner_ids``, on rows none of them trained on: (rows, output).

    (The combination rule itself was fitted on these rows: see `Ensemble.out_of_fold`.)

    The combination is the ensemble's own for that learner set (`Ensemble.combination_for`), applied
    to its experts' out-of-fold outputs (cross-fitted, or out-of-bag), on the rows every expert has.
    """
    return ensemble.out_of_fold(list(learner_ids))


__all__ = [
    "CONVERGENCE_TOLERANCE", "PRIMARY_METRIC", "STABLE_SCORE", "STILL_IMPROVING", "best_learner", "convergence_epoch",
    "convergence_rate", "denoising_analysis", "denoising_share", "generalization_gap", "learner_summary",
    "mean_or_none", "median_or_none", "objective_effectiveness", "oob_combined", "overfitting_score",
    "primary_score", "stability_issues", "stability_score", "still_improving", "throughput", "update_rate",
]
