"""What a modality is to every part of modalbag: its name, its type and the shape of one sample."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

MODALITY_TYPES = ("tabular", "text", "image", "sequence")


def modality_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a modality, or None.

    Names key the neural trainer's per-modality modules, and PyTorch refuses a module name that is
    empty or contains ``.``; refusing such names when the data arrive fails before any training
    instead of in every neural learner.
    """
    if not isinstance(name, str):
        return f"modality names must be strings, got {name!r} ({type(name).__name__})"
    if not name:
        return "a modality name is empty: give every modality a name"
    if "." in name:
        return (f"modality name {name!r} contains '.', which PyTorch module names cannot hold: rename it "
                f"(for example {name.replace('.', '_')!r})")
    return None


@attrs.frozen
class ModalitySpec:
    """One modality: its name, type and per-sample shape (``(768,)``, ``(3, 32, 32)``, ``(T, F)``)."""

    name: str
    type: str = attrs.field(validator=attrs.validators.in_(MODALITY_TYPES))
    shape: tuple[int, ...] = attrs.field(converter=tuple)

    @property
    def is_vector(self) -> bool:
        return len(self.shape) == 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


__all__ = ["MODALITY_TYPES", "ModalitySpec"]
