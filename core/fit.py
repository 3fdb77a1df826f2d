"""The state of one learner's fit, shared with the run hooks.

Plugins keep their per-fit state behind typed keys in `FitState.stash` (never loose attributes),
and steer the loop only through `FitState.control`.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

from modalbag.records import EpochRecord, LearnerSpec

T = TypeVar("T")


class StashKey(Generic[T]):
    """A typed key: plugins create one module-level key each, so their state cannot collide."""

    __slots__ = ()


class Stash:
    """A mapping from `StashKey` to values of that key's type."""

    def __init__(self) -> None:
        self._data: dict[StashKey[Any], Any] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return self._data[key]

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        return self._data.get(key, default)

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return self._data.setdefault(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data


@attrs.define
class Control:
    """What run hooks may change about the loop: nothing else is theirs to touch."""

    should_stop: bool = False
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        self.should_stop, self.stop_reason = True, reason


@attrs.define(eq=False)
class FitState:
    """One learner's fit in progress. ``model``/``optimizer`` are set by neural trainers only."""

    spec: LearnerSpec
    bag: Any
    model: Any = None
    optimizer: Any = None
    aux_modules: Any = None
    epoch: int = 0
    step: int = 0
    records: list[EpochRecord] = attrs.field(factory=list)
    control: Control = attrs.field(factory=Control)
    stash: Stash = attrs.field(factory=Stash)
    notes: list[str] = attrs.field(factory=list)
    gradient_clipping: float | None = None
    checkpoint: str | None = None

    def default_step(self) -> None:
        """Clip the global gradient norm, step the optimizer and zero the gradients."""
        import torch

        if self.gradient_clipping:
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.gradient_clipping, foreach=True)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


__all__ = ["Control", "FitState", "Stash", "StashKey"]
