"""``reconstruction``: predict each modality's representation from the others.

For a target modality t, an attention over the *other* present modalities (a learned query per
target; keys and values from their embeddings) forms a context c_t, decoded to a prediction of t's
embedding and, one depth lower, of its encoder's hidden layer. With sg() the stop-gradient::

    L = mean_t [ ||d(c_t) - sg(e_t)||^2 + lambda_cos * (1 - cos(d(c_t), sg(e_t))) ]
      + mean_t [ ||d_h(c_t) - sg(LN(h_t))||^2 ]                       (hidden depth)

over rows where t and at least one other modality are present. The stop-gradient on the target
(as in BYOL / SimSiam) keeps the encoders from collapsing to a constant to make prediction trivial;
the gradient reaches every *source* encoder, which learns what its modality says about the others.
Masked-modality prediction in this form follows cross-modal masked modelling (e.g. M3AE, 2022).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.denoising import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.plugin_options import non_negative


@attrs.frozen(kw_only=True)
class ReconstructionOptions:
    reconstruction_cosine_weight: float = attrs.field(default=1.0, validator=non_negative)
    reconstruction_depths: str = attrs.field(default="both", validator=attrs.validators.in_(("embedding", "both")))


class ReconstructionModule(nn.Module):
    def __init__(self, spec: RepresentationSpec, depths: str):
        super().__init__()
        m, e = len(spec.modalities), spec.embedding_dim
        self.queries = nn.Parameter(torch.randn(m, e) / math.sqrt(e))
        self.key = nn.Linear(e, e, bias=False)
        self.value = nn.Linear(e, e)
        self.decoder = nn.Sequential(nn.Linear(2 * e, e), nn.GELU(), nn.Linear(e, e))
        self.hidden_decoders = nn.ModuleDict(
            {name: nn.Linear(e, spec.hidden_dims[name]) for name in spec.modalities} if depths == "both" else {})
        self.register_buffer("not_self", ~torch.eye(m, dtype=torch.bool), persistent=False)

    def forward(self, embeddings: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicted embeddings (B, M, E), the contexts (B, M, E), and which (row, target) had sources."""
        scores = torch.einsum("te,bje->btj", self.queries, self.key(embeddings)) / math.sqrt(embeddings.shape[-1])
        allowed = masks[:, None, :] & self.not_self[None]
        has_source = allowed.any(dim=-1)
        scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~has_source[..., None], 0.0)
        attention = torch.softmax(scores, dim=-1) * allowed
        context = torch.einsum("btj,bje->bte", attention, self.value(embeddings))
        queries = self.queries.expand(embeddings.shape[0], -1, -1)
        return self.decoder(torch.cat([context, queries], dim=-1)), context, has_source


def _hidden_errors(module: ReconstructionModule, ctx: DenoisingContext, targets: list[int],
                   context: torch.Tensor) -> torch.Tensor:
    """(B, T): ``||d_h(c_t) - sg(LN(h_t))||^2`` per row and target, one einsum per hidden width."""
    errors = torch.zeros(context.shape[0], len(targets), device=context.device, dtype=context.dtype)
    by_width: dict[int, list[int]] = {}
    for k, t in enumerate(targets):
        by_width.setdefault(ctx.hidden[ctx.modalities[t]].shape[-1], []).append(k)
    for width, ks in by_width.items():
        names = [ctx.modalities[targets[k]] for k in ks]
        decoders = [module.hidden_decoders[name] for name in names]
        weight = torch.stack([d.weight for d in decoders])  # (G, H, E)
        bias = torch.stack([d.bias for d in decoders])  # (G, H)
        source = context[:, [targets[k] for k in ks]]  # (B, G, E)
        predicted = torch.einsum("bge,ghe->bgh", source, weight) + bias
        hidden = torch.stack([ctx.hidden[name].detach() for name in names], dim=1)  # (B, G, H)
        hidden = F.layer_norm(hidden, (width,))
        errors[:, ks] = (predicted - hidden).pow(2).mean(-1)
    return errors


class Reconstruction:
    name = "reconstruction"
    min_modalities = 2

    def __init__(self, config: Any, options: ReconstructionOptions):
        self.options = options

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return ReconstructionModule(spec, self.options.reconstruction_depths)

    def loss(self, module: ReconstructionModule, ctx: DenoisingContext) -> ObjectiveOutput | None:
        if not ctx.targets_of:
            return None
        predicted, context, has_source = module(ctx.embeddings, ctx.masks)
        targets = list(ctx.targets_of)
        w = (ctx.masks & has_source).float()[:, targets]  # (B, T) masked means, no host sync
        pred, target = predicted[:, targets], ctx.embeddings[:, targets].detach()
        per_row = (pred - target).pow(2).mean(-1) + self.options.reconstruction_cosine_weight * (
            1 - F.cosine_similarity(pred, target, dim=-1))  # (B, T), every target at once
        if module.hidden_decoders:  # one layer down, batched over targets whose encoders share a width
            per_row = per_row + _hidden_errors(module, ctx, targets, context)
        count = w.sum(dim=0)
        per_target = (per_row * w).sum(dim=0) / count.clamp_min(1.0)
        used = (count > 0).float()
        metrics = {ctx.modalities[t]: per_target[k].detach() for k, t in enumerate(targets)}
        return ObjectiveOutput((per_target * used).sum() / used.sum().clamp_min(1.0), metrics)


@hookimpl
def modalbag_register_objectives(register: Any) -> None:
    register("reconstruction", Reconstruction, options=ReconstructionOptions,
             summary="Predict each modality's representation from the others (attention fusion, MSE + cosine)")
