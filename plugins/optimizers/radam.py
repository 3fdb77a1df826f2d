"""``radam``: Rectified Adam, which damps the early adaptive step so it needs no warmup (Liu et al., 2020)."""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import beta_pair, positive


@attrs.frozen(kw_only=True)
class RAdamOptions:
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple, validator=beta_pair, metadata={
        "help": "Decay rates of the running averages of the gradient and of its square: two numbers in [0, 1)."})
    eps: float = attrs.field(default=1e-8, validator=positive, metadata={
        "help": "Added to the denominator of the update for numerical stability."})
    decoupled_weight_decay: bool = attrs.field(default=True, metadata={
        "help": "Apply weight_decay to the weights directly, as AdamW does; false adds it to the gradient "
                "as an L2 penalty."})
    foreach: bool = attrs.field(default=True, metadata={
        "help": "One multi-tensor kernel per update instead of one per parameter."})


def build(params: Any, config: Any, options: RAdamOptions) -> Any:
    import torch

    return torch.optim.RAdam(params, lr=config.learning_rate, weight_decay=config.weight_decay, betas=options.betas,
                             eps=options.eps, decoupled_weight_decay=options.decoupled_weight_decay, foreach=options.foreach)


@hookimpl
def modalbag_register_optimizers(register: Register) -> None:
    register("radam", build, options=RAdamOptions, summary="Rectified Adam: robust without warmup")
