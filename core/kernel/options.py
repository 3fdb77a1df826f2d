"""Reusable attrs validators for plugins' option classes (so every plugin words errors alike)."""

from __future__ import annotations

from typing import Any

import attrs


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be strictly between 0 and 1, got {value!r}")


def beta_pair(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if len(value) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in value):
        raise ValueError(f"{attribute.name} must be two numbers in [0, 1), got {value!r}")


__all__ = ["beta_pair", "fraction", "non_negative", "positive"]
