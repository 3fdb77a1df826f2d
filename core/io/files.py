"""Read one modality (or the labels) from a file, for ``create_model_from_files({name: path})``.

Supported: ``.npy`` (memory-mapped), ``.npz``, ``.csv``, ``.tsv``, ``.h5``/``.hdf5`` (needs
``h5py``) and ``.parquet`` (needs ``pyarrow``). Every failure raises
:class:`~modalbag.errors.DataError` naming the modality, the file and the fix.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modalbag.errors import DataError

__all__ = ["SUPPORTED_SUFFIXES", "load_array"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".h5", ".hdf5", ".parquet")

# Cells read as a missing value (NaN) in CSV/TSV files; compared case-insensitively.
_MISSING_CELLS = frozenset({"", "na", "nan", "null"})


def load_array(path: str | os.PathLike[str], *, name: str, key: str | None = None) -> np.ndarray:
    """Load the array for modality `name` from `path`, chosen by the file's suffix.

    `key` selects an array inside an ``.npz`` archive or an HDF5 file; without it the entry named
    `name` is used, or the only one there is. ``.npy`` files stay memory-mapped (read-only);
    CSV, TSV and Parquet files give a 2-D float32 matrix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise _error(
            name,
            path,
            f"unsupported file type {path.suffix or '(no suffix)'!r}",
            f"Save it as one of: {', '.join(SUPPORTED_SUFFIXES)}.",
        )
    if not path.exists():
        raise _error(name, path, "file not found", "Check the path (relative paths start from "
                     f"the working directory, {os.getcwd()}).")
    if not path.is_file():
        raise _error(name, path, "not a regular file", "Pass the path of a data file.")
    try:
        return reader(path, name, key)
    except DataError:
        raise
    except Exception as exc:  # any library failure: the file is unreadable or corrupt
        raise _error(
            name,
            path,
            f"cannot read the file ({type(exc).__name__}: {exc})",
            f"Check that it is a valid, readable {suffix} file and re-save it if it is corrupt.",
        ) from exc


def _error(name: str, path: Path, problem: str, fix: str) -> DataError:
    return DataError(f"modality {name!r}, file '{path}': {problem}. {fix}")


def _load_npy(path: Path, name: str, key: str | None) -> np.ndarray:
    loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    if not isinstance(loaded, np.ndarray):  # an .npz archive saved under an .npy name
        loaded.close()
        raise _error(name, path, "this is an .npz archive, not an .npy array",
                     "Rename the file to end in .npz.")
    return loaded


def _load_npz(path: Path, name: str, key: str | None) -> np.ndarray:
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):  # a plain .npy array saved under an .npz name
        raise _error(name, path, "this is an .npy array, not an .npz archive",
                     "Rename the file to end in .npy.")
    with loaded as archive:
        keys = list(archive.files)
        chosen = _choose(keys, name, key)
        if chosen is None:
            raise _missing_entry(name, path, key, "array", keys)
        return archive[chosen]


def _choose(keys: list[str], name: str, key: str | None) -> str | None:
    """The entry to read: `key` if given, else `name`, else the only one."""
    wanted = key if key is not None else name
    if wanted in keys:
        return wanted
    if key is None and len(keys) == 1:
        return keys[0]
    return None


def _missing_entry(name: str, path: Path, key: str | None, what: str, keys: list[str]) -> DataError:
    listed = ", ".join(repr(k) for k in sorted(keys)) or "none"
    if key is not None:
        problem = f"no {what} named {key!r} (the key requested)"
    elif keys:
        problem = f"{len(keys)} {what}s and none named {name!r}"
    else:
        problem = f"the file holds no {what}"
    return _error(name, path, f"{problem}; it holds: {listed}",
                  f"Pass key=<one of those names>, or save the {what} under the name {name!r}.")


def _load_delimited(path: Path, name: str, key: str | None) -> np.ndarray:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows: list[list[float]] = []
    header: list[str] | None = None
    width = 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for cells in reader:
            if not cells:  # blank line
                continue
            line = reader.line_num
            if header is None and not rows and _looks_like_header(cells):
                header = [c.strip() for c in cells]
                width = len(cells)
                continue
            if width == 0:
                width = len(cells)
            elif len(cells) != width:
                raise _error(name, path, f"row {line} has {len(cells)} cells, expected {width}",
                             "Give every row the same number of columns (leave missing values "
                             "empty or write NA).")
            rows.append([_parse_cell(c, name, path, line, col, header) for col, c in
                         enumerate(cells)])
    if not rows:
        raise _error(name, path, "no data rows", "Add at least one row of numbers below the "
                     "header (or point to the right file).")
    return np.asarray(rows, dtype=np.float32)


def _looks_like_header(cells: list[str]) -> bool:
    """A first row is a header when none of its cells is a number (empty or missing-value cells aside).

    A data row with one stray non-number stays data, so its bad cell is reported instead of the row
    being dropped silently as a "header".
    """
    present = [c for c in cells if c.strip().lower() not in _MISSING_CELLS]
    return bool(present) and not any(_is_number(c) for c in present)


def _is_number(cell: str) -> bool:
    text = cell.strip()
    if text.lower() in _MISSING_CELLS:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_cell(cell: str, name: str, path: Path, line: int, col: int,
                header: list[str] | None) -> float:
    text = cell.strip()
    if text.lower() in _MISSING_CELLS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        column = f"column {col + 1}"
        if header is not None and col < len(header) and header[col]:
            column += f" ({header[col]!r})"
        raise _error(name, path, f"row {line}, {column}: {cell!r} is not a number",
                     "Use numbers only; write missing values as an empty cell, NA or nan, and "
                     "encode categories as numbers first.") from None


def _load_hdf5(path: Path, name: str, key: str | None) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise _error(name, path, "reading HDF5 files needs h5py, which is not installed",
                     "Run: pip install h5py") from None
    with h5py.File(path, "r") as handle:
        datasets: list[str] = []
        handle.visititems(
            lambda item_name, obj: datasets.append(item_name)
            if isinstance(obj, h5py.Dataset) else None
        )
        chosen = _choose(datasets, name, key.strip("/") if key is not None else None)
        if chosen is None:
            raise _missing_entry(name, path, key, "dataset", datasets)
        return np.asarray(handle[chosen][()])


def _load_parquet(path: Path, name: str, key: str | None) -> np.ndarray:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _error(name, path, "reading Parquet files needs pyarrow, which is not installed",
                     "Run: pip install pyarrow") from None
    table = pq.read_table(path)
    bad = [field.name for field in table.schema
           if not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type))]
    if bad:
        raise _error(name, path, f"non-numeric column(s) {', '.join(map(repr, bad))}",
                     "Drop those columns or encode them as numbers before saving.")
    if table.num_columns == 0 or table.num_rows == 0:
        raise _error(name, path, "no data (the table has no rows or no columns)",
                     "Point to a Parquet file with at least one row of numeric columns.")
    columns = [
        column.cast(pa.float32(), safe=False).to_numpy(zero_copy_only=False)
        for column in table.columns
    ]
    return np.column_stack(columns).astype(np.float32, copy=False)


_READERS: dict[str, Callable[[Path, str, str | None], np.ndarray]] = {
    ".npy": _load_npy,
    ".npz": _load_npz,
    ".csv": _load_delimited,
    ".tsv": _load_delimited,
    ".h5": _load_hdf5,
    ".hdf5": _load_hdf5,
    ".parquet": _load_parquet,
}
