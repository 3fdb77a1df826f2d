"""``adamw``: Adam with decoupled weight decay, the production default (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.plugin_options import beta_pair, positive


@attrs.frozen(kw_only=True)
class AdamWOptions:
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), converter=tuple, validator=beta_pair)
    eps: float = attrs.field(default=1e-8, validator=positive)
    amsgrad: bool = False
    foreach: bool = True  # one multi-tensor kernel per update instead of one per parameter


def build(params: Any, config: Any, options: AdamWOptions) -> Any:
    import torch

    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                             betas=options.betas, eps=options.eps, amsgrad=options.amsgrad, foreach=options.foreach)


@hookimpl
def modalbag_register_optimizers(register: Any) -> None:
    register("adamw", build, options=AdamWOptions, summary="AdamW: Adam with decoupled weight decay")
