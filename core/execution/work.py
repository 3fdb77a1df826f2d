"""The contract between the engine and executor plugins: the `TrainingWork` handed over, the `Executor`.

The engine hands an executor plugin a `TrainingWork`: the run's learner jobs, each with its memory
footprint estimated before it starts. The executor runs every job once, where it likes (this
process, worker processes, Ray tasks, torchrun ranks), and yields a `JobResult` per job as it
finishes. Results carry the trained model, the records and the structured log events the worker
emitted (`modalbag.execution.events`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.dataset import MultimodalDataset
from modalbag.execution.fitting import fit_learner
from modalbag.execution.jobs import JobResult, LearnerJob, failed_result
from modalbag.execution.resources import limited_threads
from modalbag.execution.workers import SharedData, WorkerContext, worker_name
from modalbag.kernel.registry import Catalog
from modalbag.kernel.run import Run
from modalbag.training.profiling import peak_rss


@attrs.define(eq=False)
class TrainingWork:
    """A run's learner jobs and what running them needs, here (`fit_here`) or elsewhere (`context`)."""

    run: Run
    jobs: tuple[LearnerJob, ...]
    dataset: MultimodalDataset
    targets: np.ndarray
    catalog: Catalog
    threads: int
    memory_budget: int | None
    _context: WorkerContext | None = None

    @property
    def config(self) -> TrainingConfig:
        return self.run.config

    def fit_here(self, job: LearnerJob) -> JobResult:
        """Fit ``job`` in this process on the parent's run (its hooks see the parent's instances)."""
        started = time.time()
        with limited_threads(self.threads):
            learner = fit_learner(job.spec, job.bag, self.dataset, self.targets, self.run, self.catalog)
        return JobResult(learner, (), worker_name(), started, time.time(), peak_rss())

    def context(self) -> WorkerContext:
        """The picklable snapshot of this run that workers rebuild it from (made once)."""
        if self._context is None:
            active = self.run.active
            modalities = sorted({m for job in self.jobs for m in job.spec.modalities})
            trainers = {job.spec.trainer: self.catalog.get("trainer", job.spec.trainer) for job in self.jobs}
            self._context = WorkerContext(
                config=self.run.config, task=self.run.task, run_id=self.run.run_id, optimizer=active.optimizer,
                scheduler=active.scheduler, hooked=active.hooked, instances=tuple(active.instances),
                trainers=trainers, data=SharedData.of(self.dataset, modalities), targets=self.targets,
                threads=self.threads, observers=active.observers)
        return self._context

    def lost(self, job: LearnerJob, reason: str, worker: str = "") -> JobResult:
        return failed_result(job, reason, lost=True, worker=worker)


class Executor(Protocol):
    """What an executor factory returns (see ``modalbag_register_executors``)."""

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        """Run every job of ``work`` once; yield each one's result as it finishes, in any order."""


__all__ = ["Executor", "TrainingWork"]
