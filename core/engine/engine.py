"""The engine: one run trains every learner of an ensemble with the run's active plugin set.

A learner that raises (or whose loss diverges) is recorded as failed with its error; the others
still train and are kept (`modalbag.execution.fitting`). The run's executor decides where each learner
fits; the run directory records each one as it ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.engine.assembly import assemble
from modalbag.engine.progress import ProgressBar
from modalbag.execution import (
    JobResult,
    LearnerJob,
    TrainingWork,
    WorkerLostError,
    concurrent_learners,
    estimate_footprint,
    memory_budget,
    n_jobs_note,
    replay_events,
    requested_learners,
    threads_for,
)
from modalbag.kernel.components import build_options
from modalbag.kernel.kinds import KIND
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog, default_catalog
from modalbag.kernel.run import Run, TaskInfo
from modalbag.logs import get_logger
from modalbag.store.lock import run_directory_lock
from modalbag.store.runrecord import Journal

log = get_logger("modalbag.engine")


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
        A run directory is locked while the run writes there (`modalbag.store.lock`).
        """
        if not run.config.run_dir:
            return self._train(run, specs, bags, dataset, targets, resume, adopted)
        with run_directory_lock(run.config.run_dir):
            return self._train(run, specs, bags, dataset, targets, resume, adopted)

    def _train(self, run: Run, specs: Sequence[LearnerSpec], bags: Mapping[int, Bag], dataset: MultimodalDataset,
               targets: np.ndarray, resume: Any, adopted: Mapping[str, TrainedLearner] | None
               ) -> dict[str, TrainedLearner]:
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
        executor = run.executor if run.executor is not None else self._fallback_executor(run)
        capped = n_jobs_note(run.config)
        if capped is not None and jobs:
            if capped not in run.notes:
                run.notes.append(capped)
            log.warning("run.n_jobs_capped", run=run.run_id, n_jobs=requested_learners(run.config),
                        used=concurrent_learners(run.config))
        log.info("run.start", run=run.run_id, learners=len(specs), already_fitted=len(done), plugins=run.active.names(),
                 executor=type(executor).__name__, threads_per_learner=work.threads)
        bag_of = {job.learner_id: job.bag.id for job in jobs}
        results: dict[str, TrainedLearner] = {}
        progress = ProgressBar(len(jobs)) if ProgressBar.wanted(run.config) else None
        if progress is not None:  # epochs of learners trained in this process (workers keep theirs)
            _register_observer(run.active.plugin_manager, progress, "progress")
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
        run.hook.modalbag_run_end(run=run, learners=results)
        hook_failures = [f.to_dict() for f in getattr(run.active.plugin_manager, "failures", ())]
        if journal is not None:
            journal.close("trained", plugin_failures=hook_failures)
        failed = sum(not r.ok for r in results.values())
        log.info("run.end", run=run.run_id, trained=len(results) - failed, failed=failed,
                 plugin_failures=len(hook_failures))
        return results

    def _fallback_executor(self, run: Run) -> Any:
        """The executor kind's declared fallback (``serial``), for a run whose active set names none
        (an `ActiveSet` built by hand)."""
        component = self.catalog.get("executor", KIND["executor"].fallback)
        return component.factory(run.config, build_options(component, run.config))

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


def _register_observer(pm: Any, plugin: object, name: str) -> None:
    """Register ``plugin`` so that its failures are isolated (a hand-built run's plain manager: as is)."""
    if hasattr(pm, "register_observer"):
        pm.register_observer(plugin, name=name)
    else:
        pm.register(plugin, name=name)


__all__ = ["Engine"]
