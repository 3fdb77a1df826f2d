"""Helpers the report plugins share (private: not a plugin, no entry point)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.errors import ConfigError, DataError


def switch(model: Any, value: bool | None, key: str) -> bool:
    """A report switch: the value passed to the report, else the training config's ``key``."""
    if value is not None:
        return bool(value)
    config = getattr(model, "training_config", None)
    return bool(getattr(config, key, False)) if config is not None else False


def label(modalities: Iterable[str]) -> str:
    """A scenario's name: its modalities joined by '+'."""
    return "+".join(modalities)


def float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def series(name: str, value: Any, n: int) -> np.ndarray:
    """A 1-D float series of ``n`` finite values (one per held-out sample), or a clear error."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numbers, one per sample: {exc}") from exc
    if len(array) != n:
        raise DataError(f"{name} has {len(array)} values but the data has {n} samples; give one per sample, "
                        f"in the same (time) order")
    if not np.isfinite(array).all():
        raise DataError(f"{name} holds NaN or infinite values; drop those samples or fill them")
    return array


def levels(instance: Any, attribute: attrs.Attribute, value: Sequence[float]) -> None:
    """attrs validator: a non-empty sequence of numbers >= 0."""
    if not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in value):
        raise ValueError(f"{attribute.name} must be a non-empty list of numbers >= 0, got {value!r}")


def rates(instance: Any, attribute: attrs.Attribute, value: Sequence[float]) -> None:
    """attrs validator: increasing numbers in [0, 1)."""
    if (not value or any(not isinstance(v, (int, float)) or not 0 <= v < 1 for v in value)
            or list(value) != sorted(set(value))):
        raise ValueError(f"{attribute.name} must be increasing numbers in [0, 1), got {value!r}")


def tuple_of_floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def require_task(model: Any, report: str, allowed: Sequence[str]) -> None:
    if model.task_type not in allowed:
        raise ConfigError(f"the {report} report needs a {' or '.join(allowed)} model, this one is "
                          f"{model.task_type!r}")


def boolean_rows(name: str, value: Any, n: int) -> np.ndarray:
    """A boolean flag per sample (``cold_start=``), or a clear error."""
    array = np.asarray(value)
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise DataError(f"{name} must be True/False per sample, got values {np.unique(array)[:5].tolist()}")
        array = array.astype(bool)
    array = array.reshape(-1)
    if len(array) != n:
        raise DataError(f"{name} has {len(array)} flags but the data has {n} samples; give one per sample")
    return array


def modality_name(name: str | None, known: Mapping[str, Any], option: str) -> str | None:
    if name is None or name in known:
        return name
    from modalbag.errors import close_matches

    hint = close_matches(name, known, n=1)
    raise ConfigError(f"{option}={name!r} is not a modality of this ensemble"
                      + (f"; did you mean {hint[0]!r}?" if hint else "") + f" Modalities: {', '.join(known)}")


def scored_rows(scorer: Any, model: Any, values: np.ndarray) -> np.ndarray:
    """Per-row ``values`` for the rows ``scorer`` scores: all of them on held-out data; given one per
    training row for out-of-fold scores (``scorer.rows``), those rows' values."""
    return values if scorer.rows is None else values[scorer.rows]


def rows_expected(scorer: Any, model: Any) -> int:
    """How many per-row values an input must give: one per held-out row, or one per training row."""
    return scorer.n if scorer.rows is None else model.dataset.n_samples
