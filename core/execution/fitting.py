"""Fitting one learner on one bag: the validation split, the fit with its hooks, the record.

A learner that raises is recorded as failed with its error, never raised: the others go on. Every
executor calls `fit_learner`, here or in a worker.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modalbag.data.bags import Bag, split_validation
from modalbag.data.dataset import MultimodalDataset, complete_rows
from modalbag.data.domain import target_domain
from modalbag.kernel.components import build_options
from modalbag.kernel.fit import FitState, training_seed
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog
from modalbag.kernel.run import BagData, Run, TaskInfo
from modalbag.logs import get_logger
from modalbag.training.checkpoints import flush as flush_checkpoints
from modalbag.training.metrics import task_metrics

log = get_logger("modalbag.engine")


def fit_learner(spec: LearnerSpec, bag: Bag, dataset: MultimodalDataset, targets: np.ndarray,
                run: Run, catalog: Catalog, learner: Any = None, announce: bool = True) -> TrainedLearner:
    """Fit one learner; never raises for the learner's own failures (the record says failed).

    ``learner``: an unfitted learner object to fit (`EnsembleTrainingPipeline` passes the ones
    its caller built); by default the spec's trainer plugin builds one. ``announce=False`` logs
    nothing (the fits that measure a candidate are not learners of the run).
    """
    started = time.perf_counter()
    fit = FitState(spec=spec, bag=bag, seed=training_seed(run.config.random_state, bag.seed),
                   gradient_clipping=run.config.gradient_clipping)
    bound = log.bind(run=run.run_id, learner=spec.learner_id, bag=bag.id, trainer=spec.trainer)
    try:
        if learner is None:
            component = catalog.get("trainer", spec.trainer)
            learner = component.factory(spec, run.config, build_options(component, run.config))
        train_rows, val_rows = split_validation(bag, run.config.validation_split, bag.seed,
                                                run.config.validation_strategy, targets)
        target = target_domain(dataset) if run.config.domain_adaptation else None
        data = BagData(
            arrays={m: dataset.arrays[m] for m in spec.modalities},
            masks={m: dataset.masks[m] for m in spec.modalities},
            specs={m: dataset.specs[m] for m in spec.modalities},
            targets=targets, train_rows=train_rows, val_rows=val_rows,
            domain_arrays=None if target is None else {m: target.arrays[m] for m in spec.modalities},
            domain_masks=None if target is None else {m: target.masks[m] for m in spec.modalities},
        )
        run.hook.modalbag_fit_start(run=run, fit=fit)
        learner.fit(data, run, fit)
        if run.config.domain_adaptation and not getattr(learner, "adapts_domains", False):
            fit.notes.append(f"domain_adaptation={run.config.domain_adaptation!r} does not apply to this "
                             f"{spec.trainer} learner: it has no learned representation to align; it trained "
                             f"on the source rows alone")
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
    targets = data.targets[rows]
    if task.task_type == "classification" and targets.ndim == 2:  # a distilled student: its teacher's classes
        targets = targets.argmax(axis=1)
    return task_metrics(task.task_type, targets, output)


__all__ = ["fit_learner"]
