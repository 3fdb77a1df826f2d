"""What a modality is to every part of modalbag: its name, its type and the shape of one sample."""

from __future__ import annotations

import attrs
import numpy as np

MODALITY_TYPES = ("tabular", "text", "image", "sequence")


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
