"""``jsonl``: the run's own record, ``<run_dir>/records.jsonl`` (active whenever ``run_dir`` is set).

The durable record TensorBoard and W&B mirror: run start (with the config), every epoch of every
learner, every ``log_interval`` steps, each learner's end or failure, and the run's end. Lines are
appended by `modalbag.kernel.runlog.append_line` (one ``O_APPEND`` write per line, nothing buffered,
``fsync`` at each epoch's end), so worker processes append to the same file safely and a crash loses
at most the line being written. A resumed run appends to the same file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState
from modalbag.kernel.records import EpochRecord, TrainedLearner
from modalbag.kernel.runlog import RECORDS_FILE, append_line, end_torn_line, epoch_entry


@attrs.frozen(kw_only=True)
class JsonlOptions:
    pass


class JsonlSink:
    """Appends one line per event to ``<run_dir>/records.jsonl``; holds nothing but the path."""

    def __init__(self, config: Any, options: JsonlOptions | None = None):
        self.config = config
        self.path: Path | None = Path(config.run_dir) / RECORDS_FILE if config.run_dir else None

    @hookimpl
    def modalbag_validate_config(self, config: Any) -> list[str] | None:
        if config.run_dir is None:
            return ["the jsonl sink writes <run_dir>/records.jsonl, but run_dir is None: set run_dir"]
        return None

    def _append(self, record: Mapping[str, Any], *, sync: bool = False) -> None:
        assert self.path is not None
        append_line(self.path, record, sync=sync)

    @hookimpl
    def modalbag_run_start(self, run: Run) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        end_torn_line(self.path)  # a resumed run after a crash mid-line: keep its lines apart
        from modalbag import __version__

        task = run.task
        self._append({"type": "run_start", "run_id": run.run_id, "time": time.time(), "modalbag_version": __version__,
                      "task": {"task_type": task.task_type, "n_outputs": task.n_outputs,
                               "classes": None if task.classes is None else task.classes.tolist()},
                      "plugins": run.active.names(), "config": run.config.to_dict()}, sync=True)

    @hookimpl
    def modalbag_epoch_end(self, run: Run, fit: FitState, record: EpochRecord) -> None:
        spec = fit.spec
        self._append(epoch_entry(run.run_id, spec.learner_id, spec.bag_id, spec.trainer, record), sync=True)

    @hookimpl
    def modalbag_log_step(self, run: Run, fit: FitState, step: int, values: Mapping[str, float]) -> None:
        self._append({"type": "step", "run_id": run.run_id, "learner_id": fit.spec.learner_id, "epoch": fit.epoch,
                      "step": step, "time": time.time(), **values})

    @hookimpl
    def modalbag_fit_end(self, run: Run, fit: FitState) -> None:
        self._append({"type": "learner_end", "run_id": run.run_id, "learner_id": fit.spec.learner_id,
                      "bag_id": fit.spec.bag_id, "trainer": fit.spec.trainer, "modalities": list(fit.spec.modalities),
                      "epochs": len(fit.records), "notes": list(fit.notes), "time": time.time()}, sync=True)

    @hookimpl
    def modalbag_fit_error(self, run: Run, learner_id: str, error: BaseException) -> None:
        self._append({"type": "learner_failed", "run_id": run.run_id, "learner_id": learner_id,
                      "error": f"{type(error).__name__}: {error}", "time": time.time()}, sync=True)

    @hookimpl
    def modalbag_run_end(self, run: Run, learners: Mapping[str, TrainedLearner]) -> None:
        summary = {lid: {"status": r.status, "training_time": r.training_time, "epochs": len(r.records),
                         "validation": dict(r.validation), "error": r.error} for lid, r in learners.items()}
        self._append({"type": "run_end", "run_id": run.run_id, "time": time.time(), "learners": summary}, sync=True)


@hookimpl
def modalbag_register_sinks(register: Register) -> None:
    register("jsonl", JsonlSink, options=JsonlOptions,
             summary="The run's own record: one JSON line per event in <run_dir>/records.jsonl")
