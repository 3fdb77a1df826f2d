"""Records of what was trained: per-epoch metrics, per-learner outcomes, learner specs.

Every number in a record was measured during the run; a value that was not measured is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class LearnerSpec:
    """Which trainer learns a bag, and with what architecture (``select_base_learners``' output)."""

    learner_id: str
    bag_id: int
    trainer: str
    modalities: tuple[str, ...]
    modality_types: Mapping[str, str]
    architecture: Mapping[str, Any] = attrs.field(factory=dict)
    score: float = 0.0
    reason: str = ""
    #: The portfolio measured for this bag's modality subset (`modalbag.engine.portfolio`), in rule order.
    candidates: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: Each candidate's measured cross-validation result, or why it was skipped or failed.
    measured: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: The optimization strategy the portfolio came from.
    strategy: str = ""


@attrs.frozen
class EpochRecord:
    """One epoch of one learner (the spec's ComprehensiveTrainingMetrics)."""

    epoch: int
    train_loss: float
    val_loss: float | None = None
    accuracy: float | None = None
    f1_score: float | None = None
    mse: float | None = None
    r2: float | None = None
    learning_rate: float | None = None
    training_time: float = 0.0
    samples_per_second: float | None = None
    memory_usage_mb: float | None = None
    loss_terms: Mapping[str, float] = attrs.field(factory=dict)
    metrics: Mapping[str, float] = attrs.field(factory=dict)  # from modalbag_epoch_metrics (denoising, ...)
    #: True for an epoch between validations (``eval_interval``): its ``val_loss`` was not measured, and
    #: validators neither count nor compare it.
    validation_skipped: bool = False

    def monitored(self) -> float:
        """The value early stopping and checkpointing watch: validation loss, else training loss."""
        return self.train_loss if self.val_loss is None else self.val_loss

    # -- the spec's ComprehensiveTrainingMetrics names, read from the measured fields ----------------

    @property
    def memory_usage(self) -> float | None:
        """The spec's name for `memory_usage_mb` (peak resident memory of the epoch, MiB)."""
        return self.memory_usage_mb

    @property
    def modal_reconstruction_loss(self) -> dict[str, float]:
        """Per target modality, the ``reconstruction`` objective's unweighted loss this epoch (its
        ``reconstruction.<modality>`` metric); empty when the objective did not run."""
        return {k.partition(".")[2]: v for k, v in self.metrics.items()
                if k.startswith("reconstruction.") and k != "reconstruction.loss"}

    @property
    def modal_alignment_score(self) -> dict[str, float]:
        """The ``alignment`` objective's top-1 retrieval accuracy, under ``"all_pairs"``: it is measured
        over every pair of present modalities at once, never per pair; empty when it did not run."""
        score = self.metrics.get("alignment.score")
        return {} if score is None else {"all_pairs": score}

    @property
    def modal_consistency_score(self) -> float | None:
        """The ``consistency`` objective's agreement between full and modality-dropped predictions
        (its ``consistency.score``); None when it did not run (never a made-up 0.0)."""
        return self.metrics.get("consistency.score")

    def scalars(self) -> dict[str, float]:
        """An epoch's measured numbers under the names every sink uses (unmeasured ones left out).

        ``loss/train``, ``loss/val``, ``metrics/<accuracy|f1|mse|r2>``, ``optim/learning_rate``,
        ``perf/epoch_seconds``, ``perf/samples_per_second``, ``perf/memory_mb``, ``loss_terms/<term>``
        (each weighted denoising term) and ``extra/<name>`` (`EpochRecord.metrics`: gradient norm,
        each objective's own loss, ...).
        """
        out: dict[str, float | None] = {
            "loss/train": self.train_loss, "loss/val": self.val_loss,
            "metrics/accuracy": self.accuracy, "metrics/f1": self.f1_score,
            "metrics/mse": self.mse, "metrics/r2": self.r2,
            "optim/learning_rate": self.learning_rate, "perf/epoch_seconds": self.training_time,
            "perf/samples_per_second": self.samples_per_second, "perf/memory_mb": self.memory_usage_mb,
        }
        out.update({f"loss_terms/{k}": v for k, v in self.loss_terms.items()})
        out.update({f"extra/{k}": v for k, v in self.metrics.items()})
        return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}

    def to_dict(self) -> dict[str, Any]:
        """Plain data, mappings copied to dicts: what checkpoints, run logs and learner files store."""
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in attrs.asdict(self, recurse=False).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        """The record `to_dict` gave; keys that are not fields (a run-log line's context) are ignored."""
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@attrs.define
class TrainedLearner:
    """A learner's outcome: its model (when it trained), its records, its status and error."""

    spec: LearnerSpec
    status: str  # "trained" or "failed"
    model: Any = None
    records: list[EpochRecord] = attrs.field(factory=list)
    training_time: float = 0.0
    error: str | None = None
    validation: Mapping[str, float] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)
    checkpoint: str | None = None

    @property
    def learner_id(self) -> str:
        return self.spec.learner_id

    @property
    def ok(self) -> bool:
        return self.status == "trained"


__all__ = ["EpochRecord", "LearnerSpec", "TrainedLearner"]
