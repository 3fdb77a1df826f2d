"""Validators for plugins' option classes: the config's own set (`modalbag.config.validators`), so
that every plugin words its errors like the training config does."""

from __future__ import annotations

from modalbag.config.validators import (
    at_least_0_below_1,
    beta_pair,
    non_negative,
    positive,
    strictly_between_0_and_1,
)

__all__ = ["at_least_0_below_1", "beta_pair", "non_negative", "positive", "strictly_between_0_and_1"]
