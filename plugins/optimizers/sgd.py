"""``sgd``: stochastic gradient descent with (Nesterov) momentum, for well-tuned fast training."""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative


@attrs.frozen(kw_only=True)
class SGDOptions:
    momentum: float = attrs.field(default=0.9, validator=non_negative, metadata={
        "help": "Momentum factor (0: plain SGD)."})
    nesterov: bool = attrs.field(default=True, metadata={
        "help": "Nesterov momentum; needs momentum > 0 and dampening = 0."})
    dampening: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Dampening of the momentum: each new gradient enters the momentum buffer times (1 - dampening)."})
    foreach: bool = attrs.field(default=True, metadata={
        "help": "One multi-tensor kernel per update instead of one per parameter."})

    def __attrs_post_init__(self) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")


def build(params: Any, config: Any, options: SGDOptions) -> Any:
    import torch

    return torch.optim.SGD(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                           momentum=options.momentum, nesterov=options.nesterov, dampening=options.dampening, foreach=options.foreach)


@hookimpl
def modalbag_register_optimizers(register: Register) -> None:
    register("sgd", build, options=SGDOptions, summary="SGD with momentum and optional Nesterov acceleration")
