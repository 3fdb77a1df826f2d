"""``information``: a variational information bottleneck on the fused representation, plus diversity.

A stochastic encoder q(z | f) = N(mu(f), diag sigma(f)^2) on the fused representation f, and a
predictor from z, trained with the VIB objective (Alemi et al., 2017)::

    L_vib = E_q[ task_loss(c(z), y) ] + beta * KL( q(z | f) || N(0, I) )

so f keeps what predicts y and little else. Diversity: for each pair of modality embeddings, the
squared Frobenius norm of their cross-correlation matrix over the batch (Barlow-Twins-style
off-diagonal redundancy, Zbontar et al., 2021), averaged over pairs and divided by E^2::

    L = L_vib + lambda_div * mean_{i<j} || C(e_i, e_j) ||_F^2 / E^2

The decorrelation term needs two modalities (rows without both weigh nothing); VIB runs on any bag.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.denoising import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.plugin_options import non_negative, positive


@attrs.frozen(kw_only=True)
class InformationOptions:
    ib_beta: float = attrs.field(default=1e-3, validator=non_negative)
    bottleneck_dim: int = attrs.field(default=32, validator=positive)
    decorrelation_weight: float = attrs.field(default=1.0, validator=non_negative)


class Bottleneck(nn.Module):
    def __init__(self, embedding_dim: int, bottleneck_dim: int, n_outputs: int):
        super().__init__()
        self.stats = nn.Linear(embedding_dim, 2 * bottleneck_dim)
        self.predict = nn.Linear(bottleneck_dim, n_outputs)


def _task_loss(task_type: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task_type == "classification":
        return F.cross_entropy(logits, target)
    if task_type == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


def cross_correlation_penalty(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per pair p: ||C_p||_F^2 / E^2 of the cross-correlation between standardised a_p and b_p over
    rows weighted by w_p. ``a``, ``b``: (B, P, E); ``w``: (B, P). Every pair in one batched pass."""
    n = w.sum(0).clamp_min(1.0)[:, None]  # (P, 1)
    w = w[..., None]

    def standardise(x: torch.Tensor) -> torch.Tensor:
        mean = (x * w).sum(0) / n
        std = (((x - mean) ** 2 * w).sum(0) / n + 1e-6).sqrt()  # eps inside: finite gradient at zero variance
        return (x - mean) / std * w

    c = torch.einsum("bpe,bpf->pef", standardise(a), standardise(b)) / n[..., None]
    return c.pow(2).sum(dim=(1, 2)) / (c.shape[1] * c.shape[2])


class Information:
    name = "information"
    min_modalities = 1

    def __init__(self, config: Any, options: InformationOptions):
        self.options = options

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return Bottleneck(spec.embedding_dim, self.options.bottleneck_dim, spec.n_outputs)

    def loss(self, module: Bottleneck, ctx: DenoisingContext) -> ObjectiveOutput | None:
        if ctx.target is None:
            return None
        mu, log_var = module.stats(ctx.fused).chunk(2, dim=-1)
        log_var = log_var.clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(dim=-1).mean()
        loss = _task_loss(ctx.task_type, module.predict(z), ctx.target) + self.options.ib_beta * kl
        metrics = {"kl": kl.detach()}
        pairs = list(itertools.combinations(range(len(ctx.modalities)), 2))
        if pairs and self.options.decorrelation_weight > 0:
            first, second = (list(ix) for ix in zip(*pairs, strict=True))
            both = (ctx.masks[:, first] & ctx.masks[:, second]).float()
            redundancy = cross_correlation_penalty(ctx.embeddings[:, first], ctx.embeddings[:, second], both).mean()
            loss = loss + self.options.decorrelation_weight * redundancy
            metrics["redundancy"] = redundancy.detach()
        return ObjectiveOutput(loss, metrics)


@hookimpl
def modalbag_register_objectives(register: Any) -> None:
    register("information", Information, options=InformationOptions,
             summary="Variational information bottleneck on the fused representation + decorrelation")
