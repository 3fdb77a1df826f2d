"""The engine: one run trains every learner of an ensemble with the run's active plugin set.

A learner that raises (or whose loss diverges) is recorded as failed with its error; the others
still train and are kept. The engine owns the validation split so that every trainer holds out the
same rows, and builds optimizers and schedules for neural trainers from the configured plugins.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.engine.executors import (
    JobResult,
    LearnerJob,
    ProgressBar,
    TrainingWork,
    WorkerLostError,
    estimate_footprint,
    memory_budget,
    replay_events,
    threads_for,
)
from modalbag.kernel.assembly import ActiveSet, assemble, build_options
from modalbag.kernel.fit import FitState, Stash
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog, default_catalog
from modalbag.logs import get_logger
from modalbag.training.checkpoints import flush as flush_checkpoints
from modalbag.training.metrics import task_metrics
from modalbag.training.schedules import ConstantSchedule, LinearWarmup, Schedule

log = get_logger("modalbag.engine")


@attrs.frozen
class TaskInfo:
    """What the learners predict: task type, output width, class values and the class prior."""

    task_type: str
    n_outputs: int
    classes: np.ndarray | None = attrs.field(eq=False)
    prior: np.ndarray = attrs.field(eq=False)


@attrs.frozen
class BagData:
    """A learner's training data: full arrays (no copies) plus the rows it may use."""

    arrays: Mapping[str, np.ndarray]
    masks: Mapping[str, np.ndarray]
    specs: Mapping[str, Any]
    targets: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray


@attrs.define(eq=False)
class Run:
    """One training run: its config, its own plugin manager's hooks, and shared context."""

    config: TrainingConfig
    active: ActiveSet
    task: TaskInfo
    run_id: str = attrs.field(factory=lambda: uuid.uuid4().hex[:12])
    stash: Stash = attrs.field(factory=Stash)
    #: The executor plugin's instance that runs the learners (built by `Engine.prepare`).
    executor: Any = attrs.field(default=None, repr=False)
    #: This process's DDP rank (`modalbag.training.distributed.DistributedContext`), or None outside DDP.
    distributed: Any = None

    @property
    def hook(self) -> Any:
        return self.active.plugin_manager.hook

    def build_optimizer(self, params: Any) -> Any:
        sel = self.active.optimizer
        return sel.component.factory(params, self.config, sel.options)

    def build_schedule(self, optimizer: Any, steps_per_epoch: int) -> Schedule:
        """The configured scheduler, behind a linear warmup unless it warms up by itself."""
        sel = self.active.scheduler
        inner: Schedule = (ConstantSchedule() if sel is None
                           else sel.component.factory(optimizer, self.config, sel.options, steps_per_epoch))
        handles_warmup = sel is not None and getattr(sel.component.factory, "handles_warmup", False)
        if self.config.warmup_epochs and not handles_warmup:
            return LinearWarmup(optimizer, inner, self.config.warmup_epochs * steps_per_epoch)
        return inner


def split_validation(bag: Bag, fraction: float, seed: int, strategy: str = "random",
                     targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the bag's *distinct* rows, with every bootstrap copy of them.

    Holding out distinct rows keeps a duplicated sample from sitting on both sides of the split.
    ``strategy`` picks which rows: ``"random"`` (seeded), ``"stratified"`` (seeded, the same share of
    each class of ``targets``; random when a class has a single row) or ``"time_series"`` (the latest
    rows, row order being time order, so no validation row precedes a training row).

    A fold bag (`Bag.fold` set) is not split: its held-out fold is its validation set, so the learner
    trains on every row of its training folds and is validated on the rows it is the out-of-fold
    predictor of.
    """
    if bag.fold is not None:
        return bag.rows, bag.oob_rows
    distinct = np.unique(bag.rows)
    n_val = int(round(fraction * len(distinct)))
    if fraction <= 0 or n_val < 1 or len(distinct) - n_val < 2:
        return bag.rows, np.empty(0, dtype=np.int64)
    if strategy == "time_series":
        val = distinct[len(distinct) - n_val:]
    elif strategy == "stratified" and targets is not None and _stratifiable(targets[distinct], n_val):
        from sklearn.model_selection import train_test_split

        _, val = train_test_split(distinct, test_size=n_val, stratify=targets[distinct], random_state=seed % 2**32)
        val = np.sort(val)
    else:
        rng = np.random.default_rng(seed)
        val = np.sort(rng.choice(distinct, n_val, replace=False))
    return bag.rows[~np.isin(bag.rows, val)], val


def _stratifiable(labels: np.ndarray, n_val: int) -> bool:
    """Class labels with at least two rows per class and room for every class on both sides."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return False
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return counts.min() >= 2 and len(counts) <= min(n_val, len(labels) - n_val)


def complete_rows(rows: np.ndarray, masks: Mapping[str, np.ndarray], modalities: Sequence[str]) -> np.ndarray:
    """The rows among ``rows`` that have every one of ``modalities``."""
    if len(rows) == 0:
        return rows
    keep = np.all([masks[m][rows] for m in modalities], axis=0)
    return rows[keep]


def fit_learner(spec: LearnerSpec, bag: Bag, dataset: MultimodalDataset, targets: np.ndarray,
                run: Run, catalog: Catalog, learner: Any = None, announce: bool = True) -> TrainedLearner:
    """Fit one learner; never raises for the learner's own failures (the record says failed).

    ``learner``: an unfitted learner object to fit (`EnsembleTrainingPipeline` passes the ones
    its caller built); by default the spec's trainer plugin builds one. ``announce=False`` logs
    nothing (the fits that measure a candidate are not learners of the run).
    """
    started = time.perf_counter()
    fit = FitState(spec=spec, bag=bag, gradient_clipping=run.config.gradient_clipping)
    bound = log.bind(run=run.run_id, learner=spec.learner_id, bag=bag.id, trainer=spec.trainer)
    try:
        if learner is None:
            component = catalog.get("trainer", spec.trainer)
            learner = component.factory(spec, run.config, build_options(component, run.config))
        train_rows, val_rows = split_validation(bag, run.config.validation_split, bag.seed,
                                                run.config.validation_strategy, targets)
        data = BagData(
            arrays={m: dataset.arrays[m] for m in spec.modalities},
            masks={m: dataset.masks[m] for m in spec.modalities},
            specs={m: dataset.specs[m] for m in spec.modalities},
            targets=targets, train_rows=train_rows, val_rows=val_rows,
        )
        run.hook.modalbag_fit_start(run=run, fit=fit)
        learner.fit(data, run, fit)
        flush_checkpoints()  # its checkpoint files are on disk before its record says trained
        run.hook.modalbag_fit_end(run=run, fit=fit)
        validation = _validate(learner, data, run.task, spec.modalities)
        cv = getattr(learner, "cross_validation", None)  # tabular trainers' k-fold scores on training rows
        if cv:
            validation |= {f"cv_{k}_mean": v for k, v in cv["mean"].items()}
            validation |= {f"cv_{k}_std": v for k, v in cv["std"].items()}
    except Exception as exc:  # noqa: BLE001 - a failing learner must not take the others down
        with contextlib.suppress(Exception):  # what was queued is written; the learner's error is the story
            flush_checkpoints()
        elapsed = time.perf_counter() - started
        if announce:
            bound.warning("learner.failed", error=f"{type(exc).__name__}: {exc}", seconds=round(elapsed, 3))
        run.hook.modalbag_fit_error(run=run, learner_id=spec.learner_id, error=exc)
        return TrainedLearner(spec, "failed", records=fit.records, training_time=elapsed,
                              error=f"{type(exc).__name__}: {exc}", notes=fit.notes)
    elapsed = time.perf_counter() - started
    if announce:
        bound.info("learner.trained", seconds=round(elapsed, 3), epochs=len(fit.records), **validation)
    return TrainedLearner(spec, "trained", model=learner, records=fit.records, training_time=elapsed,
                          validation=validation, notes=fit.notes, checkpoint=fit.checkpoint)


def _validate(learner: Any, data: BagData, task: TaskInfo, modalities: Sequence[str]) -> dict[str, float]:
    rows = complete_rows(data.val_rows, data.masks, modalities)
    if len(rows) == 0:
        return {}
    output = learner.predict_output({m: data.arrays[m][rows] for m in modalities})
    return task_metrics(task.task_type, data.targets[rows], output)


class Engine:
    """Trains learners on bags with the plugins a config activates; one plugin manager per run."""

    def __init__(self, catalog: Catalog | None = None, plugins: Sequence[object] = ()):
        self.catalog = catalog or default_catalog()
        self.plugins = tuple(plugins)

    def prepare(self, config: TrainingConfig, task: TaskInfo) -> Run:
        """Assemble the active set; every config and plugin error surfaces here, before training."""
        active = assemble(config, self.catalog, self.plugins)
        executor = None
        if active.executor is not None:  # built now, so that a missing library fails before training
            executor = active.executor.component.factory(config, active.executor.options)
        return Run(config=config, active=active, task=task, executor=executor)

    def jobs(self, run: Run, specs: Sequence[LearnerSpec], bags: Mapping[int, Bag],
             dataset: MultimodalDataset) -> tuple[LearnerJob, ...]:
        """Each learner's job, with its memory footprint estimated before it starts."""
        out = []
        for spec in specs:
            bag = bags[spec.bag_id]
            try:
                trainer = self.catalog.get("trainer", spec.trainer)
            except Exception:  # noqa: BLE001 - fitting reports the trainer's problem as this learner's
                trainer = None
            footprint = estimate_footprint(spec, bag, dataset.specs, run.config, run.task.n_outputs, trainer)
            out.append(LearnerJob(spec, bag, footprint))
        return tuple(out)

    def train(self, run: Run, specs: Sequence[LearnerSpec], bags: Mapping[int, Bag],
              dataset: MultimodalDataset, targets: np.ndarray, *, resume: Any = None,
              adopted: Mapping[str, TrainedLearner] | None = None) -> dict[str, TrainedLearner]:
        """Fit every learner with the run's executor and return every record, failed ones included.

        Records come back in ``specs`` order whatever order the learners finish in. With
        ``config.run_dir`` the run keeps ``run.json`` and each finished learner there
        (`modalbag.store.runrecord`); ``resume`` (that record, read back) loads the learners it trained.
        ``adopted``: learners of this run already fitted on their bags (the k-fold models the portfolio
        measurement kept, `modalbag.engine.portfolio`): recorded like the others, not fitted again.
        """
        from modalbag.store.runrecord import Journal

        journal = Journal.start(run, specs, bags, dataset, targets, resume) if run.config.run_dir else None
        done = journal.trained_learners(self.catalog) if journal is not None and resume is not None else {}
        adopted = {lid: r for lid, r in (adopted or {}).items() if lid not in done and r.ok}
        if journal is not None:
            for learner in adopted.values():
                journal.finished(learner)
        done = {**done, **adopted}
        run.hook.modalbag_run_start(run=run)
        jobs = self.jobs(run, [s for s in specs if s.learner_id not in done], bags, dataset)
        work = TrainingWork(run, jobs, dataset, targets, self.catalog, threads_for(run.config),
                            memory_budget(run.config))
        executor = run.executor if run.executor is not None else _InThisProcess()
        log.info("run.start", run=run.run_id, learners=len(specs), already_fitted=len(done), plugins=run.active.names(),
                 executor=type(executor).__name__, threads_per_learner=work.threads)
        bag_of = {job.learner_id: job.bag.id for job in jobs}
        results: dict[str, TrainedLearner] = {}
        progress = ProgressBar(len(jobs)) if ProgressBar.wanted(run.config) else None
        if progress is not None:  # epochs of learners trained in this process (workers keep theirs)
            run.active.plugin_manager.register(progress, name="progress")
        outcomes = executor.execute(work) if jobs else iter(())
        try:
            for outcome in outcomes:
                self._received(run, outcome, bag_of, results, len(jobs))
                if journal is not None:
                    journal.finished(outcome.learner)
                if progress is not None:
                    progress.update(outcome.learner.ok)
        finally:
            if hasattr(outcomes, "close"):  # stop workers now, not when the generator is collected
                outcomes.close()
            if progress is not None:
                progress.close()
                run.active.plugin_manager.unregister(progress)
        for job in jobs:  # an executor that skipped a job must not make it vanish silently
            if job.learner_id not in results:
                results[job.learner_id] = TrainedLearner(job.spec, "failed",
                                                         error="the executor returned no result for this learner")
        results.update(done)
        results = {spec.learner_id: results[spec.learner_id] for spec in specs}
        if journal is not None:
            journal.close("trained")
        run.hook.modalbag_run_end(run=run, learners=results)
        failed = sum(not r.ok for r in results.values())
        log.info("run.end", run=run.run_id, trained=len(results) - failed, failed=failed)
        return results

    @staticmethod
    def _received(run: Run, outcome: JobResult, bag_of: Mapping[str, int], results: dict[str, TrainedLearner],
                  total: int) -> None:
        learner = outcome.learner
        bag = bag_of.get(learner.learner_id)
        if outcome.events:  # logged in a worker: emit them here, where the application listens
            replay_events(outcome.events, bag=bag, worker=outcome.worker)
        if outcome.lost is not None:
            log.warning("learner.failed", run=run.run_id, learner=learner.learner_id, bag=bag,
                        worker=outcome.worker, error=learner.error)
            run.hook.modalbag_fit_error(run=run, learner_id=learner.learner_id, error=WorkerLostError(outcome.lost))
        results[learner.learner_id] = learner
        log.info("bag.done", run=run.run_id, learner=learner.learner_id, bag=bag, status=learner.status,
                 done=len(results), total=total, worker=outcome.worker,
                 seconds=round(outcome.finished - outcome.started, 3) if outcome.started else None)


class _InThisProcess:
    """Runs jobs here when a run has no executor (an `ActiveSet` built by hand)."""

    def execute(self, work: TrainingWork) -> Any:
        for job in work.jobs:
            yield work.fit_here(job)


__all__ = ["BagData", "Engine", "Run", "TaskInfo", "complete_rows", "fit_learner", "split_validation"]
