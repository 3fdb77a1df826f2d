"""``alignment``: contrastive alignment of modalities with InfoNCE (CLIP-style, symmetric).

Each modality m has a projection head g_m; z_m = g_m(e_m) / ||g_m(e_m)||. For each pair (i, j) of
modalities, over the B rows where both are present, the same sample is the positive and the other
B - 1 rows are the negatives::

    L_ij = 1/2 [ CE(z_i z_j^T / tau, I) + CE(z_j z_i^T / tau, I) ]        (van den Oord et al., 2018;
                                                                            Radford et al., 2021)

with tau = ``contrastive_temperature``. With ``hard_negative_beta`` > 0 the negatives are
re-weighted by exp(beta * sim) (normalised to mean 1), which emphasises hard negatives
(Robinson et al., 2021). The loss is multiplied by ``alignment_weight``; the recorded ``score`` is
top-1 retrieval accuracy (how often a sample's own other modality is its nearest neighbour).
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
class AlignmentOptions:
    projection_dim: int = attrs.field(default=64, validator=positive)
    hard_negative_beta: float = attrs.field(default=0.0, validator=non_negative)


class Projections(nn.Module):
    """One two-layer projection head per modality, evaluated for all modalities in batched einsums."""

    def __init__(self, n_modalities: int, embedding_dim: int, projection_dim: int):
        super().__init__()
        m, e, p = n_modalities, embedding_dim, projection_dim
        self.w1 = nn.Parameter(torch.randn(m, e, e) / e ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(m, e))
        self.w2 = nn.Parameter(torch.randn(m, e, p) / e ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(m, p))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        h = F.gelu(torch.einsum("bme,mef->bmf", embeddings, self.w1) + self.b1)
        return F.normalize(torch.einsum("bmf,mfp->bmp", h, self.w2) + self.b2, dim=-1)


class Alignment:
    name = "alignment"
    min_modalities = 2

    def __init__(self, config: Any, options: AlignmentOptions):
        self.options = options
        self.temperature = config.contrastive_temperature
        self.weight = config.alignment_weight

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return Projections(len(spec.modalities), spec.embedding_dim, self.options.projection_dim)

    def loss(self, module: Projections, ctx: DenoisingContext) -> ObjectiveOutput | None:
        """Masked InfoNCE for every pair at once (no boolean indexing, so no host sync)."""
        pairs = list(itertools.combinations(ctx.targets_of, 2))
        if not pairs:
            return None
        z = module(ctx.embeddings)  # (B, M, P), unit norm
        first = torch.tensor([i for i, _ in pairs], device=z.device)
        second = torch.tensor([j for _, j in pairs], device=z.device)
        zi, zj = z[:, first].transpose(0, 1), z[:, second].transpose(0, 1)  # (K, B, P)
        rows = (ctx.masks[:, first] & ctx.masks[:, second]).T  # (K, B)
        n = z.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        valid = rows[:, None, :] & rows[:, :, None] | eye
        sim = torch.bmm(zi, zj.transpose(1, 2)).masked_fill(~valid, float("-inf"))  # (K, B, B)
        logits = sim / self.temperature
        if self.options.hard_negative_beta > 0:
            off = valid & ~eye
            n_neg = off.sum(dim=2, keepdim=True).clamp_min(1)
            weights = torch.softmax((self.options.hard_negative_beta * sim.detach()).masked_fill(~off, float("-inf")),
                                    dim=2).nan_to_num(0.0) * n_neg
            logits = logits + torch.where(off, torch.log(weights.clamp_min(1e-12)), torch.zeros_like(logits))
        labels = torch.arange(n, device=z.device).expand(len(pairs), n)
        ce = (F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
              + F.cross_entropy(logits, labels, reduction="none"))  # both directions, (K, B)
        w = rows.float()
        count = w.sum(dim=1).clamp_min(1.0)
        loss = (0.5 * (ce * w).sum(dim=1) / count).mean()
        accuracy = (((sim.argmax(dim=2) == labels).float() * w).sum(dim=1) / count).mean()
        return ObjectiveOutput(self.weight * loss, {"score": accuracy})


@hookimpl
def modalbag_register_objectives(register: Any) -> None:
    register("alignment", Alignment, options=AlignmentOptions,
             summary="InfoNCE alignment between modality projections, optional hard-negative weighting")
