"""Progressive-learning stages as the config gives them: parsed and checked, every problem named.

The config checks them before training; `modalbag.training.progressive` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

STAGE_KEYS = frozenset({"epochs", "frozen_layers", "lr_multiplier", "fine_tuning", "name"})


@attrs.frozen
class Stage:
    epochs: int
    frozen_layers: tuple[str, ...] = ()
    lr_multiplier: float = 1.0
    fine_tuning: bool = False
    name: str = ""


def parse_stages(raw: Sequence[Mapping[str, Any]]) -> tuple[list[Stage], list[str]]:
    """Stages from config data, and every problem found (each naming the stage and the fix)."""
    stages, issues = [], []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            issues.append(f"progressive_stages[{i}] must be a mapping like {{'epochs': 20, 'frozen_layers': "
                          f"['encoder'], 'lr_multiplier': 0.1}}, got {entry!r}")
            continue
        unknown = set(entry) - STAGE_KEYS
        if unknown:
            issues.append(f"progressive_stages[{i}] has unknown keys {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}")
        epochs, mult = entry.get("epochs"), entry.get("lr_multiplier", 1.0)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            issues.append(f"progressive_stages[{i}].epochs must be a whole number >= 1, got {epochs!r}")
            continue
        if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult <= 0:
            issues.append(f"progressive_stages[{i}].lr_multiplier must be a number > 0, got {mult!r}")
            continue
        layers = entry.get("frozen_layers", ())
        if isinstance(layers, str) or not all(isinstance(x, str) for x in layers):
            issues.append(f"progressive_stages[{i}].frozen_layers must be a list of module names, got {layers!r}")
            continue
        stages.append(Stage(epochs, tuple(layers), float(mult), bool(entry.get("fine_tuning", False)),
                            str(entry.get("name", f"stage {i + 1}"))))
    return stages, issues


__all__ = ["STAGE_KEYS", "Stage", "parse_stages"]
