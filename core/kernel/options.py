"""Validators for plugins' option classes: the config's own set (`modalbag.config.validators`), so
that every plugin words its errors like the training config does."""

from __future__ import annotations

from modalbag.config.validators import (
    at_least,
    at_least_0_below_1,
    beta_pair,
    finite,
    integer_at_least,
    non_negative,
    positive,
    seed,
    strictly_between_0_and_1,
)

__all__ = ["at_least", "at_least_0_below_1", "beta_pair", "finite", "integer_at_least", "non_negative", "positive", "seed",
           "strictly_between_0_and_1"]
