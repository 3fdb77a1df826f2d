"""The attrs validators for option values, one set for the training config and every plugin's options,
so that each check means one thing and every error is worded alike."""

from __future__ import annotations

from typing import Any

import attrs


def _number(attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{attribute.name} must be a number, got {value!r}")


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
    if len(value) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in value):
        raise ValueError(f"{attribute.name} must be two numbers in [0, 1), got {value!r}")


__all__ = ["at_least_0_below_1", "beta_pair", "non_negative", "positive", "strictly_between_0_and_1"]
