"""The learning-rate schedule contract, and the linear warmup the engine puts in front of it."""

from __future__ import annotations

from typing import Any, Protocol


class Schedule(Protocol):
    """What a scheduler plugin returns: told after every optimizer step and every epoch."""

    def after_batch(self) -> None: ...

    def after_epoch(self, val_loss: float | None) -> None: ...


class ConstantSchedule:
    """``scheduler_type='none'``: the learning rate never changes."""

    def after_batch(self) -> None:
        pass

    def after_epoch(self, val_loss: float | None) -> None:
        pass


class LinearWarmup:
    """Ramp every group's learning rate linearly up to its base value, then hand over.

    The inner schedule is built first (so it records the base rates) and only starts counting once
    warmup ends, so its own timeline (restart periods, plateau patience) begins after warmup.
    """

    def __init__(self, optimizer: Any, inner: Schedule, warmup_steps: int):
        self.optimizer, self.inner, self.warmup_steps = optimizer, inner, max(1, warmup_steps)
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.step = 0
        self._scale(1 / self.warmup_steps)

    def _scale(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor

    @property
    def warming_up(self) -> bool:
        return self.step < self.warmup_steps

    def after_batch(self) -> None:
        if self.warming_up:
            self.step += 1
            self._scale(min(1.0, (self.step + 1) / self.warmup_steps))
        else:
            self.inner.after_batch()

    def after_epoch(self, val_loss: float | None) -> None:
        if not self.warming_up:
            self.inner.after_epoch(val_loss)


__all__ = ["ConstantSchedule", "LinearWarmup", "Schedule"]
