"""``onecycle``: the one-cycle policy (Smith & Topin, 2018): up to ``max_lr``, then down far below.

It warms up by itself (the first ``pct_start`` of all steps), so the engine adds no linear warmup.
``max_lr`` defaults to the configured ``learning_rate``.
"""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import positive, strictly_between_0_and_1


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        positive(instance, attribute, value)


@attrs.frozen(kw_only=True)
class OneCycleOptions:
    max_lr: float | None = attrs.field(default=None, validator=_optional_positive, metadata={
        "help": "Peak learning rate of the cycle (None: learning_rate)."})
    pct_start: float = attrs.field(default=0.3, validator=strictly_between_0_and_1, metadata={
        "help": "Share of all training steps spent rising to max_lr, strictly between 0 and 1."})
    anneal_strategy: str = attrs.field(default="cos", validator=attrs.validators.in_(("cos", "linear")), metadata={
        "help": "Shape of the rise and the fall: 'cos' or 'linear'."})
    div_factor: float = attrs.field(default=25.0, validator=positive, metadata={
        "help": "The cycle starts at max_lr / div_factor."})
    final_div_factor: float = attrs.field(default=1e4, validator=positive, metadata={
        "help": "The cycle ends at its starting rate / final_div_factor."})


class OneCycle:
    def __init__(self, optimizer: Any, total_steps: int, max_lr: float, options: OneCycleOptions):
        from torch.optim.lr_scheduler import OneCycleLR

        self.total_steps = total_steps
        self.steps = 0
        self.inner = OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=options.pct_start,
                                anneal_strategy=options.anneal_strategy, div_factor=options.div_factor,
                                final_div_factor=options.final_div_factor, cycle_momentum=False)

    def after_batch(self) -> None:
        if self.steps < self.total_steps - 1:  # OneCycleLR raises past its last step
            self.steps += 1
            self.inner.step()

    def after_epoch(self, val_loss: float | None) -> None:
        pass


def build(optimizer: Any, config: Any, options: OneCycleOptions, steps_per_epoch: int) -> OneCycle:
    return OneCycle(optimizer, max(2, config.epochs * steps_per_epoch), options.max_lr or config.learning_rate, options)


build.handles_warmup = True  # type: ignore[attr-defined]


@hookimpl
def modalbag_register_schedulers(register: Register) -> None:
    register("onecycle", build, options=OneCycleOptions, summary="One-cycle policy: warm up to max_lr, anneal down")
