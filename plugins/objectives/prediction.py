"""``prediction``: predict every modality's representation from every other one, hardest pairs first.

A head h_ij per ordered pair (i -> j) maps e_i to a prediction of sg(e_j); over rows with both::

    l_ij = mean( 1 - cos(h_ij(e_i), sg(e_j)) )
    L    = sum_ij w_ij * l_ij,   w = softmax(sg(l) / T)           (difficulty weighting)

so pairs that are harder to predict get more weight (T = ``prediction_temperature``; a large T
gives equal weights). Unlike ``reconstruction``, which predicts a modality from all the others
fused, this learns each pairwise map, so a single present modality carries information about each
missing one. Recorded ``similarity``: the mean cosine similarity reached over pairs.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.denoising import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.plugin_options import positive


@attrs.frozen(kw_only=True)
class PredictionOptions:
    prediction_temperature: float = attrs.field(default=1.0, validator=positive)


class PairHeads(nn.Module):
    """One two-layer head per ordered pair (i -> j), evaluated for all pairs in two batched einsums."""

    def __init__(self, n_modalities: int, embedding_dim: int):
        super().__init__()
        m, e = n_modalities, embedding_dim
        self.w1 = nn.Parameter(torch.randn(m, m, e, e) / e ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(m, m, e))
        self.w2 = nn.Parameter(torch.randn(m, m, e, e) / e ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(m, m, e))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, M, E) -> (B, M_source, M_target, E) predictions."""
        h = F.gelu(torch.einsum("bie,ijef->bijf", embeddings, self.w1) + self.b1)
        return torch.einsum("bijf,ijfg->bijg", h, self.w2) + self.b2


class CrossModalPrediction:
    name = "prediction"
    min_modalities = 2

    def __init__(self, config: Any, options: PredictionOptions):
        self.temperature = options.prediction_temperature

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return PairHeads(len(spec.modalities), spec.embedding_dim)

    def loss(self, module: PairHeads, ctx: DenoisingContext) -> ObjectiveOutput | None:
        m = len(ctx.modalities)
        target_ok = torch.zeros(m, dtype=torch.bool, device=ctx.masks.device)
        target_ok[list(ctx.targets_of)] = True
        pair_ok = ~torch.eye(m, dtype=torch.bool, device=ctx.masks.device) & target_ok[None, :]
        predicted = module(ctx.embeddings)
        target = ctx.embeddings.detach()[:, None, :, :]
        per_row = 1 - F.cosine_similarity(predicted, target.expand_as(predicted), dim=-1)  # (B, Mi, Mj)
        w = (ctx.masks[:, :, None] & ctx.masks[:, None, :] & pair_ok).float()  # masked means: no host sync
        count = w.sum(dim=0)
        losses = (per_row * w).sum(dim=0) / count.clamp_min(1.0)  # (Mi, Mj)
        has_rows = count > 0
        weights = torch.softmax((losses.detach() / self.temperature).masked_fill(~has_rows, float("-inf")).flatten(),
                                dim=0).nan_to_num(0.0).view_as(losses)
        similarity = 1 - (losses.detach() * has_rows).sum() / has_rows.sum().clamp_min(1)
        return ObjectiveOutput((weights * losses).sum(), {"similarity": similarity})


@hookimpl
def modalbag_register_objectives(register: Any) -> None:
    register("prediction", CrossModalPrediction, options=PredictionOptions,
             summary="Pairwise cross-modal prediction heads with a cosine loss, weighted by difficulty")
