"""One writer per run directory: an operating-system lock held while a run writes there.

Two runs writing one directory interleave their files (one run's ``run.json`` and export beside
the other's learners). `RunDirectoryLock` takes an exclusive ``flock`` on ``<run_dir>/.modalbag.lock``
for the whole run, training and export; a second run gets `RunDirectoryBusyError` naming the
holder's pid at once, instead of waiting. The kernel releases the lock when the process ends,
however it ends, so a killed run never leaves the directory locked. Within one process the lock
is re-entrant (the engine and the model's export both take it).

Where ``fcntl`` is missing (Windows) nothing is locked, and the run says so in its log.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from modalbag.errors import RunDirectoryBusyError, StorageError
from modalbag.logs import get_logger

log = get_logger("modalbag.store")

LOCK_FILE = ".modalbag.lock"

_HELD: dict[Path, list[int]] = {}  # resolved run dir -> [file descriptor, depth], this process's locks
_GUARD = threading.Lock()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        return "another process"
    return f"pid {text[0]}" if text else "another process"


@contextlib.contextmanager
def run_directory_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block (created if missing); re-entrant within a process."""
    acquire(run_dir)
    try:
        yield
    finally:
        release(run_dir)


def acquire(run_dir: str | os.PathLike[str]) -> None:
    """Take ``run_dir``'s lock, or raise `RunDirectoryBusyError` if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        log.info("run_dir.not_locked", run_dir=str(run_dir), reason="fcntl is not available on this platform")
        return
    root = Path(run_dir).resolve()
    with _GUARD:
        if root in _HELD:
            _HELD[root][1] += 1
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(root, "cannot create the run directory or its lock file: pass a run_dir on a "
                                     "writable file system, or fix its permissions (a finished run on read-only "
                                     "media needs no resume: load it with modalbag.load_ensemble)", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryBusyError(
                f"{root} is in use by another modalbag run ({_holder(root / LOCK_FILE)}): wait until it ends, "
                f"or give this run another run_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.time():.0f}\n".encode())
        _HELD[root] = [fd, 1]


def release(run_dir: str | os.PathLike[str]) -> None:
    """Give back one hold of ``run_dir``'s lock; the last one unlocks it."""
    root = Path(run_dir).resolve()
    with _GUARD:
        held = _HELD.get(root)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[root]
            os.close(held[0])  # closing the descriptor releases the flock


def held_here(run_dir: str | os.PathLike[str]) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return Path(run_dir).resolve() in _HELD


__all__ = ["LOCK_FILE", "acquire", "held_here", "release", "run_directory_lock"]
