"""``model.configure_training_strategy(learners)``: a recommended run, from timing real steps.

Each learner is trained for one short epoch on a slice of its own bag (``probe_batches`` batches)
with the configuration it would get, in this process. From the probe:

- time: seconds per training sample, times the bag's training rows and the epochs, summed over
  learners and divided by the learners that can train at once;
- memory: the growth of this process's resident memory during the probe (sampled every 10 ms),
  plus the bytes of the rest of the bag's rows, which the probe did not load (exact, from shapes).

Nothing is guessed: a learner whose probe fails is reported with its error and left out of the
totals. The recommendation runs learners side by side (``n_jobs``) when there is more than one
core and the measured memory of that many learners fits in the memory available now.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import encode_training_labels
from modalbag.engine.engine import Engine
from modalbag.errors import NotFittedError
from modalbag.execution import available_cores, available_memory, unguarded_main_script
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.run import TaskInfo
from modalbag.training.profiling import current_rss


class _PeakRss:
    def __init__(self) -> None:
        self.start = current_rss() or 0
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss() or 0)
            self._stop.wait(0.01)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss() or 0)


def _row_bytes(spec: LearnerSpec, specs: Mapping[str, Any]) -> int:
    return sum(4 * int(np.prod(specs[m].shape)) for m in spec.modalities)


def configure_training_strategy(model: Any, learners: Mapping[str, Any] | None = None, *, epochs: int | None = None,
                                probe_batches: int = 4, **config: Any) -> dict[str, Any]:
    """Recommend how to train ``learners`` (the output of ``select_base_learners``) on this machine.

    Returns ``name``, ``estimated_time`` (seconds), ``memory_mb``, ``config`` (options for
    ``train_ensemble``), ``per_learner`` measurements and ``notes``. ``config`` overrides the defaults
    the probes train with; ``epochs`` the number the estimate assumes. Learners run side by side only
    where worker processes can start: not from a main script without a ``__main__`` guard.
    """
    if model.dataset.labels is None:
        raise NotFittedError("configure_training_strategy times real training steps: the model needs labels")
    if model.learner_specs is None:
        model.select_base_learners(instantiate=False)
    specs = {s.learner_id: s for s in model.learner_specs}
    chosen = [specs[lid] for lid in (learners or specs) if lid in specs]
    base = TrainingConfig.from_dict({**config, "task_type": model.task_type}, catalog=model.catalog)
    epochs = epochs or base.epochs
    probe = base.replace(epochs=1, save_checkpoints=False, early_stopping_patience=0, run_dir=None,
                         validation_split=0.0, n_jobs=1, executor="serial", threads_per_learner=1)
    targets, classes = encode_training_labels(model.dataset.labels, model.task_type, base.num_classes,
                                              model.dataset.n_samples)
    task = TaskInfo.from_targets(model.task_type, targets, classes)
    engine = Engine(model.catalog, model.plugins)
    run = engine.prepare(probe, task)
    bags = {b.id: b for b in model.bags}
    per_learner: dict[str, dict[str, Any]] = {}
    for spec in chosen:
        bag = bags[spec.bag_id]
        n_probe = min(len(bag.rows), probe_batches * base.batch_size)
        sub = Bag(bag.id, bag.modalities, bag.rows[:n_probe], bag.oob_rows, bag.seed)
        with _PeakRss() as rss:
            started = time.perf_counter()
            result = fit_learner(spec, sub, model.dataset, targets, run, engine.catalog)
            seconds = time.perf_counter() - started
        if not result.ok:
            per_learner[spec.learner_id] = {"trainer": spec.trainer, "error": result.error}
            continue
        train_rows = len(bag.rows) * (1 - base.validation_split)
        rest = max(0, len(bag.rows) - n_probe) * _row_bytes(spec, model.dataset.specs)
        per_epoch = seconds / n_probe * train_rows
        neural = spec.trainer == "neural"
        per_learner[spec.learner_id] = {
            "trainer": spec.trainer, "probe_rows": n_probe, "probe_seconds": seconds,
            "seconds_per_sample": seconds / n_probe,
            "estimated_time": per_epoch * (epochs if neural else 1),
            "memory_mb": (rss.peak - rss.start + rest) / 2**20,
        }
    measured = [m for m in per_learner.values() if "error" not in m]
    cores = available_cores()
    free = available_memory()
    peak_one = max((m["memory_mb"] for m in measured), default=0.0)
    fit_jobs = cores if free is None or peak_one == 0 else max(1, min(cores, int(free / 2**20 * 0.8 // peak_one)))
    n_jobs = max(1, min(fit_jobs, len(measured)))
    notes = []
    script = unguarded_main_script()
    if n_jobs > 1 and script is not None:  # its workers would re-run the script's training and fail
        notes.append(f"n_jobs=1: {script} has no `if __name__ == \"__main__\":` guard, and each worker process "
                     f"imports the main script; put the training under that guard to train {n_jobs} learners at once")
        n_jobs = 1
    total = sum(m["estimated_time"] for m in measured)
    if n_jobs > 1:
        name = "parallel_bags"
        recommended = {"n_jobs": n_jobs, "threads_per_learner": max(1, cores // n_jobs)}
        estimated = _makespan([m["estimated_time"] for m in measured], n_jobs)
    else:
        name = "sequential"
        recommended = {"n_jobs": 1}
        estimated = total
    return {
        "name": name,
        "estimated_time": estimated,
        "memory_mb": sum(sorted((m["memory_mb"] for m in measured), reverse=True)[:n_jobs]),
        "config": {**config, "epochs": epochs, **recommended},
        "per_learner": per_learner,
        "basis": f"one probe epoch of up to {probe_batches} batches per learner on this machine "
                 f"({cores} cores, {'unknown' if free is None else round(free / 2**20)} MB available)",
        "notes": notes,
    }


def _makespan(times: list[float], workers: int) -> float:
    """Finish time of ``times`` on ``workers`` with longest-first list scheduling."""
    loads = [0.0] * workers
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads) if loads else 0.0


__all__ = ["configure_training_strategy"]
