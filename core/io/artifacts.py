"""Writing and reading modalbag's own files safely: atomic writes, checksums, manifests, safe loads.

Every file is written to a temporary sibling, flushed and fsynced, then renamed over its target, so
a crash leaves either the old file or the new one, never half of one. Reading never unpickles
arbitrary objects: torch files are read with an explicit ``weights_only=True`` (so the environment
variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn the safe loader off), arrays with
``allow_pickle=False``, weights as safetensors and metadata as JSON. A file that is missing,
truncated, tampered with (its SHA-256 differs from its manifest's) or of another format version is
an `ArtifactError` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modalbag.errors import ArtifactError

# -- atomic writes -----------------------------------------------------------------------------


def fsync_directory(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK: int | None = None


def process_umask() -> int:
    """This process's umask (read once: ``/proc/self/status`` where there is one, else set and restored)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                _UMASK = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Any]:
    """Yield a binary file handle; on success its bytes replace ``path`` in one rename.

    The file gets the mode any new file of the user gets (0666 less the umask): ``mkstemp`` creates
    its temporary file 0600, which would leave a report or an export unreadable to a team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
        os.fchmod(fd, 0o666 & ~process_umask())
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def publish_file(written: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Make a file a library wrote at ``written`` (a sibling of ``path``) durable, then rename it over
    ``path``: for writers that take a file name, not a handle (a profiler's trace export)."""
    written, path = Path(written), Path(path)
    try:
        with open(written, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(written, path)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def to_json(value: Any, *, finite: bool = False, fallback: Callable[[Any], Any] | None = None) -> Any:
    """Plain data for JSON (or pickling): mappings with string keys, lists for tuples and arrays,
    Python numbers for numpy and torch scalars, strings for paths.

    ``finite``: non-finite floats become None (strict JSON has no NaN; a run log read by other tools).
    ``fallback``: applied to any other value (``str``, ``repr``); without it the value is kept as it
    is, so ``json.dumps`` names the type it cannot write.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return None if finite and not math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {str(k): to_json(v, finite=finite, fallback=fallback) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, finite=finite, fallback=fallback) for v in value]
    if isinstance(value, np.generic):
        return to_json(value.item(), finite=finite, fallback=fallback)
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy arrays, torch tensors (0-d: a number)
        return to_json(value.tolist(), finite=finite, fallback=fallback)
    if isinstance(value, Path):
        return str(value)
    return value if fallback is None else fallback(value)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_bytes(path, json.dumps(to_json(data), indent=2, sort_keys=False).encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a sibling temporary file, fsync, then rename over ``path``."""
    import torch

    with atomic_file(path) as fh:
        torch.save(obj, fh)


def atomic_save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Arrays only (no object dtype): read back with ``allow_pickle=False``."""
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise ArtifactError(path, f"array {name!r} has dtype object, which cannot be stored without pickle")
    with atomic_file(path) as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (files written by libraries without fsync)."""
    for directory, _, files in os.walk(root):
        for name in files:
            with open(Path(directory) / name, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_directory(Path(directory))


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory in a temporary sibling; on success it takes ``target``'s place.

    If the body raises, the temporary directory is removed and ``target`` is untouched. The swap is
    two renames (the old directory aside, the new one in place, then the old one removed); were
    the process killed between them, the previous directory survives as ``.<name>.old-*``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_directory(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def move_into_place(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename ``source`` to ``target`` (replacing a file there) in one step, then fsync the directory."""
    os.replace(source, target)
    fsync_directory(Path(target).parent)


def inside(root: str | os.PathLike[str], relative: str, *, named_in: str | os.PathLike[str]) -> Path:
    """``root / relative``, refused unless it stays under ``root`` (a file ``named_in`` names it).

    An absolute path, ``..`` or a symbolic link that leads out of ``root`` would let a crafted
    manifest load files from anywhere: `ArtifactError` instead.
    """
    base = Path(root).resolve()
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise ArtifactError(named_in, f"names {relative!r}, which is not a path inside {base}")
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ArtifactError(named_in, f"names {relative!r}, which leads outside {base}: refused")
    return target


_TEMPORARY_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")  # atomic_file's mkstemp names
_TEMPORARY_DIR = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-[0-9a-f]{8}$")  # atomic_directory's


def clean_temporaries(root: str | os.PathLike[str]) -> list[Path]:
    """Remove what the atomic writers leave under ``root`` when a process is killed mid-write.

    A temporary file or directory is removed; a directory set aside by `atomic_directory` whose
    target is missing (killed between its two renames) is put back in place, since it is the last
    complete version. Only call this while no other process writes under ``root`` (the run
    directory's lock). Returns the paths removed or restored.
    """
    root = Path(root)
    touched: list[Path] = []
    if not root.is_dir():
        return touched
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        for name in files:
            if _TEMPORARY_FILE.match(name):
                (here / name).unlink(missing_ok=True)
                touched.append(here / name)
        for name in list(dirs):
            found = _TEMPORARY_DIR.match(name)
            if found is None:
                continue
            dirs.remove(name)  # not walked into
            target = here / found["name"]
            if found["what"] == "old" and not target.exists():
                os.replace(here / name, target)
            else:
                shutil.rmtree(here / name, ignore_errors=True)
            touched.append(here / name)
    if touched:
        fsync_directory(root)
    return touched


# -- checksums and manifests -------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(root: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` for ``names`` (default: every file under ``root``)."""
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return {name: {"sha256": sha256_file(root / name), "bytes": (root / name).stat().st_size} for name in names}


def verify_files(root: Path, files: Any, manifest: Path) -> None:
    """Check every listed file exists with its recorded size and SHA-256 (before anything parses it)."""
    if not isinstance(files, Mapping):
        raise ArtifactError(manifest, "its 'files' entry is not a mapping of file -> checksum; the manifest is "
                                      "damaged: export or train again")
    for name, entry in files.items():
        path = root / str(name)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("sha256"), str):
            raise ArtifactError(manifest, f"the entry for {name!r} has no sha256; the manifest is damaged")
        if ".." in Path(str(name)).parts or Path(str(name)).is_absolute():
            raise ArtifactError(manifest, f"lists {name!r}, which points outside its directory; refusing it")
        if not path.is_file():
            raise ArtifactError(path, f"missing (listed in {manifest.name}); the artifact is incomplete: "
                                      f"export or train again")
        size = path.stat().st_size
        if entry.get("bytes") is not None and size != entry.get("bytes"):
            raise ArtifactError(path, f"has {size} bytes but {manifest.name} records {entry.get('bytes')}: "
                                      f"the file is truncated or was modified; do not load it")
        if sha256_file(path) != entry["sha256"]:
            raise ArtifactError(path, f"its SHA-256 differs from the one in {manifest.name}: the file was "
                                      f"modified or damaged after it was written; do not load it")


def read_json(path: str | os.PathLike[str], *, what: str = "file") -> Any:
    """A JSON file modalbag wrote; anything unreadable is an `ArtifactError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, f"missing: this is not a modalbag {what}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(path, f"is not valid JSON ({exc}); the {what} is damaged") from exc


def check_format(path: Path, data: Any, fmt: str, version: int) -> Mapping[str, Any]:
    """The parsed JSON as a mapping, or an error when it is another format or version."""
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise ArtifactError(path, f"is not a {fmt!r} file (format {found!r})")
    if data.get("version") != version:
        raise ArtifactError(path, f"is {fmt!r} version {data.get('version')!r}; this modalbag reads version "
                                  f"{version}: use the modalbag release that wrote it, or export/train again")
    return data


# -- safe loading ------------------------------------------------------------------------------


def safe_torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` that only ever rebuilds tensors and plain containers (explicit ``weights_only``).

    A file holding any other Python object is refused *before* that object is built, so a planted
    pickle never runs, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ArtifactError(path, "refused: it holds Python objects other than tensors and plain data, and "
                                  "unpickling them could run code. modalbag never writes such checkpoints; "
                                  f"do not load this file ({str(exc).splitlines()[0][:200]})") from exc
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad magic, ...: all mean a damaged file
        raise ArtifactError(path, f"cannot be read as a torch checkpoint ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); it is truncated "
                                  f"or damaged") from exc


def save_safetensors(tensors: Mapping[str, Any], path: str | os.PathLike[str],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Tensors as safetensors (a JSON header plus raw bytes: nothing in it can run), atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    atomic_write_bytes(path, data)


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "missing")
    try:
        return load(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: a damaged file
        raise ArtifactError(path, f"is not a valid safetensors file ({type(exc).__name__}: {exc}); it is "
                                  f"truncated or damaged") from exc


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "missing")
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except Exception as exc:  # noqa: BLE001 - BadZipFile, ValueError (pickled arrays refused), ...
        raise ArtifactError(path, f"cannot be read as arrays ({type(exc).__name__}: {exc}); it is damaged "
                                  f"or holds pickled objects") from exc


__all__ = ["atomic_directory", "atomic_file", "atomic_save_npz", "atomic_torch_save", "atomic_write_bytes",
           "atomic_write_json", "check_format", "clean_temporaries", "file_entries", "inside", "load_npz", "load_safetensors",
           "move_into_place", "publish_file", "read_json", "safe_torch_load", "save_safetensors", "sha256_file",
           "to_json", "verify_files"]
