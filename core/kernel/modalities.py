"""What a modality is to every part of modalbag: its name, its type and the shape of one sample."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from modalbag.errors import ConfigError

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


def resolve_modalities(option: str, wanted: Iterable[str], specs: Mapping[str, ModalitySpec]) -> tuple[str, ...]:
    """The modality names ``wanted`` means: each entry a modality's name, or a modality type standing
    for every modality of that type (the spec writes ``denoising_modalities=['text', 'image']``).

    A name wins over a type of the same spelling. An entry that is neither, or a type no modality
    has, is a `ConfigError` naming what the data holds: left alone it would match nothing and
    silently switch off what ``option`` drives.
    """
    out: list[str] = []
    unknown: list[str] = []
    for entry in wanted:
        matches = [entry] if entry in specs else [name for name, spec in specs.items() if spec.type == entry]
        if not matches:
            unknown.append(entry)
        out.extend(m for m in matches if m not in out)
    if unknown:
        held = ", ".join(f"{name} ({spec.type})" for name, spec in specs.items())
        raise ConfigError(f"{option} names {', '.join(map(repr, unknown))}, which is neither a modality nor the "
                          f"type of one in this data; use modality names or types of: {held}")
    return tuple(out)


__all__ = ["MODALITY_TYPES", "ModalitySpec", "resolve_modalities"]
