"""``checkpoint``: write each learner's best weights to disk, atomically, as it trains.

A checkpoint is written whenever the monitored loss improves, to a temporary file that then
replaces ``<checkpoint_dir>/<learner_id>.pt``, so a crash never leaves a half-written file. With no
``checkpoint_dir`` a new temporary directory is made per run (its path is in each learner's record).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.fit import FitState, StashKey
from modalbag.records import EpochRecord

_BEST = StashKey[float]()


@attrs.frozen(kw_only=True)
class CheckpointOptions:
    pass


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a sibling temporary file, then rename over ``path``."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Checkpoint:
    def __init__(self, config: Any, options: CheckpointOptions):
        self.config = config
        self.directory: Path | None = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    @hookimpl
    def modalbag_run_start(self, run: Any) -> None:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix=f"modalbag-{run.run_id}-"))

    @hookimpl
    def modalbag_epoch_end(self, run: Any, fit: FitState, record: EpochRecord) -> None:
        if fit.model is None:
            return
        value = record.monitored()
        if value < fit.stash.get(_BEST, float("inf")):
            fit.stash[_BEST] = value
            assert self.directory is not None
            path = self.directory / f"{fit.spec.learner_id}.pt"
            atomic_torch_save({"learner_id": fit.spec.learner_id, "epoch": record.epoch, "monitored": value,
                               "modalities": list(fit.spec.modalities), "state_dict": fit.model.state_dict(),
                               "config": self.config.to_dict()}, path)
            fit.checkpoint = str(path)


@hookimpl
def modalbag_register_validators(register: Any) -> None:
    register("checkpoint", Checkpoint, options=CheckpointOptions,
             summary="Write each learner's best weights atomically as it improves")
