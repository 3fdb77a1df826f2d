"""What a plugin registered: a named factory of one kind, its options class and where it came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs


@attrs.frozen
class PluginSource:
    """Where a plugin came from: an entry point of an installed distribution, or a direct call."""

    entry_point: str
    value: str
    distribution: str
    version: str

    def describe(self) -> str:
        return f"{self.distribution} {self.version} ({self.entry_point} = {self.value})"


@attrs.frozen
class Component:
    """A named factory that a plugin registered: what the engine builds when the config names it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type | None
    summary: str
    source: PluginSource

    @property
    def qualified_name(self) -> str:
        return f"{self.kind}.{self.name}"



class Register(Protocol):
    """What a registration hook is called with: ``register(name, factory, *, options=None, summary="")``
    adds one named component of the hook's kind (``options``: its attrs options class; ``summary``:
    one line for ``modalbag plugins``)."""

    def __call__(self, name: str, factory: Callable[..., Any], *, options: type | None = None,
                 summary: str = "") -> None: ...


__all__ = ["Component", "PluginSource", "Register"]
