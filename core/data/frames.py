"""DataFrames in: a table's column groups as modalities, for `create_model_from_arrays`, a model's
``predict`` and the scikit-learn estimators (`modalbag.sklearn`), with one set of rules for all.

``modalities={"text": "emb_*", "meta": ["age", "income"], "scan": ("scan_*", "image")}``: a group is
a list of column names (or positions), a ``"prefix*"`` pattern over the column names, or either with
a modality type (``"tabular"`` by default). Every column belongs to at most one group; columns in no
group are not used. A row whose values in a group are all NaN lacks that modality.

pandas is never imported here unless the caller already holds a DataFrame: a table is recognised by
its attributes (``columns``, ``dtypes``, item access), so pandas stays an optional dependency and
other libraries' tables with the same surface work too.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modalbag.errors import ConfigError, DataError

#: A modality's columns in a table: positions into its columns, and the modality type.
ColumnGroups = dict[str, tuple[np.ndarray, str]]


def is_dataframe(data: Any) -> bool:
    """Whether ``data`` is a table with named columns (a pandas or polars DataFrame), not a mapping
    of modalities; decided by its attributes, without importing pandas."""
    return (not isinstance(data, (Mapping, np.ndarray)) and hasattr(data, "columns") and hasattr(data, "dtypes")
            and hasattr(data, "__getitem__"))


def column_names(table: Any) -> list[str] | None:
    """A table's column names as strings, None for an array."""
    columns = getattr(table, "columns", None)
    return None if columns is None else [str(c) for c in columns]


def resolve_column_groups(modalities: Mapping[str, Any] | None, names: list[str] | None,
                          n_columns: int) -> ColumnGroups:
    """Each modality's column positions and type, checked: every column in at most one group.

    Without ``modalities`` all columns are one tabular modality named ``"x"``.
    """
    if modalities is None:
        return {"x": (np.arange(n_columns), "tabular")}
    if not isinstance(modalities, Mapping) or not modalities:
        raise ConfigError("modalities must be a non-empty mapping {name: columns}, e.g. {'text': 'emb_*'}")
    groups: ColumnGroups = {}
    owner: dict[int, str] = {}
    for name, spec in modalities.items():
        kind = "tabular"
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str):
            spec, kind = spec
        positions = _positions(name, spec, names, n_columns)
        for p in positions.tolist():
            if p in owner:
                raise ConfigError(f"column {names[p] if names else p!r} is in both modality {owner[p]!r} and "
                                  f"{name!r}: give each column to one modality")
            owner[p] = name
        groups[str(name)] = (positions, kind)
    if names is not None:
        _check_unique(names, {names[p] for p in owner})
    return groups


def _positions(name: str, spec: Any, names: list[str] | None, n_columns: int) -> np.ndarray:
    if isinstance(spec, str):
        if names is None:
            raise ConfigError(f"modality {name!r}: the pattern {spec!r} needs a DataFrame (column names)")
        found = [i for i, c in enumerate(names) if fnmatch.fnmatchcase(c, spec)]
        if not found:
            shown = ", ".join(map(repr, names[:10])) + (", ..." if len(names) > 10 else "")
            raise DataError(f"modality {name!r}: no column matches {spec!r}; the columns are {shown}")
        return np.asarray(found)
    if not isinstance(spec, Sequence) or not len(spec):
        raise ConfigError(f"modality {name!r}: give a list of columns or a 'prefix*' pattern, got {spec!r}")
    out = []
    for column in spec:
        if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
            if not 0 <= column < n_columns:
                raise DataError(f"modality {name!r}: column position {column} is outside X's {n_columns} columns")
            out.append(int(column))
        elif names is not None and str(column) in names:
            out.append(names.index(str(column)))
        else:
            raise DataError(f"modality {name!r}: column {column!r} is not in X")
    return np.asarray(out)


def _check_unique(names: Sequence[str], used: set[str]) -> None:
    """Refuse a column name that the table repeats and a group uses: which of the columns is meant?"""
    counts = Counter(names)
    repeated = sorted(n for n in used if counts[n] > 1)
    if repeated:
        raise DataError(f"the DataFrame has several columns named {', '.join(map(repr, repeated))}: rename them "
                        f"so that each column of a modality has its own name")


def _dtype_kind(table: Any, label: Any) -> str:
    column = table[label]
    kind = getattr(getattr(column, "dtype", None), "kind", None)  # numpy and pandas dtypes, extension ones too
    return kind if isinstance(kind, str) else np.asarray(column).dtype.kind


def check_numeric(table: Any, groups: Mapping[str, Sequence[Any]], rest: Sequence[Any] = ()) -> None:
    """Refuse the grouped columns (and the columns ``rest``, read but in no group) that are not
    numbers or booleans, naming each with its modality and saying how to fix it."""
    where = {label: f"modality {name!r}" for name, labels in groups.items() for label in labels}
    where.update({label: "in no modality" for label in rest})
    bad = [label for label in where if _dtype_kind(table, label) not in "biuf"]
    if bad:
        listed = ", ".join(f"{str(label)!r} ({table[label].dtype}, {where[label]})" for label in bad)
        raise DataError(f"non-numeric columns: {listed}; encode them as numbers first (one-hot columns or category "
                        f"codes for categories, embedding vectors for text, timestamps as numbers) or drop them")


def _block(table: Any, labels: Sequence[Any]) -> np.ndarray:
    """The columns ``labels`` as a float32 array, missing values (``NaN``, ``pd.NA``, ``None``) as NaN."""
    part = table[list(labels)]
    try:
        return np.asarray(part.to_numpy(dtype=np.float32, na_value=np.nan))
    except (AttributeError, TypeError):  # a table whose to_numpy takes no na_value (polars)
        return np.asarray(part, dtype=np.float32)


def modalities_from_frame(table: Any, modalities: Mapping[str, Any] | None
                          ) -> tuple[dict[str, tuple[np.ndarray, str]], dict[str, list[str]]]:
    """The modalities a DataFrame's column groups hold, ``{name: (array, type)}``, and each group's
    column names, which a model keeps to read the same columns from a table at prediction time."""
    names = column_names(table)
    assert names is not None
    groups = resolve_column_groups(modalities, names, len(names))
    original = list(table.columns)
    labels = {name: [original[p] for p in positions.tolist()] for name, (positions, _) in groups.items()}
    check_numeric(table, labels)
    data = {name: (_block(table, labels[name]), kind) for name, (_, kind) in groups.items()}
    return data, {name: [str(c) for c in columns] for name, columns in labels.items()}


def frame_to_modalities(table: Any, columns: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """A table's modalities by the column names recorded at fit: ``{name: array}``. Columns may come
    in any order and others may be present; a missing one is an error naming it."""
    names = column_names(table)
    assert names is not None
    present = set(names)
    missing = [c for group in columns.values() for c in group if c not in present]
    if missing:
        shown = ", ".join(map(repr, missing[:20])) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise DataError(f"the DataFrame lacks {len(missing)} columns the model was trained on: {shown}; give every "
                        f"column of a modality (all NaN in a row when that sample lacks the modality)")
    _check_unique(names, {c for group in columns.values() for c in group})
    original = {str(c): c for c in table.columns}
    labels = {name: [original[c] for c in group] for name, group in columns.items()}
    check_numeric(table, labels)
    return {name: _block(table, group) for name, group in labels.items()}


__all__ = ["ColumnGroups", "check_numeric", "column_names", "frame_to_modalities", "is_dataframe",
           "modalities_from_frame", "resolve_column_groups"]
