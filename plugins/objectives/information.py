"""``information``: a variational information bottleneck on the fused representation, plus diversity.

A stochastic encoder q(z | f) = N(mu(f), diag sigma(f)^2) on the fused representation f, and a
predictor from z, trained with the VIB objective (Alemi et al., 2017)::

    L_vib = E_q[ task_loss(c(z), y) ] + beta * KL( q(z | f) || N(0, I) )

so f keeps what predicts y and little else. Diversity: for each pair of modality embeddings, the
squared Frobenius norm of their cross-correlation matrix over the rows where both are present (each
modality standardised over the rows where it is present; Barlow-Twins-style off-diagonal
redundancy, Zbontar et al., 2021), averaged over pairs and divided by E^2::

    L = L_vib + lambda_div * mean_{i<j} || C(e_i, e_j) ||_F^2 / E^2

The decorrelation term needs two modalities (rows without both weigh nothing); VIB runs on any bag.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.denoising.objectives import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.denoising.ops import cross_correlation_penalty, gaussian_bottleneck
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, positive


@attrs.frozen(kw_only=True)
class InformationOptions:
    ib_beta: float = attrs.field(default=1e-3, validator=non_negative, metadata={
        "help": "Weight beta of the KL term that pulls the bottleneck q(z | fused) toward N(0, I) "
                "(0: the task loss through z only)."})
    bottleneck_dim: int = attrs.field(default=32, validator=positive, metadata={
        "help": "Size of the stochastic bottleneck z."})
    decorrelation_weight: float = attrs.field(default=1.0, validator=non_negative, metadata={
        "help": "Weight of the cross-correlation penalty between pairs of modality embeddings (0 disables; "
                "needs two modalities)."})


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



class Information:
    name = "information"
    min_modalities = 1
    #: Trains on the task loss: a standalone `AdvancedCrossModalDenoisingLoss.forward` without
    #: ``target`` raises instead of silently adding no term.
    needs_target = True

    def __init__(self, config: Any, options: InformationOptions):
        self.options = options
        self._pair_weights: dict[tuple[int, torch.device], torch.Tensor] = {}

    def build(self, spec: RepresentationSpec) -> nn.Module:
        return Bottleneck(spec.embedding_dim, self.options.bottleneck_dim, spec.n_outputs)

    def pair_weights(self, m: int, device: torch.device) -> torch.Tensor:
        """(M, M): 1 / (number of pairs) above the diagonal, so the penalty is the mean over pairs."""
        key = (m, device)
        if key not in self._pair_weights:
            upper = torch.ones(m, m, device=device).triu(diagonal=1)
            self._pair_weights[key] = upper / upper.sum()
        return self._pair_weights[key]

    def loss(self, module: Bottleneck, ctx: DenoisingContext) -> ObjectiveOutput | None:
        if ctx.target is None:
            return None
        z, kl = gaussian_bottleneck(module.stats(ctx.fused))
        loss = _task_loss(ctx.task_type, module.predict(z).float(), ctx.target) + self.options.ib_beta * kl
        metrics = {"kl": kl.detach()}
        m = ctx.embeddings.shape[1]
        if m > 1 and self.options.decorrelation_weight > 0:
            redundancy = cross_correlation_penalty(ctx.embeddings, ctx.masks, self.pair_weights(m, ctx.masks.device))
            loss = loss + self.options.decorrelation_weight * redundancy
            metrics["redundancy"] = redundancy.detach()
        return ObjectiveOutput(loss, metrics)


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("information", Information, options=InformationOptions,
             summary="Variational information bottleneck on the fused representation + decorrelation")
