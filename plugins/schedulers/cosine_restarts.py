"""``cosine_restarts``: cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, 2017).

The rate follows a half cosine from its base value down to ``eta_min`` over ``T_max`` epochs
(``T_0`` is accepted as an alias), then restarts; each period is ``T_mult`` times the last.
Stepped after every batch with a fractional epoch, so the curve is smooth within an epoch.
"""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative


def _period(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{attribute.name} must be a whole number of epochs >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class CosineRestartsOptions:
    T_max: int | None = attrs.field(default=None, validator=_period, metadata={
        "help": "Length of the first cosine period, in epochs (None: a third of the epochs after warmup, "
                "at least 1)."})
    T_0: int | None = attrs.field(default=None, validator=_period, metadata={
        "help": "Alias of T_max (give one of the two)."})
    T_mult: int = attrs.field(default=2, validator=_period, metadata={
        "help": "Each period after a restart is this many times as long as the previous one (1: equal periods)."})
    eta_min: float = attrs.field(default=1e-6, validator=non_negative, metadata={
        "help": "Learning rate at the bottom of each cosine period."})

    def __attrs_post_init__(self) -> None:
        if self.T_max is not None and self.T_0 is not None and self.T_max != self.T_0:
            raise ValueError("T_max and T_0 both set and different: they are the same option, give one")


class CosineRestarts:
    def __init__(self, optimizer: Any, period_epochs: int, options: CosineRestartsOptions, steps_per_epoch: int):
        from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

        self.inner = CosineAnnealingWarmRestarts(optimizer, T_0=period_epochs, T_mult=options.T_mult,
                                                 eta_min=options.eta_min)
        self.steps_per_epoch = steps_per_epoch
        self.steps = 0

    def after_batch(self) -> None:
        self.steps += 1
        self.inner.step(self.steps / self.steps_per_epoch)

    def after_epoch(self, val_loss: float | None) -> None:
        pass


def build(optimizer: Any, config: Any, options: CosineRestartsOptions, steps_per_epoch: int) -> CosineRestarts:
    # default first period: a third of the post-warmup epochs, so the default 2x periods fit the run
    remaining = max(1, config.epochs - config.warmup_epochs)
    period = options.T_max or options.T_0 or max(1, remaining // 3)
    return CosineRestarts(optimizer, period, options, steps_per_epoch)


@hookimpl
def modalbag_register_schedulers(register: Register) -> None:
    register("cosine_restarts", build, options=CosineRestartsOptions,
             summary="Cosine annealing with warm restarts (SGDR), stepped per batch")
