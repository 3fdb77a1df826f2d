"""The attrs validators for option values, one set for the training config and every plugin's options,
so that each check means one thing and every error is worded alike."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

#: Seeds numpy and torch both accept: 0 <= seed < 2**32.
SEED_LIMIT = 2 ** 32


def _number(attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


def finite(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A finite number (no NaN, no infinity)."""
    _number(attribute, value)


def at_least(bound: float) -> Callable[[Any, attrs.Attribute, Any], None]:
    """A finite number ``>= bound``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        _number(attribute, value)
        if value < bound:
            raise ValueError(f"{attribute.name} must be >= {bound}, got {value!r}")

    return check


def integer_at_least(bound: int) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An integer ``>= bound`` (a count or a size: 2.5 is refused, not truncated)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{attribute.name} must be an integer, got {value!r}")
        if value < bound:
            raise ValueError(f"{attribute.name} must be >= {bound}, got {value!r}")

    return check


def seed(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An integer seed numpy and torch accept: ``0 <= value < 2**32``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{attribute.name} must be an integer seed, got {value!r}")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{attribute.name} must be in [0, 2**32) (numpy's seed range), got {value!r}")


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``value > 0``."""
    _number(attribute, value)
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``value >= 0``."""
    _number(attribute, value)
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def strictly_between_0_and_1(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``0 < value < 1``: a factor or share that must change something and cannot be all."""
    _number(attribute, value)
    if not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be strictly between 0 and 1, got {value!r}")


def at_least_0_below_1(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``0 <= value < 1``: a rate or share where 0 turns the feature off (dropout, a held-out share)."""
    _number(attribute, value)
    if not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be in [0, 1), got {value!r}")


def beta_pair(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Two numbers in ``[0, 1)`` (Adam-style betas)."""
    if len(value) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                  for b in value):
        raise ValueError(f"{attribute.name} must be two numbers in [0, 1), got {value!r}")


__all__ = ["SEED_LIMIT", "at_least", "at_least_0_below_1", "beta_pair", "finite", "integer_at_least",
           "non_negative", "positive", "seed", "strictly_between_0_and_1"]
