"""The run directory's own record, so that a run that stopped (crash, SIGKILL, reboot) can resume.

With ``run_dir`` set, a run writes::

    <run_dir>/run.json            what the run is and how far it got (below)
    <run_dir>/bags.npz            every bag's rows and out-of-bag rows
    <run_dir>/learners/<id>/      each finished learner (`modalbag.store.learners`), written as it ends
    <run_dir>/checkpoints/<id>/   neural training states (`modalbag.training.checkpoints`)
    <run_dir>/export/             the exported model, once the run is complete

``run.json`` holds the format version, the run id, the status ("running", "complete"), the full
configuration, the task, the seed, a fingerprint of the data, the bags and learner specs, and one
entry per learner: "pending", "trained" or "failed" (with its error). Every write is atomic. A run
the command line started also records how (``launch``: the config file, its ``--set`` overrides and
the working directory; see `recording_launch`), so that ``modalbag report`` on an unfinished run can
print the ``modalbag train ... --resume`` command that continues it.

``train_ensemble(resume=True)`` reads it back: the stored configuration, bags and specs are used
again, trained learners are loaded instead of retrained, pending and failed ones train again, and
an interrupted neural learner continues from its last training-state checkpoint (same run id).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.errors import ArtifactError, ConfigError, DataError, StorageError
from modalbag.io.artifacts import (
    atomic_save_npz,
    atomic_write_json,
    check_format,
    clean_temporaries,
    inside,
    load_npz,
    move_into_place,
    read_json,
    sha256_file,
    to_json,
)
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.logs import get_logger
from modalbag.store.learners import (
    load_learner,
    save_learner,
    spec_from_dict,
    spec_to_dict,
)
from modalbag.training.checkpoints import flush as flush_checkpoints
from modalbag.version import __version__

log = get_logger("modalbag.runrecord")

FORMAT = "modalbag.run"
VERSION = 1
RUN_FILE = "run.json"
BAGS_FILE = "bags.npz"
LEARNERS_DIR = "learners"
EXPORT_DIR = "export"

#: Options that say how a run executes, not what it computes: a resume may change them.
OPERATIONAL_KEYS = frozenset({"n_jobs", "executor", "threads_per_learner", "memory_limit_mb", "progress_bar",
                              "verbose", "sinks", "distributed_timeout"})


_LAUNCH: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("modalbag_run_launch", default=None)


@contextlib.contextmanager
def recording_launch(launch: Mapping[str, Any]) -> Iterator[None]:
    """Runs that start or resume within record ``launch`` in their ``run.json`` (key ``"launch"``).

    The launcher says there how to start the run again: `modalbag train` gives ``{"command": "modalbag
    train", "config": <path as given>, "overrides": [<KEY=VALUE>, ...], "cwd": <working directory>}``.
    Runs started from the Python API record none.
    """
    token = _LAUNCH.set(to_json(dict(launch)))
    try:
        yield
    finally:
        _LAUNCH.reset(token)


def default_run_dir(name: str, root: Path | None = None) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` under ``root`` (the working directory), never an existing one: where
    a run writes when it must write and was given no ``run_dir`` (TensorBoard's ``SummaryWriter`` also
    defaults to ``runs/`` there)."""
    base = (root or Path.cwd()) / "runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = base / f"{name}-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{stamp}-{n}"
    return candidate


def data_fingerprint(dataset: MultimodalDataset, targets: np.ndarray) -> str:
    """SHA-256 over every modality's values and presence mask and the encoded targets."""
    digest = hashlib.sha256()
    for name in sorted(dataset.arrays):
        array = np.ascontiguousarray(dataset.arrays[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        for start in range(0, len(array), 65536):  # memory-mapped arrays stream through
            digest.update(np.ascontiguousarray(array[start:start + 65536]).tobytes())
        digest.update(np.ascontiguousarray(dataset.masks[name]).tobytes())
    digest.update(np.ascontiguousarray(targets).tobytes())
    return digest.hexdigest()


def _bag_entry(bag: Bag) -> dict[str, Any]:
    return {"id": bag.id, "modalities": list(bag.modalities), "seed": int(bag.seed), "n_rows": int(len(bag.rows)),
            "n_oob_rows": int(len(bag.oob_rows)), "fold": bag.fold}


def save_bags(bags: Sequence[Bag], path: Path) -> None:
    arrays = {}
    for bag in bags:
        arrays[f"rows_{bag.id}"] = np.asarray(bag.rows, dtype=np.int64)
        arrays[f"oob_{bag.id}"] = np.asarray(bag.oob_rows, dtype=np.int64)
    atomic_save_npz(path, arrays)


def load_bags(entries: Sequence[Mapping[str, Any]], path: Path) -> list[Bag]:
    arrays = load_npz(path)
    try:
        return [Bag(int(e["id"]), tuple(e["modalities"]), arrays[f"rows_{e['id']}"], arrays[f"oob_{e['id']}"],
                    int(e["seed"]), None if e.get("fold") is None else int(e["fold"])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(path, f"does not hold the bags its run record lists ({type(exc).__name__}: {exc})") from exc


@attrs.define
class RunRecord:
    """``run.json`` in memory; `Journal` keeps it current on disk."""

    run_dir: Path
    data: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.run_dir / RUN_FILE

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data["config"])

    def specs(self) -> list[LearnerSpec]:
        try:
            return [spec_from_dict(s) for s in self.data["learner_specs"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(self.path, f"its learner specs are damaged ({type(exc).__name__}: {exc})") from exc

    def bags(self) -> list[Bag]:
        bags_path = self.run_dir / BAGS_FILE
        if sha256_file(bags_path) != self.data.get("bags_sha256"):
            raise ArtifactError(bags_path, f"its SHA-256 differs from the one in {RUN_FILE}: the bags were modified")
        return load_bags(self.data["bags"], bags_path)

    def status_of(self, learner_id: str) -> str:
        return str(self.data["learners"].get(learner_id, {}).get("status", "pending"))

    def write(self) -> None:
        self.data["updated"] = time.time()
        atomic_write_json(self.path, self.data)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        run_dir = Path(run_dir)
        path = run_dir / RUN_FILE
        if not path.is_file():
            raise ArtifactError(path, "missing: there is no run to resume in this directory (train without "
                                      "resume=True to start one)")
        data = dict(check_format(path, read_json(path, what="run record"), FORMAT, VERSION))
        for key, kind in (("run_id", str), ("config", dict), ("learners", dict), ("bags", list),
                          ("learner_specs", list)):
            if not isinstance(data.get(key), kind):
                raise ArtifactError(path, f"its {key!r} entry is missing or not a {kind.__name__}; the run record "
                                          f"is damaged")
        return cls(run_dir, data)


def merged_config(record: RunRecord, given: Mapping[str, Any]) -> dict[str, Any]:
    """The stored configuration, with the operational options ``given`` may change.

    Any other option given with a different value is an error: a resumed run computes what the
    interrupted one would have.
    """
    stored = record.config
    changed = sorted(k for k, v in given.items()
                     if k not in OPERATIONAL_KEYS and k != "run_dir" and k in stored and to_json(v) != stored[k])
    unknown = sorted(k for k in given if k not in stored and k not in OPERATIONAL_KEYS and k != "run_dir")
    if changed or unknown:
        raise ConfigError([f"{k}: the run in {record.run_dir} was started with {stored.get(k)!r}, not "
                           f"{given[k]!r}; a resumed run keeps its configuration (start a new run_dir to change it)"
                           for k in changed + unknown])
    return {**stored, **{k: v for k, v in given.items() if k in OPERATIONAL_KEYS}, "run_dir": str(record.run_dir)}


def set_previous_run_aside(run_dir: Path) -> None:
    """Before a new run in a directory that holds another: move that run's export to ``export.previous``.

    Otherwise, were the new run killed before its own export, `load_ensemble(run_dir)` would serve the
    old run's export while ``run.json`` describes the new one. The move is one rename (atomic); the
    old learners' folders stay until the new run's learners replace them, unnamed by ``run.json``.
    """
    export = run_dir / EXPORT_DIR
    if not export.exists():
        return
    aside = run_dir / f"{EXPORT_DIR}.previous"
    if aside.exists():
        shutil.rmtree(aside)
    move_into_place(export, aside)
    log.warning("run_dir.previous_export_moved", run_dir=str(run_dir), to=str(aside),
                hint="this directory held a finished run; a new run (not resume=True) replaces it")


class Journal:
    """Keeps ``run.json`` current while a run trains and stores each learner as it finishes.

    The record is the run's durable copy, not the run itself: once training has started, a write
    that fails (a full disk, a file system turned read-only) is logged once and training goes on in
    memory; the learners stored before it are what a resume starts from. A run directory that
    cannot be written at the start is an error before any training (`StorageError`).
    """

    def __init__(self, record: RunRecord):
        self.record = record
        self.write_error: OSError | None = None

    def _write(self) -> None:
        try:
            self.record.write()
        except OSError as exc:
            if self.write_error is None:
                log.warning("run.record_not_written", path=str(self.record.path), error=f"{type(exc).__name__}: {exc}",
                            hint="training goes on in memory; free space or fix permissions, then resume to store it")
            self.write_error = exc

    @classmethod
    def start(cls, run: Any, specs: Sequence[LearnerSpec], bags: Mapping[int, Bag], dataset: MultimodalDataset,
              targets: np.ndarray, previous: RunRecord | None = None) -> Journal:
        """A fresh record (or, resuming, the previous one with its finished learners kept)."""
        run_dir = Path(run.config.run_dir)
        try:
            return cls._start(run, run_dir, specs, bags, dataset, targets, previous)
        except OSError as exc:
            raise StorageError(run_dir, "the run directory cannot be written, so the run cannot be recorded "
                                        "there: pass a run_dir on a writable file system (or none to train "
                                        "without a record)", exc) from exc

    @classmethod
    def _start(cls, run: Any, run_dir: Path, specs: Sequence[LearnerSpec], bags: Mapping[int, Bag],
               dataset: MultimodalDataset, targets: np.ndarray, previous: RunRecord | None) -> Journal:
        run_dir.mkdir(parents=True, exist_ok=True)
        # an interrupted fit of this process may still be writing its last checkpoint: let it finish (its
        # errors were that run's), so that it neither loses its file to the cleaning nor fails this run
        with contextlib.suppress(Exception):
            flush_checkpoints()
        cleaned = clean_temporaries(run_dir)
        if cleaned:
            log.info("run_dir.cleaned", run_dir=str(run_dir), removed=[str(p.relative_to(run_dir)) for p in cleaned])
        fingerprint = data_fingerprint(dataset, targets)
        if previous is not None:
            if previous.data.get("data_fingerprint") != fingerprint:
                raise DataError(f"the data differ from the data the run in {run_dir} was trained on (fingerprint "
                                f"mismatch): resume with the same arrays and labels, or start a new run_dir")
            previous.data["status"] = "running"
            previous.data["resumed"] = int(previous.data.get("resumed", 0)) + 1
            if _LAUNCH.get() is not None:  # the latest launch is the one to repeat
                previous.data["launch"] = _LAUNCH.get()
            previous.write()
            return cls(previous)
        set_previous_run_aside(run_dir)
        used = [bags[s.bag_id] for s in specs]
        save_bags(used, run_dir / BAGS_FILE)

        task = run.task
        data = {
            "format": FORMAT, "version": VERSION, "modalbag_version": __version__, "run_id": run.run_id,
            "status": "running", "started": time.time(), "config": run.config.to_dict(),
            "seed": run.config.random_state,
            "task": {"task_type": task.task_type, "n_outputs": task.n_outputs,
                     "classes": None if task.classes is None else to_json(task.classes),
                     "prior": to_json(task.prior)},
            "data_fingerprint": fingerprint, "bags": [_bag_entry(b) for b in used],
            "bags_sha256": sha256_file(run_dir / BAGS_FILE),
            "learner_specs": [spec_to_dict(s) for s in specs],
            "learners": {s.learner_id: {"status": "pending"} for s in specs},
        }
        if _LAUNCH.get() is not None:
            data["launch"] = _LAUNCH.get()
        record = RunRecord(run_dir, to_json(data))
        record.write()
        return cls(record)

    def finished(self, learner: TrainedLearner) -> None:
        """Store a learner that just ended (its model when it trained), then mark it in run.json."""
        entry: dict[str, Any] = {"status": learner.status}
        if learner.ok:
            folder = Path(LEARNERS_DIR) / learner.learner_id
            try:
                save_learner(learner, self.record.run_dir / folder)
                entry["folder"] = folder.as_posix()
            except Exception as exc:  # noqa: BLE001 - the run goes on; resume then retrains this learner
                log.warning("learner.not_stored", learner=learner.learner_id, error=f"{type(exc).__name__}: {exc}")
                entry = {"status": "pending", "error": f"could not be stored: {type(exc).__name__}: {exc}"}
        else:
            entry["error"] = learner.error
        self.record.data["learners"][learner.learner_id] = entry
        self._write()

    def close(self, status: str, *, plugin_failures: Sequence[Mapping[str, Any]] = ()) -> None:
        """Mark the run ``status``; ``plugin_failures``: the hooks that raised and were isolated."""
        self.record.data["status"] = status
        if plugin_failures:
            self.record.data["plugin_failures"] = list(plugin_failures)
        self._write()

    def trained_learners(self, catalog: Any) -> dict[str, TrainedLearner]:
        """The learners this run already trained, loaded from their folders."""
        out = {}
        for lid, entry in self.record.data["learners"].items():
            if isinstance(entry, Mapping) and entry.get("status") == "trained" and entry.get("folder"):
                out[lid] = load_learner(inside(self.record.run_dir, entry["folder"], named_in=self.record.path),
                                        catalog)
        return out


__all__ = ["OPERATIONAL_KEYS", "Journal", "RunRecord", "data_fingerprint", "default_run_dir", "merged_config",
           "recording_launch"]
