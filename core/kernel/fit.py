"""The state of one learner's fit, shared with the run hooks.

Plugins keep their per-fit state behind typed keys in `FitState.stash` (never loose attributes),
and steer the loop only through `FitState.control`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import numpy as np

from modalbag.kernel.records import EpochRecord, LearnerSpec

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


def training_seed(random_state: int, bag_seed: int) -> int:
    """The seed of one learner's fit: a hash of the training ``random_state`` and its bag's seed.

    The bags (rows, modalities, bag seeds) come from the ensemble's seed; the training seed then
    changes every learner's initialisation and data order without changing its bag. A 31-bit value,
    which every library's seed accepts.
    """
    return int(np.random.SeedSequence([int(random_state), int(bag_seed)]).generate_state(1)[0] & 0x7FFFFFFF)


@attrs.define(eq=False)
class FitState:
    """One learner's fit in progress. ``model``/``optimizer`` are set by neural trainers only.

    ``seed`` seeds the fit's own randomness (initialisation, data order, a model's random state):
    `training_seed` of the training ``random_state`` and the bag's seed, so that both matter.
    """

    spec: LearnerSpec
    bag: Any
    seed: int = 0
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
    #: Batches per epoch and this batch's index in its epoch (set by neural trainers each step).
    steps_per_epoch: int = 0
    batch_in_epoch: int = 0
    #: Set by a plugin that defers this batch's optimizer step (accumulation): the trainer then does
    #: not advance the learning-rate schedule. The trainer resets it before every step.
    deferred_step: bool = False
    #: Global gradient norms (0-d tensors, before clipping) of this epoch's clipped steps: the norm
    #: comes free with clipping; `gradient_norm_metrics` summarises them once per epoch.
    grad_norms: list[Any] = attrs.field(factory=list, repr=False)
    #: Set by neural trainers before `modalbag_fit_ready`: ``trial_steps(n)`` times ``n`` real training
    #: steps and undoes them (see that hook); None for trainers without steps.
    trial_steps: Callable[[int], float] | None = attrs.field(default=None, repr=False)

    def clip_gradients(self) -> None:
        """Clip the global gradient norm of the optimizer's parameters to ``gradient_clipping``."""
        if not self.gradient_clipping:
            return
        import torch

        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if params:
            norm = torch.nn.utils.clip_grad_norm_(params, self.gradient_clipping, foreach=True)
            self.grad_norms.append(norm.detach())

    def gradient_norm_metrics(self) -> dict[str, float]:
        """``grad_norm`` (mean), ``grad_norm_max`` and ``optimizer_steps`` (how many) over this epoch's
        clipped optimizer steps, then forget them.

        One host synchronisation per epoch; empty when no step measured a norm (clipping off).
        """
        if not self.grad_norms:
            return {}
        import torch

        norms = torch.stack([n.float().cpu() for n in self.grad_norms])
        self.grad_norms.clear()
        return {"grad_norm": float(norms.mean()), "grad_norm_max": float(norms.max()),
                "optimizer_steps": float(len(norms))}

    def default_step(self) -> None:
        """Clip the global gradient norm, step the optimizer and zero the gradients."""
        self.clip_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


__all__ = ["Control", "FitState", "Stash", "StashKey", "training_seed"]
