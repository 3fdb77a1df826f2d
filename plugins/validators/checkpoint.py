"""``checkpoint``: write each neural learner's best weights to disk, atomically, as it trains.

Whenever the monitored loss improves, the weights go to ``<root>/<learner_id>/best_<epoch>.pt``
(written to a temporary file, fsynced, renamed), the folder's ``manifest.json`` is updated with the
file's SHA-256 and the previous best file is removed (see `modalbag.training.checkpoints` for the layout).
The root is ``checkpoint_dir``, else ``<run_dir>/checkpoints``, else a new temporary directory per
run, removed when the run ends (or fails, or the process exits): nothing asked to keep it, and one
per run filled the temporary folder. The path is in each learner's record (``TrainedLearner.checkpoint``;
None once a temporary directory is removed). Read a file back with
`modalbag.io.artifacts.safe_torch_load`. The best value seen so far is part of the learner's training
state, so a resumed fit keeps comparing against it.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState, StashKey
from modalbag.kernel.records import EpochRecord, TrainedLearner
from modalbag.logs import get_logger
from modalbag.training.checkpoints import LearnerCheckpoints, checkpoint_root

log = get_logger("modalbag.plugins.validators.checkpoint")

_BEST = StashKey[float]()
_STATE_KEY = "validator.checkpoint"


@attrs.frozen(kw_only=True)
class CheckpointOptions:
    pass


class Checkpoint:
    def __init__(self, config: Any, options: CheckpointOptions):
        self.config = config
        self.directory: Path | None = checkpoint_root(config)
        self.temporary = False  # a directory this run made for itself, removed when it ends

    @hookimpl
    def modalbag_run_start(self, run: Run) -> None:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix=f"modalbag-{run.run_id}-"))
            self.temporary = True
            # a run that fails never reaches run_end: the directory goes when this instance (or the process) does
            weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)

    @hookimpl(trylast=True)  # after every other run_end hook, which may still read the files
    def modalbag_run_end(self, run: Run, learners: Mapping[str, TrainedLearner]) -> None:
        if not self.temporary or self.directory is None:
            return
        shutil.rmtree(self.directory, ignore_errors=True)
        for learner in learners.values():
            if learner.checkpoint and Path(learner.checkpoint).is_relative_to(self.directory):
                learner.checkpoint = None
        log.debug("checkpoint.temporary_removed", run=run.run_id, directory=str(self.directory))

    @hookimpl
    def modalbag_epoch_end(self, run: Run, fit: FitState, record: EpochRecord) -> None:
        ddp = getattr(run, "distributed", None)
        if fit.model is None or (ddp is not None and not ddp.is_main) or record.validation_skipped:
            return
        value = record.monitored()
        if value < fit.stash.get(_BEST, float("inf")):
            fit.stash[_BEST] = value
            assert self.directory is not None
            store = LearnerCheckpoints(self.directory / fit.spec.learner_id, fit.spec.learner_id, run.run_id)
            path = store.add("best", record.epoch, {
                "format": "modalbag.best_weights", "learner_id": fit.spec.learner_id, "epoch": record.epoch,
                "monitored": value, "modalities": list(fit.spec.modalities), "state_dict": fit.model.state_dict(),
                "config": self.config.to_dict()})
            fit.checkpoint = str(path)

    @hookimpl
    def modalbag_checkpoint_state(self, run: Run, fit: FitState) -> dict[str, Any] | None:
        if _BEST not in fit.stash:
            return None
        return {_STATE_KEY: {"best": fit.stash[_BEST], "path": fit.checkpoint}}

    @hookimpl
    def modalbag_restore_state(self, run: Run, fit: FitState, state: Mapping[str, Any]) -> None:
        mine = state.get(_STATE_KEY)
        if mine:
            fit.stash[_BEST] = float(mine["best"])
            fit.checkpoint = mine.get("path")


@hookimpl
def modalbag_register_validators(register: Register) -> None:
    register("checkpoint", Checkpoint, options=CheckpointOptions,
             summary="Write each learner's best weights atomically as it improves")
