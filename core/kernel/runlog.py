"""The run's own record: ``<run_dir>/records.jsonl``, one JSON object per line, appended as it happens.

It is the durable record of a run (TensorBoard and W&B mirror it). Lines are written so that a
crash loses at most the line being written:

- each line goes to the kernel in one ``write`` on a descriptor opened with ``O_APPEND``, so every
  line lands whole at the end of the file even when several worker processes append at once (the
  kernel serialises appends to a regular file on a local file system);
- nothing is buffered in the process: a line written is a line kept if the process is killed;
- the file is ``fsync``-ed at each epoch's end and the run's end, so an epoch survives a power loss.

`read_records` skips a line cut short by a crash: the final one, or, after a resumed run appended
to the file (`end_torn_line` first ends the cut line), one in the middle. Record types: ``run_start`` (the config),
``epoch`` (one learner's `EpochRecord`), ``step`` (every ``log_interval`` optimizer steps),
``learner_end``, ``learner_failed`` and ``run_end``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from modalbag.io.artifacts import to_json
from modalbag.kernel.records import EpochRecord
from modalbag.logs import get_logger

log = get_logger("modalbag.runlog")

RECORDS_FILE = "records.jsonl"


def _plain(value: Any) -> Any:
    """JSON-safe values: non-finite floats become None (JSON has no NaN), anything else unknown a string."""
    return to_json(value, finite=True, fallback=str)


def encode_line(record: Mapping[str, Any]) -> bytes:
    """One record as one newline-terminated UTF-8 line (no NaN: strict JSON)."""
    return (json.dumps(_plain(record), allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def append_line(path: str | os.PathLike[str], record: Mapping[str, Any], *, sync: bool = False) -> None:
    """Append ``record`` as one line with a single ``write`` on an ``O_APPEND`` descriptor.

    Safe from several processes at once: each line is positioned and written by the kernel as a
    unit. ``sync`` also flushes it to the disk (``fsync``).
    """
    data = encode_line(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # only on a full disk or a signal: finish the line
            written += os.write(fd, data[written:])
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def end_torn_line(path: str | os.PathLike[str]) -> bool:
    """End a last line a crash cut short with a newline, so the next append starts a line of its own.

    Without it, a resumed run's first line would be glued to the cut one and both would be lost.
    Called once when a run starts (before any worker appends). Returns whether a line was ended.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return False
    except FileNotFoundError:
        return False
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete record of a ``records.jsonl`` in order; lines cut by a crash are skipped."""
    return list(iter_records(path))


def iter_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    data = Path(path).read_bytes()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:  # only a line cut by a crash: every write is one whole line
            log.warning("runlog.skipped_cut_line", path=str(path), line=number, bytes=len(line))


def epoch_entry(run_id: str, learner_id: str, bag_id: int, trainer: str, record: EpochRecord) -> dict[str, Any]:
    """The ``epoch`` line of one learner's epoch: every field of its `EpochRecord`."""
    return {"type": "epoch", "run_id": run_id, "learner_id": learner_id, "bag_id": bag_id, "trainer": trainer,
            "time": time.time(), **record.to_dict()}


def record_from_entry(entry: Mapping[str, Any]) -> EpochRecord:
    """Rebuild the `EpochRecord` an ``epoch`` line was written from."""
    return EpochRecord.from_dict(entry)


__all__ = ["RECORDS_FILE", "append_line", "encode_line", "end_torn_line", "epoch_entry", "iter_records",
           "read_records", "record_from_entry"]
