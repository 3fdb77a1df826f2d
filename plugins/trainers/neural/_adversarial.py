"""Adversarial training of the fusion network (``adversarial_training``): FGSM and PGD in input space.

Each training batch gets an adversarial copy: every modality's inputs moved, within an L-infinity
ball of ``adversarial_epsilon`` standard deviations of each feature (the unit of the safety report's
attack), in the direction that raises the task loss most (Goodfellow et al., 2015, for one step;
Madry et al., 2018, for ``adversarial_steps`` > 1, each step 2.5 * epsilon / steps and the result
projected back into the ball). The step's loss is then

    (1 - adversarial_ratio) * loss(clean batch) + adversarial_ratio * loss(adversarial copy)

The perturbation is searched with the network in training mode and under the step's autocast, with
gradients taken for the inputs only (no parameter gradient is left behind by the search).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from modalbag.plugins.trainers.neural._network import FusionNetwork, Standardize


def feature_scales(model: FusionNetwork) -> dict[str, torch.Tensor]:
    """Each modality's per-feature (per-channel for images) standard deviation, from its scaler."""
    out = {}
    for name, scaler in model.scalers.items():
        found = [m for m in scaler.modules() if isinstance(m, Standardize)]
        out[name] = found[0].std if found else torch.ones(())
    return out


def adversarial_inputs(net: Callable[..., Mapping[str, torch.Tensor]], loss_fn: nn.Module,
                       inputs: Mapping[str, torch.Tensor], masks: torch.Tensor, target: torch.Tensor,
                       radius: Mapping[str, torch.Tensor], steps: int,
                       autocast: Callable[[], Any] | None = None) -> dict[str, torch.Tensor]:
    """The inputs moved within ``radius`` (per modality, broadcastable) to raise ``loss_fn``."""
    clean = {m: t.detach() for m, t in inputs.items()}
    step = {m: r * (2.5 / steps if steps > 1 else 1.0) for m, r in radius.items()}
    adv = dict(clean)
    for _ in range(steps):
        adv = {m: t.clone().requires_grad_(True) for m, t in adv.items()}
        ctx = autocast() if autocast is not None else None
        with ctx if ctx is not None else contextlib.nullcontext():
            loss = loss_fn(net(adv, masks)["logits"].float(), target)
        grads = torch.autograd.grad(loss, list(adv.values()))
        adv = {m: (a.detach() + step[m] * g.sign()) for (m, a), g in zip(adv.items(), grads, strict=True)}
        adv = {m: torch.minimum(torch.maximum(a, clean[m] - radius[m]), clean[m] + radius[m])
               for m, a in adv.items()}
    return adv


__all__ = ["adversarial_inputs", "feature_scales"]
