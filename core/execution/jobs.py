"""The unit of work an executor runs: a learner job, its memory footprint, and its result."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from modalbag.data.bags import Bag
from modalbag.kernel.records import LearnerSpec, TrainedLearner

MIB = 1 << 20


@attrs.frozen
class Footprint:
    """A learner's estimated memory while it trains, in bytes, and how it was estimated."""

    data: int
    model: int
    activations: int
    source: str = "estimate"

    @property
    def total(self) -> int:
        return self.data + self.model + self.activations

    @property
    def total_mb(self) -> float:
        return round(self.total / MIB, 1)


@attrs.frozen
class LearnerJob:
    """One learner to fit: its spec, its bag, and its footprint estimated before it starts."""

    spec: LearnerSpec
    bag: Bag
    footprint: Footprint

    @property
    def learner_id(self) -> str:
        return self.spec.learner_id


@attrs.frozen
class JobResult:
    """What an executor yields per job: the learner's record plus where and how it ran.

    ``lost`` holds the reason when the worker died rather than the learner failing by itself;
    ``events`` are the structured log events captured in the worker (empty when it ran here).
    """

    learner: TrainedLearner
    events: tuple[Mapping[str, Any], ...] = ()
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0
    peak_rss: int | None = None
    lost: str | None = None


def failed_result(job: LearnerJob, error: BaseException | str, *, lost: bool = False,
                  worker: str = "") -> JobResult:
    """A failed record for ``job``: ``lost`` when its worker died rather than the learner raising."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    learner = TrainedLearner(job.spec, "failed", error=f"WorkerLostError: {text}" if lost else text)
    return JobResult(learner, worker=worker, finished=time.time(), lost=text if lost else None)


__all__ = ["MIB", "Footprint", "JobResult", "LearnerJob", "failed_result"]
