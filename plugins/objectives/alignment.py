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
from modalbag.denoising.objectives import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.denoising.ops import symmetric_info_nce
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, positive

_EXCLUDED = 1e4  # logits of excluded samples: exp(-1e4) is 0 in every float type, and -2e4 fits fp16


@attrs.frozen(kw_only=True)
class AlignmentOptions:
    projection_dim: int = attrs.field(default=64, validator=positive, metadata={
        "help": "Output size of each modality's projection head, the space the InfoNCE similarities are "
                "computed in."})
    hard_negative_beta: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "Hard-negative weighting: each negative is weighted by exp(beta * cosine similarity), "
                "normalised to mean 1 (0: all negatives weigh the same)."})


class Projections(nn.Module):
    """One two-layer projection head per modality, all evaluated in two batched matmuls."""

    def __init__(self, n_modalities: int, embedding_dim: int, projection_dim: int):
        super().__init__()
        m, e, p = n_modalities, embedding_dim, projection_dim
        self.w1 = nn.Parameter(torch.randn(m, e, e) / e ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(m, 1, e))
        self.w2 = nn.Parameter(torch.randn(m, e, p) / e ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(m, 1, p))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, M, E) -> (M, B, P) unit-norm projections, modality-major for the pairwise products."""
        h = F.relu(torch.baddbmm(self.b1, embeddings.transpose(0, 1), self.w1))
        return F.normalize(torch.baddbmm(self.b2, h, self.w2), dim=-1)


class Alignment:
    name = "alignment"
    min_modalities = 2

    def __init__(self, config: Any, options: AlignmentOptions):
        self.options = options
        self.temperature = config.contrastive_temperature
        self.weight = config.alignment_weight
        self._pairs: dict[tuple[tuple[int, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return Projections(len(spec.modalities), spec.embedding_dim, self.options.projection_dim)

    def pairs(self, targets: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Index tensors of every pair's first and second modality, made once per learner."""
        key = (targets, device)
        if key not in self._pairs:
            combos = list(itertools.combinations(targets, 2))
            self._pairs[key] = (torch.tensor([i for i, _ in combos], dtype=torch.long, device=device),
                                torch.tensor([j for _, j in combos], dtype=torch.long, device=device))
        return self._pairs[key]

    def loss(self, module: Projections, ctx: DenoisingContext) -> ObjectiveOutput | None:
        """Masked InfoNCE for every pair at once (no boolean indexing, so no host sync)."""
        if len(ctx.targets_of) < 2:
            return None
        first, second = self.pairs(ctx.targets_of, ctx.masks.device)
        # (M, B, P), unit norm; the heads run in the autocast dtype, the B x B logits in fp32 (their
        # log-sum-exp needs the mantissa, and 1/temperature-scaled fp16 logits come close to overflow)
        z = module(ctx.embeddings).float()
        n = z.shape[1]
        with torch.no_grad():
            rows = (ctx.masks[:, first] & ctx.masks[:, second]).T  # (K, B) rows with both modalities
            w = rows.to(z.dtype)
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1.0) / len(first)
            # a sample without both modalities is neither a positive nor a negative: a large finite
            # penalty on its row and column (finite, so rows of absent samples stay NaN-free; they weigh 0)
            penalty = torch.where(rows, 0.0, -_EXCLUDED).to(z.dtype)
            excluded = penalty[:, :, None] + penalty[:, None, :]
        # (K, B, B): row b of modality i against column c of modality j, over the temperature
        logits = torch.baddbmm(excluded, z[first], z[second].transpose(1, 2), alpha=1.0 / self.temperature)
        if self.options.hard_negative_beta > 0:
            with torch.no_grad():
                eye = torch.eye(n, dtype=torch.bool, device=z.device)
                off = rows[:, None, :] & rows[:, :, None] & ~eye
                n_neg = off.sum(dim=2, keepdim=True).clamp_min(1)
                sim = logits * self.temperature
                weights = torch.softmax((self.options.hard_negative_beta * sim).masked_fill(~off, float("-inf")),
                                        dim=2).nan_to_num(0.0) * n_neg
                shift = torch.where(off, torch.log(weights.clamp_min(1e-12)), torch.zeros_like(sim))
            logits = logits + shift
        loss = symmetric_info_nce(logits, w)  # both directions, the diagonal as the positives
        with torch.no_grad():
            # a hit: the positive is the row's largest logit (amax is far cheaper than argmax here)
            hits = (logits.diagonal(dim1=1, dim2=2) >= logits.amax(dim=2)).to(w.dtype)
            accuracy = (hits * w).sum()
        return ObjectiveOutput(self.weight * loss, {"score": accuracy})


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("alignment", Alignment, options=AlignmentOptions,
             summary="InfoNCE alignment between modality projections, optional hard-negative weighting")
