"""Read one modality (or the labels) from a file, for ``create_model_from_files({name: path})``.

Supported: ``.npy`` (memory-mapped), ``.npz``, ``.csv``, ``.tsv``, ``.h5``/``.hdf5`` (needs
``h5py``: extra ``[h5]``) and ``.parquet`` (needs ``pyarrow``: extra ``[parquet]``). Every failure raises
:class:`~modalbag.errors.DataError` naming the modality, the file and the fix.

CSV/TSV files go to pandas' C parser (numpy's without pandas) when they are plain enough that it
reads them exactly as the hand-written parser does; that parser takes the rest, and its errors point
at the bad cell.
"""

from __future__ import annotations

import codecs
import csv
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modalbag.errors import DataError

__all__ = ["SUPPORTED_SUFFIXES", "load_array"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".h5", ".hdf5", ".parquet")

# Cells read as a missing value (NaN) in CSV/TSV files; compared case-insensitively.
_MISSING_CELLS = frozenset({"", "na", "nan", "null"})
# The same words in every mix of cases, for pandas, which compares them as written.
_MISSING_SPELLINGS = sorted({
    "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(word))
    for word in _MISSING_CELLS for mask in range(1 << len(word))
})
# What a plain CSV/TSV data line may hold besides its delimiters: number characters, spaces and the
# letters of inf, infinity, nan, na and null.
_NUMBER_BYTES = b"0123456789+-.eE " + b"afilntuyAFILNTUY"


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
    """A CSV/TSV file as a 2-D float32 matrix: a library's C parser reads plain files (several times
    faster: benchmarks/csv_reading.py), the hand-written parser everything else, so the result is
    the same either way and a bad file still gets an error naming its row, column and cell."""
    fast = _read_plain_delimited(path)
    return fast if fast is not None else _parse_delimited(path, name, key)


def _read_plain_delimited(path: Path) -> np.ndarray | None:
    """The matrix by pandas (or numpy without it), or None when the file is not plain, the library
    refuses it, or its table does not have the shape the hand-written parser would give."""
    delimiter = _delimiter(path)
    try:
        layout = _plain_layout(path, delimiter)
        if layout is None:
            return None
        skip, width, rows = layout
        values = _read_numbers(path, delimiter, skip)
    except Exception:  # noqa: BLE001 - any refusal: the hand-written parser says where and why
        return None
    if values.shape != (rows, width):
        return None
    return values.astype(np.float32, order="C")  # float64 -> float32, as float() then asarray does


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _plain_layout(path: Path, delimiter: str) -> tuple[int, int, int] | None:
    """(lines the header takes, columns, data rows) when every data line is plain, else None.

    Plain lines hold no quotes and the same number of cells each, so splitting them on the
    delimiter is what the csv module does; `_is_plain_line` keeps out the spellings where pandas'
    number parser and float() disagree.
    """
    skip, width = _header_layout(path, delimiter)
    separator = delimiter.encode()
    allowed = _NUMBER_BYTES + separator
    rows = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.removesuffix(b"\n").removesuffix(b"\r")
            if number <= skip:
                if b"\r" in line:  # a lone carriage return ends a row for csv, not for this count
                    return None
                continue
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8)
            if not line:  # a blank line, skipped by both parsers
                continue
            if not _is_plain_line(line, allowed):
                return None
            cells = line.count(separator) + 1
            if width is None:
                width = cells
            elif cells != width:
                return None
            rows += 1
    return (skip, width, rows) if rows and width is not None else None


def _header_layout(path: Path, delimiter: str) -> tuple[int, int | None]:
    """(lines the header takes, its cell count), or (0, None) without a header: the first row
    that is not blank, read and judged as the hand-written parser does."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for cells in reader:
            if cells:
                return (reader.line_num, len(cells)) if _looks_like_header(cells) else (0, None)
    return 0, None


def _is_plain_line(line: bytes, allowed: bytes) -> bool:
    """Only number characters, missing-value words, spaces and delimiters, and no line of spaces
    alone (pandas skips it; the csv module reads a cell).

    pandas reads a '+'-signed number next to a space with a less precise parser (and accepts
    '+1E 5'), so a line with a space may not hold a '+'.
    """
    if not line.strip() or line.translate(None, allowed):  # a lone "\r" is not allowed either
        return False
    return b"+" not in line or b" " not in line


def _read_numbers(path: Path, delimiter: str, skip: int) -> np.ndarray:
    """The cells after the header as float64, by pandas' C parser, or numpy's when pandas is not
    installed (numpy reads no missing-value words: such files fail here and go by hand)."""
    try:
        import pandas as pd
    except ImportError:
        return np.loadtxt(path, delimiter=delimiter, skiprows=skip, comments=None, ndmin=2,
                          encoding="utf-8-sig", dtype=np.float64)
    with warnings.catch_warnings():  # mixed-type warnings: the dtype check below decides
        warnings.simplefilter("ignore")
        frame = pd.read_csv(path, sep=delimiter, header=None, skiprows=skip, engine="c",
                            encoding="utf-8-sig", keep_default_na=False,
                            na_values=_MISSING_SPELLINGS)
    if not all(dtype.kind in "iuf" for dtype in frame.dtypes):  # a word pandas kept as text
        raise ValueError("a column is not numeric")
    return frame.to_numpy(dtype=np.float64)


def _parse_delimited(path: Path, name: str, key: str | None = None) -> np.ndarray:
    """The hand-written parser: slow, but its errors name the row, column and cell at fault."""
    delimiter = _delimiter(path)
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
                     "Run: pip install 'modalbag[h5]' (or pip install h5py)") from None
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
                     "Run: pip install 'modalbag[parquet]' (or pip install pyarrow)") from None
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
