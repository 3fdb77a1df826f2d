"""``reconstruction``: predict each modality's representation from the others.

For a target modality t, an attention over the *other* present modalities j forms a context c_t;
a decoder turns it into a prediction of t's embedding and, one depth lower, of t's encoder's hidden
layer. One linear map of each embedding gives both its value v_j and its attention logit for every
target, s_jt (a learned query per target, folded into the key map). With sg() the stop-gradient::

    a_jt = softmax_j( s_jt ) over present j != t,        c_t = sum_j a_jt v_j
    d(c_t) = W_2 ReLU(W_1 c_t + b_t) + b_2                (b_t: which modality to decode)
    L = mean_t [ ||d(c_t) - sg(e_t)||^2 + lambda_cos * (1 - cos(d(c_t), sg(e_t))) ]
      + mean_t [ ||D_t c_t - sg(LN(h_t))||^2 ]                        (hidden depth)

over rows where t and at least one other modality are present. The stop-gradient on the target
(as in BYOL / SimSiam) keeps the encoders from collapsing to a constant to make prediction trivial;
the gradient reaches every *source* encoder, which learns what its modality says about the others.
Masked-modality prediction in this form follows cross-modal masked modelling (e.g. M3AE, 2022).

Every target is computed at once in a handful of batched matmuls: the step cost is dominated by
the number of operators, not their size, at the batch sizes this runs at.
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
from modalbag.kernel.options import non_negative


@attrs.frozen(kw_only=True)
class ReconstructionOptions:
    reconstruction_cosine_weight: float = attrs.field(default=1.0, validator=non_negative, metadata={
        "help": "Weight of the (1 - cosine similarity) term added to the squared error of each predicted "
                "embedding (0: squared error only)."})
    reconstruction_depths: str = attrs.field(default="both", validator=attrs.validators.in_(("embedding", "both")),
                                             metadata={"help": "'embedding': predict each modality's embedding; "
                                                               "'both': also its encoder's hidden layer."})


class HiddenDecoders(nn.Module):
    """Linear decoders from a target's context to its encoder's hidden layer, one stacked weight per
    hidden width (encoders of one kind share a width, so there are usually one or two groups)."""

    def __init__(self, modalities: tuple[str, ...], hidden_dims: dict[str, int], embedding_dim: int):
        super().__init__()
        widths = sorted({hidden_dims[m] for m in modalities})
        self.groups = [[i for i, m in enumerate(modalities) if hidden_dims[m] == w] for w in widths]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(len(g), embedding_dim, w) / embedding_dim ** 0.5) for g, w in zip(self.groups, widths))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(len(g), 1, w)) for g, w in zip(self.groups, widths))

    def errors(self, context: torch.Tensor, hidden: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
        """Per group: its modality indices and (G, B) squared errors against sg(LN(h))."""
        out = []
        for group, weight, bias in zip(self.groups, self.weights, self.biases):
            source = context.transpose(0, 1)
            source = source if len(group) == source.shape[0] else source[group]
            predicted = torch.baddbmm(bias, source, weight)  # (G, B, H)
            with torch.no_grad():
                target = torch.stack([hidden[i] for i in group])
                target = F.layer_norm(target, target.shape[-1:])
            out.append((group, embedding_error(predicted, target, cosine_weight=0.0)))
        return out


class ReconstructionModule(nn.Module):
    def __init__(self, spec: RepresentationSpec, depths: str):
        super().__init__()
        m, e = len(spec.modalities), spec.embedding_dim
        self.n_modalities = m
        self.project = nn.Linear(e, e + m)  # [value | attention logit per target]
        self.decode_in = nn.Linear(e, e)
        self.target_bias = nn.Parameter(torch.randn(m, e) / e ** 0.5)
        self.decode_out = nn.Linear(e, e)
        self.hidden_decoders = (HiddenDecoders(spec.modalities, dict(spec.hidden_dims), e)
                                if depths == "both" else None)
        self.register_buffer("is_self", torch.eye(m, dtype=torch.bool), persistent=False)

    def forward(self, embeddings: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted embeddings (B, M, E) and the contexts they were decoded from (B, M, E)."""
        value, scores = self.project(embeddings).split([embeddings.shape[-1], self.n_modalities], dim=-1)
        allowed = masks[:, :, None] & ~self.is_self  # (B, source j, target t)
        # finite fill: a target with no source gets uniform weights, zeroed by `allowed` (no NaN)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attention = torch.softmax(scores, dim=1) * allowed
        context = torch.bmm(attention.transpose(1, 2), value)  # (B, t, E)
        decoded = self.decode_out(F.relu(self.decode_in(context) + self.target_bias))
        return decoded, context


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
        predicted, context = module(ctx.embeddings, ctx.masks)
        with torch.no_grad():
            # rows where the target is present and at least one other modality is
            w = (ctx.masks & (ctx.masks.sum(dim=1, keepdim=True) >= 2)).float()  # (B, M); fp32 like the errors
            subset = len(ctx.targets_of) < w.shape[1]
            if subset:  # targets outside denoising_modalities weigh nothing
                w = w * torch.zeros(w.shape[1], dtype=w.dtype, device=w.device).index_fill_(
                    0, torch.tensor(ctx.targets_of, device=w.device), 1.0)
            count = w.sum(dim=0)  # (M,)
            per_row_weight = w / count.clamp_min(1.0)
            used = count > 0
            n_used = used.sum().clamp_min(1)
        per_row = embedding_error(predicted, ctx.embeddings, cosine_weight=self.options.reconstruction_cosine_weight)
        per_target = (per_row * per_row_weight).sum(dim=0)  # (M,) masked means; absent targets give 0
        metrics = per_target.detach()
        total = per_target.sum()
        if module.hidden_decoders is not None:  # one layer down
            hidden = [ctx.hidden[m] for m in ctx.modalities]
            for group, errors in module.hidden_decoders.errors(context, hidden):
                every = len(group) == w.shape[1]  # one width for all encoders: groups are in modality order
                hidden_terms = (errors * (per_row_weight.T if every else per_row_weight.T[group])).sum(dim=1)  # (G,)
                total = total + hidden_terms.sum()
                metrics = (metrics + hidden_terms.detach() if every else
                           metrics.index_add(0, torch.tensor(group, device=metrics.device), hidden_terms.detach()))
        return ObjectiveOutput(total / n_used, {ctx.modalities[t]: metrics[t] for t in ctx.targets_of})


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("reconstruction", Reconstruction, options=ReconstructionOptions,
             summary="Predict each modality's representation from the others (attention fusion, MSE + cosine)")
