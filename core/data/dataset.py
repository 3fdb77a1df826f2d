"""The data layer: modalities, their types, which samples have them, and the labels.

A sample may lack a modality: give an all-NaN row or an explicit mask. Missing rows are stored as
zeros with ``mask == False`` and never reach a learner as if they were data. A row with *some* NaN
values is an error (impute it or mark the whole row missing): silently zero-filling it would train
on invented values.
"""

from __future__ import annotations

import mmap
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.errors import DataError, close_matches
from modalbag.kernel.modalities import MODALITY_TYPES, ModalitySpec, modality_name_problem


def _infer_type(array: np.ndarray) -> str:
    return {2: "tabular", 3: "sequence", 4: "image"}.get(array.ndim, "tabular")


def _check_shape(name: str, kind: str, array: np.ndarray) -> None:
    expected = {"tabular": (2,), "text": (2,), "image": (2, 4), "sequence": (3,)}[kind]
    if array.ndim not in expected:
        shapes = {"tabular": "(n, features)", "text": "(n, embedding_dim)",
                  "image": "(n, features) or (n, C, H, W)", "sequence": "(n, T, features)"}[kind]
        raise DataError(f"modality {name!r} of type {kind!r} must have shape {shapes}, got {array.shape}")


def as_modality_array(name: str, value: Any, kind: str | None = None) -> tuple[np.ndarray, str]:
    """Validate one modality's raw array (and optional type); returns float32 data and its type."""
    problem = modality_name_problem(name)
    if problem is not None:
        raise DataError(problem)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        value, kind = value
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
        raise DataError(f"modality {name!r} could not be read as an array: {exc}") from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"modality {name!r} must be numeric, got dtype {array.dtype}; encode it first "
                        f"(text as embedding vectors, categories as one-hot columns)")
    if array.ndim == 1:
        array = array[:, None]
    if kind is None:
        kind = _infer_type(array)
    if kind not in MODALITY_TYPES:
        hint = close_matches(kind, MODALITY_TYPES, n=1)
        raise DataError(f"modality {name!r} has unknown type {kind!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" Types: {', '.join(MODALITY_TYPES)}")
    _check_shape(name, kind, array)
    if array.shape[0] == 0 or array[0].size == 0:
        raise DataError(f"modality {name!r} is empty (shape {array.shape}); give at least one sample and "
                        f"one feature, or leave the modality out")
    return array.astype(np.float32, copy=False), kind


_SCAN_ROWS = 65536


def is_memory_mapped(array: Any) -> bool:
    """Whether ``array``'s memory is a mapped file (``np.load(..., mmap_mode='r')``, or a view of one)."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def _missing_rows(name: str, array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Boolean 'present' mask; an all-NaN row is missing, a partly-NaN row an error."""
    flat = array.reshape(len(array), -1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape[0] != len(array):
            raise DataError(f"mask for modality {name!r} has {mask.shape[0]} rows, data has {len(array)}; "
                            f"give one True/False per sample")
        flat = np.where(mask[:, None], flat, 0.0)  # values of rows marked missing are never used
    inf_rows, all_nan, partial = (np.zeros(len(flat), dtype=bool) for _ in range(3))
    for start in range(0, len(flat), _SCAN_ROWS):  # in blocks: a memory-mapped file is never loaded whole
        block = np.asarray(flat[start:start + _SCAN_ROWS])
        inf_rows[start:start + len(block)] = np.isinf(block).any(axis=1)
        nan = np.isnan(block)
        all_nan[start:start + len(block)] = nan.all(axis=1)
        partial[start:start + len(block)] = nan.any(axis=1) & ~nan.all(axis=1)
    if inf_rows.any():
        rows = np.flatnonzero(inf_rows)
        raise DataError(f"modality {name!r} has infinite values in {len(rows)} rows (first: row {rows[0]}); "
                        f"clip or replace them")
    if partial.any():
        rows = np.flatnonzero(partial)
        raise DataError(f"modality {name!r} has {len(rows)} rows with some but not all values NaN "
                        f"(first: row {rows[0]}); impute them, or set the whole row to NaN to mark "
                        f"the modality missing for that sample")
    present = ~all_nan
    return present if mask is None else present & mask


def label_array(labels: Any) -> np.ndarray:
    """Labels as an array of one entry per sample; a scalar or ragged input is a `DataError`."""
    if isinstance(labels, (list, tuple)):  # numpy would turn [1, "a"] into strings silently
        _check_object_labels(np.array(labels, dtype=object))
    try:
        y = np.asarray(labels)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise DataError(f"labels could not be read as an array ({exc}); give one label per sample") from exc
    if y.ndim == 0:
        raise DataError(f"labels must hold one value per sample, got a single value {y.item()!r}")
    return y


def _check_object_labels(y: np.ndarray) -> None:
    """Labels of mixed Python objects: refuse missing values and a mix of text and numbers."""
    values = y.ravel().tolist() if y.ndim == 1 else []  # nested lists (multilabel rows) are checked later
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        raise DataError(f"labels are missing (None) for {len(missing)} samples, first at rows "
                        f"{missing[:5]}: drop those samples or give them a label")
    kinds = sorted({"text" if isinstance(v, (str, bytes, np.str_)) else type(v).__name__ for v in values})
    if "text" in kinds and len(kinds) > 1:
        raise DataError(f"labels mix types ({', '.join(kinds)}): give every label the same type, for example "
                        f"strings (np.asarray(labels).astype(str))")


def encode_labels(labels: Any, task_type: str, num_classes: int | None = None,
                  n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate labels for a task; returns the encoded targets and the class values (or None)."""
    y = label_array(labels)
    if n_samples is not None and len(y) != n_samples:
        raise DataError(f"labels have {len(y)} rows but the modalities have {n_samples} samples; "
                        f"give one label per sample, in the same order")
    if task_type == "regression":
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"regression labels must be numeric, got dtype {y.dtype}")
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise DataError("regression labels contain NaN or infinite values; drop those samples")
        return (y[:, None] if y.ndim == 1 else y), None
    if task_type == "multilabel":
        if y.ndim != 2:
            raise DataError(f"multilabel labels must be a 0/1 matrix (n, labels), got shape {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise DataError("multilabel labels must contain only 0 and 1")
        if num_classes is not None and y.shape[1] != num_classes:
            raise DataError(f"num_classes={num_classes} but labels have {y.shape[1]} columns")
        return y.astype(np.float32), np.arange(y.shape[1])
    if y.ndim != 1:
        raise DataError(f"classification labels must be one value per sample, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError("labels contain NaN or infinite values; drop those samples or impute labels")
        if not np.equal(np.mod(y, 1), 0).all():
            raise DataError("classification labels must be class values (integers or strings), "
                            "got non-integer floats; did you mean task_type='regression'?")
        y = y.astype(np.int64)
    if np.issubdtype(y.dtype, np.integer):
        if num_classes is not None:
            bad = (y < 0) | (y >= num_classes)
            if bad.any():
                raise DataError(f"labels out of range: num_classes={num_classes} needs labels in "
                                f"0..{num_classes - 1}, found {sorted(set(y[bad].tolist()))[:5]}")
            return y.astype(np.int64), np.arange(num_classes)
        classes = np.unique(y)  # any integers: -1/1 labels are classes like any other
        if classes.size < 2:
            raise DataError(f"classification needs at least 2 classes, labels hold {classes.size}")
        if classes[0] == 0 and classes[-1] == classes.size - 1:  # already 0..K-1
            return y.astype(np.int64), classes
        return np.searchsorted(classes, y).astype(np.int64), classes
    if y.dtype == object:
        _check_object_labels(y)
    classes, encoded = np.unique(y, return_inverse=True)
    if num_classes is not None and classes.size > num_classes:
        raise DataError(f"num_classes={num_classes} but labels hold {classes.size} distinct values")
    return encoded.astype(np.int64), classes



def encode_training_labels(labels: Any, task_type: str, num_classes: int | None = None,
                           n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """`encode_labels` for the labels a model trains on, where ``num_classes`` must match them.

    Training labels that hold fewer classes than ``num_classes`` would give probability columns
    for classes no sample has (``num_classes=10`` on 5 classes: 10 columns, 5 never learnable), so
    that is an error here; held-out labels may lack classes and go through `encode_labels`.
    """
    targets, classes = encode_labels(labels, task_type, num_classes, n_samples)
    if task_type == "classification" and num_classes is not None and classes is not None:
        present = np.unique(targets)
        if present.size != num_classes:
            values = ", ".join(map(repr, classes[present][:10].tolist())) + (", ..." if present.size > 10 else "")
            raise DataError(f"num_classes={num_classes} but the labels hold {present.size} classes ({values}): "
                            f"set num_classes={present.size}, or leave it out to infer it from the labels")
    return targets, classes

@attrs.define
class MultimodalDataset:
    """Several modalities of the same samples, with per-sample presence masks and labels."""

    arrays: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    specs: dict[str, ModalitySpec]
    labels: np.ndarray | None = None
    #: Each modality's column names when the data came as one DataFrame (`modalbag.data.frames`):
    #: how ``predict`` reads the modalities from a table again. None for arrays given per modality.
    columns: dict[str, list[str]] | None = None

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any], labels: Any = None, *,
                    masks: Mapping[str, Any] | None = None) -> MultimodalDataset:
        """Build from ``{name: array | (array, type)}``; validates shapes, counts and values."""
        if not isinstance(data, Mapping) or not data:
            raise DataError("give the modalities as a non-empty mapping {name: array}")
        masks = dict(masks or {})
        unknown = set(masks) - set(data)
        if unknown:
            raise DataError(f"masks given for unknown modalities: {sorted(unknown)}")
        arrays, present, specs = {}, {}, {}
        for name, value in data.items():
            array, kind = as_modality_array(name, value)
            present[name] = _missing_rows(name, array, masks.get(name))
            if not present[name].all():  # missing rows hold zeros, so no NaN reaches an encoder
                array = np.where(_broadcast(present[name], array), array, 0.0).astype(np.float32)
            # a complete memory-mapped array stays on disk: trainers stream it batch by batch
            arrays[name] = array if is_memory_mapped(array) else np.ascontiguousarray(array)
            specs[name] = ModalitySpec(name, kind, array.shape[1:])
        counts = {name: len(a) for name, a in arrays.items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"modalities have different sample counts: {counts}; every modality must "
                            f"have one row per sample (use NaN rows for samples that lack it)")
        n = next(iter(counts.values()))
        y = None if labels is None else label_array(labels)
        if y is not None and len(y) != n:
            raise DataError(f"labels have {len(y)} rows but the modalities have {n} samples; "
                            f"give one label per sample, in the same order")
        return cls(arrays, present, specs, y)

    @property
    def n_samples(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def presence(self) -> np.ndarray:
        """(n_samples, n_modalities) boolean matrix, columns in `names` order."""
        return np.stack([self.masks[n] for n in self.names], axis=1)


def _broadcast(mask: np.ndarray, array: np.ndarray) -> np.ndarray:
    return mask.reshape((-1,) + (1,) * (array.ndim - 1))


def prediction_inputs(data: Mapping[str, Any], specs: Mapping[str, ModalitySpec]) -> MultimodalDataset:
    """Validate new data against the training modalities; absent modalities become all-missing."""
    if not isinstance(data, Mapping) or not data:
        raise DataError("give prediction data as a non-empty mapping {name: array}")
    for name in data:
        if name not in specs:
            hint = close_matches(name, specs, n=1)
            raise DataError(f"unknown modality {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                            + f" The ensemble was trained on: {', '.join(specs)}")
    typed = {}
    for name, value in data.items():
        array = np.asarray(value[0] if isinstance(value, tuple) else value)
        if array.ndim == 1:
            array = array[:, None]
        if tuple(array.shape[1:]) != specs[name].shape:
            raise DataError(f"modality {name!r} has per-sample shape {tuple(array.shape[1:])}, "
                            f"but the ensemble was trained on {specs[name].shape}")
        typed[name] = (array, specs[name].type)
    ds = MultimodalDataset.from_arrays(typed)
    n = ds.n_samples
    for name, spec in specs.items():
        if name not in ds.arrays:
            ds.arrays[name] = np.zeros((n, *spec.shape), dtype=np.float32)
            ds.masks[name] = np.zeros(n, dtype=bool)
            ds.specs[name] = spec
    ds.arrays = {name: ds.arrays[name] for name in specs}
    ds.masks = {name: ds.masks[name] for name in specs}
    ds.specs = dict(specs)
    return ds


def complete_rows(rows: np.ndarray, masks: Mapping[str, np.ndarray], modalities: Sequence[str]) -> np.ndarray:
    """The rows among ``rows`` that have every one of ``modalities``."""
    if len(rows) == 0:
        return rows
    keep = np.all([masks[m][rows] for m in modalities], axis=0)
    return rows[keep]



__all__ = ["MultimodalDataset", "complete_rows", "encode_labels", "encode_training_labels", "prediction_inputs"]
