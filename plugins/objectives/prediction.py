"""``prediction``: predict every modality's representation from every other one, hardest pairs first.

A head h_ij per ordered pair (i -> j) maps e_i to a prediction of sg(e_j) (a hidden layer per
source, shared by its pairs, then an output layer per pair); over rows with both::

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
from modalbag.denoising.objectives import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.denoising.ops import embedding_error
from modalbag.kernel import Register
from modalbag.kernel.options import positive


@attrs.frozen(kw_only=True)
class PredictionOptions:
    prediction_temperature: float = attrs.field(default=1.0, validator=positive, metadata={
        "help": "Temperature T of the softmax over the pairs' losses that weights them: a small T puts the "
                "weight on the hardest pairs, a large T weighs them equally."})


class PairHeads(nn.Module):
    """Per source modality i a hidden layer, and per ordered pair (i -> j) an output layer, all
    evaluated in two batched matmuls: h_i = ReLU(W_i e_i + b_i), prediction of j = V_ij h_i + c_ij."""

    def __init__(self, n_modalities: int, embedding_dim: int):
        super().__init__()
        m, e = n_modalities, embedding_dim
        self.w1 = nn.Parameter(torch.randn(m, e, e) / e ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(m, 1, e))
        self.w2 = nn.Parameter(torch.randn(m, e, m * e) / e ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(m, 1, m * e))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, M, E) -> (M_source, B, M_target, E) predictions."""
        b, m, e = embeddings.shape
        h = F.relu(torch.baddbmm(self.b1, embeddings.transpose(0, 1), self.w1))
        return torch.baddbmm(self.b2, h, self.w2).view(m, b, m, e)


class CrossModalPrediction:
    name = "prediction"
    min_modalities = 2

    def __init__(self, config: Any, options: PredictionOptions):
        self.temperature = options.prediction_temperature
        self._pair_masks: dict[tuple[tuple[int, ...], int, torch.device], torch.Tensor] = {}

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return PairHeads(len(spec.modalities), spec.embedding_dim)

    def pair_mask(self, targets: tuple[int, ...], m: int, device: torch.device) -> torch.Tensor:
        """(M, 1, M): ordered pairs i != j whose target j is in ``targets``; made once per learner."""
        key = (targets, m, device)
        if key not in self._pair_masks:
            target_ok = torch.zeros(m, dtype=torch.bool, device=device)
            target_ok[list(targets)] = True
            self._pair_masks[key] = (~torch.eye(m, dtype=torch.bool, device=device) & target_ok)[:, None, :]
        return self._pair_masks[key]

    def loss(self, module: PairHeads, ctx: DenoisingContext) -> ObjectiveOutput | None:
        predicted = module(ctx.embeddings)  # (Mi, B, Mj, E)
        with torch.no_grad():
            m = ctx.masks.shape[1]
            w = (ctx.masks.T[:, :, None] & ctx.masks[None] & self.pair_mask(ctx.targets_of, m, ctx.masks.device))
            w = w.float()  # (Mi, B, Mj) rows with both modalities of the pair; fp32 like the errors, under autocast too
            count = w.sum(dim=1)  # (Mi, Mj)
            has_rows = count > 0
            w = w / count.clamp_min(1.0)[:, None, :]
        errors = embedding_error(predicted, ctx.embeddings[None], squared_weight=0.0)  # (Mi, B, Mj) 1 - cos
        losses = (w * errors).sum(dim=1)  # (Mi, Mj) masked means; 0 where a pair has no rows
        with torch.no_grad():
            weights = torch.softmax((losses / self.temperature).masked_fill(~has_rows, float("-inf")).flatten(),
                                    dim=0).nan_to_num(0.0).view_as(losses)
            similarity = 1 - (losses * has_rows).sum() / has_rows.sum().clamp_min(1)
        return ObjectiveOutput((weights * losses).sum(), {"similarity": similarity})


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("prediction", CrossModalPrediction, options=PredictionOptions,
             summary="Pairwise cross-modal prediction heads with a cosine loss, weighted by difficulty")
