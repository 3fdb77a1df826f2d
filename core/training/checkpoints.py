"""A neural learner's full training state on disk, so an interrupted fit continues where it stopped.

Where: ``checkpoint_dir`` if given, else ``<run_dir>/checkpoints``, one folder per learner::

    <root>/<learner_id>/manifest.json     which files are current, with their SHA-256
    <root>/<learner_id>/state_0005.pt     full training state after epoch 5
    <root>/<learner_id>/best_0004.pt      the best epoch's weights (the ``checkpoint`` validator)

A state holds the model's weights (objective modules included: they live in ``model.aux``), the
optimizer's and the schedule's state, every plugin's per-fit state (`modalbag_checkpoint_state`:
early stopping's best weights, the loss scaler, ...), the data-order generator and the global torch
and numpy RNG states, the epoch, step, records, notes and stop flag. Restoring all of it after
rebuilding the learner the same way makes the resumed epochs the very epochs an uninterrupted fit
would have run (with the same thread count).

Each save writes a new file, then the manifest naming it, then removes the older one, so a crash
at any point leaves a manifest that names an intact file. A state belongs to a run id: a fresh run
never resumes another run's state, a resumed run (same run id) does.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modalbag.errors import ArtifactError
from modalbag.io.artifacts import (
    atomic_torch_save,
    atomic_write_json,
    check_format,
    read_json,
    safe_torch_load,
    sha256_file,
)
from modalbag.kernel.records import EpochRecord
from modalbag.logs import get_logger

log = get_logger("modalbag.checkpoints")

FORMAT = "modalbag.checkpoints"
STATE_FORMAT = "modalbag.training_state"
VERSION = 1
MANIFEST = "manifest.json"


def checkpoint_root(config: Any) -> Path | None:
    """The folder that holds one checkpoint folder per learner, or None when the config names none."""
    if config.checkpoint_dir:
        return Path(config.checkpoint_dir)
    if config.run_dir:
        return Path(config.run_dir) / "checkpoints"
    return None


def _is_main(run: Any) -> bool:
    ddp = getattr(run, "distributed", None)
    return ddp is None or ddp.is_main


class BackgroundWriter:
    """Writes checkpoint files on one background thread, in the order they were queued.

    Serialising a training state and fsyncing it costs milliseconds of disk wait per epoch that
    training need not spend: `LearnerCheckpoints.add` copies the tensors (cheap) and queues the
    write. Order is kept (one thread), so every manifest still names an intact, complete file; a
    crash loses at most the writes still queued, never a file already named. `flush` waits for
    every queued write and raises the first error, so a failing disk still fails the learner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future[Any]] = []

    def submit(self, fn: Any, *args: Any) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="modalbag-checkpoint")
            self._pending.append(self._pool.submit(fn, *args))

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]  # waits for each, in order
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first


#: The process's checkpoint writer (worker processes each get their own).
WRITER = BackgroundWriter()


def flush() -> None:
    """Wait until every queued checkpoint file of this process is on disk (raises a write's error)."""
    WRITER.flush()


def _snapshot(value: Any) -> Any:
    """``value`` with every tensor cloned: training goes on mutating the originals in place."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    return value


class LearnerCheckpoints:
    """One learner's checkpoint folder: writes files and keeps its manifest current."""

    def __init__(self, directory: Path, learner_id: str, run_id: str):
        self.directory, self.learner_id, self.run_id = Path(directory), learner_id, run_id

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def manifest(self) -> dict[str, Any] | None:
        """This run's manifest, or None (no manifest, or one another run wrote)."""
        if not self.manifest_path.is_file():
            return None
        data = dict(check_format(self.manifest_path, read_json(self.manifest_path, what="checkpoint manifest"),
                                 FORMAT, VERSION))
        return data if data.get("run_id") == self.run_id else None

    def add(self, role: str, epoch: int, payload: Mapping[str, Any], *, keep_previous: bool = False) -> Path:
        """Queue ``payload`` as the current ``role`` ("state" or "best"); returns the file's path.

        The tensors are copied now and written by a background thread (see `BackgroundWriter`), so
        training does not wait for serialisation and fsync; `flush` waits for the writes.
        """
        snapshot = _snapshot(payload)
        WRITER.submit(self._write, role, epoch, snapshot, keep_previous)
        return self.directory / f"{role}_{epoch:04d}.pt"

    def _write(self, role: str, epoch: int, payload: Mapping[str, Any], keep_previous: bool) -> Path:
        """Write ``payload`` as the current ``role``, then the manifest, then drop the older file."""
        name = f"{role}_{epoch:04d}.pt"
        path = self.directory / name
        atomic_torch_save(dict(payload), path)
        manifest = self.manifest() or {"format": FORMAT, "version": VERSION, "learner_id": self.learner_id,
                                       "run_id": self.run_id, "current": {}, "files": {}}
        previous = manifest["current"].get(role)
        manifest["current"][role] = name
        manifest["files"][name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "role": role,
                                   "epoch": epoch}
        stale = previous if previous not in (None, name) and not keep_previous else None
        if stale:
            manifest["files"].pop(stale, None)
        atomic_write_json(self.manifest_path, manifest)
        if stale:
            (self.directory / stale).unlink(missing_ok=True)
        return path

    def load(self, role: str) -> dict[str, Any] | None:
        """The current ``role`` file of this run, checked against the manifest, or None."""
        WRITER.flush()
        manifest = self.manifest()
        if manifest is None or role not in manifest.get("current", {}):
            return None
        name = manifest["current"][role]
        path = self.directory / name
        entry = manifest["files"].get(name, {})
        if not path.is_file():
            raise ArtifactError(path, f"missing, though {MANIFEST} names it as the current {role} checkpoint")
        if sha256_file(path) != entry.get("sha256"):
            raise ArtifactError(path, f"its SHA-256 differs from the one in {MANIFEST}: the checkpoint was "
                                      f"modified or damaged; delete the folder to retrain this learner")
        data = safe_torch_load(path)
        if not isinstance(data, dict) or (role == "state" and data.get("format") != STATE_FORMAT):
            raise ArtifactError(path, f"is not a {STATE_FORMAT!r} checkpoint")
        return data


def for_fit(run: Any, learner_id: str) -> LearnerCheckpoints | None:
    root = checkpoint_root(run.config)
    return None if root is None else LearnerCheckpoints(root / learner_id, learner_id, run.run_id)


# -- plain state of schedules and other small objects ------------------------------------------

_KIND = "__modalbag_state__"


def capture(obj: Any) -> Any:
    """A ``weights_only``-loadable snapshot of ``obj``'s state, or None when it has none we can take.

    Objects with ``state_dict()`` give that; other objects their attributes, recursively. Optimizers,
    callables and values of other types are skipped (the optimizer is saved on its own; the rest is
    rebuilt the same way when the learner is rebuilt).
    """
    snap = _capture(obj)
    return None if snap is _SKIP else snap


def _capture(obj: Any, depth: int = 0) -> Any:
    import torch

    if depth > 8:  # a reference cycle or a deep object graph: not a schedule's plain state
        return _SKIP
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, (torch.optim.Optimizer, types.ModuleType, types.FunctionType, types.MethodType,
                        types.BuiltinFunctionType, functools.partial)):
        return _SKIP
    if isinstance(obj, (list, tuple)):
        items = [_capture(v, depth + 1) for v in obj]
        return _SKIP if any(v is _SKIP for v in items) else tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            return _SKIP
        items = {k: _capture(v, depth + 1) for k, v in obj.items()}
        return _SKIP if any(v is _SKIP for v in items.values()) else items
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, type):
        return {_KIND: "state_dict", "value": obj.state_dict()}
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        out = {}
        for key, value in vars(obj).items():
            snap = _capture(value, depth + 1)
            if snap is not _SKIP:
                out[key] = snap
        return {_KIND: "object", "value": out}
    return _SKIP


class _Skip:
    pass


_SKIP = _Skip()


def restore(obj: Any, state: Any) -> None:
    """Put a `capture` snapshot back into an object built the same way."""
    if not isinstance(state, dict) or _KIND not in state:
        return
    if state[_KIND] == "state_dict":
        obj.load_state_dict(state["value"])
        return
    for key, value in state["value"].items():
        current = getattr(obj, key, None)
        if isinstance(value, dict) and _KIND in value and current is not None:
            restore(current, value)
        else:
            setattr(obj, key, value)


# -- the trainer's two calls -------------------------------------------------------------------


def _numpy_rng() -> dict[str, Any]:
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_rng(state: Mapping[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def save_training_state(run: Any, fit: Any, *, schedule: Any, generator: Any) -> Path | None:
    """Called by a neural trainer at the end of every epoch; writes when this epoch is due.

    Due: every ``checkpoint_interval`` epochs, on the last epoch and when the fit stops early. Needs
    ``save_checkpoints`` and a checkpoint root; on DDP ranks other than 0 nothing is written.
    """
    import torch

    config = run.config
    epoch = fit.epoch
    due = epoch % config.checkpoint_interval == 0 or epoch >= config.epochs or fit.control.should_stop
    if not (config.save_checkpoints and due and _is_main(run)):
        return None
    store = for_fit(run, fit.spec.learner_id)
    if store is None:
        return None
    plugins: dict[str, Any] = {}
    for found in run.hook.modalbag_checkpoint_state(run=run, fit=fit):
        plugins.update(found or {})
    payload = {
        "format": STATE_FORMAT, "version": VERSION, "run_id": run.run_id, "learner_id": fit.spec.learner_id,
        "epoch": epoch, "step": fit.step, "model": fit.model.state_dict(),
        "optimizer": fit.optimizer.state_dict(), "schedule": capture(schedule), "plugins": plugins,
        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": _numpy_rng(), "records": [r.to_dict() for r in fit.records], "notes": list(fit.notes),
        "stopped": fit.control.should_stop, "stop_reason": fit.control.stop_reason,
    }
    path = store.add("state", epoch, payload, keep_previous=not config.keep_best_only)
    log.debug("checkpoint.saved", learner=fit.spec.learner_id, epoch=epoch, path=str(path))
    return path


def restore_training_state(run: Any, fit: Any, *, schedule: Any, generator: Any) -> int:
    """Called by a neural trainer once its model, optimizer, schedule and generator are built.

    Loads this run's latest state for the learner, if any, and returns the first epoch still to
    run (1 when there is nothing to resume; past the last epoch when the fit had already ended).
    """
    import torch

    store = for_fit(run, fit.spec.learner_id)
    if store is None:
        return 1
    state = store.load("state")
    if state is None:
        return 1
    path = store.directory
    try:
        fit.model.load_state_dict(state["model"])
        fit.optimizer.load_state_dict(state["optimizer"])
        if state.get("schedule") is not None:
            restore(schedule, state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        _set_numpy_rng(state["numpy_rng"])
        fit.records[:] = [EpochRecord.from_dict(r) for r in state["records"]]
        fit.notes[:] = list(state["notes"])
        fit.epoch, fit.step = int(state["epoch"]), int(state["step"])
        if state.get("stopped"):
            fit.control.stop(state.get("stop_reason") or "stopped before the interruption")
        run.hook.modalbag_restore_state(run=run, fit=fit, state=state.get("plugins") or {})
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ArtifactError(path, f"the training state does not fit this learner ({type(exc).__name__}: {exc}); "
                                  f"delete the folder to retrain it from the start") from exc
    fit.notes.append(f"resumed from the checkpoint of epoch {fit.epoch}")
    log.info("checkpoint.resumed", learner=fit.spec.learner_id, epoch=fit.epoch)
    return int(run.config.epochs) + 1 if fit.control.should_stop else fit.epoch + 1


__all__ = [
    "BackgroundWriter",
    "LearnerCheckpoints",
    "capture",
    "checkpoint_root",
    "flush",
    "restore",
    "restore_training_state",
    "save_training_state",
]
