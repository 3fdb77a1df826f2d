"""Negative correlation learning inside one neural learner (``ncl_members``, ``ncl_lambda``).

Liu & Yao (1999) train M networks simultaneously, each on its task loss minus a penalty that
rewards disagreeing with the ensemble's mean output F̄:

    loss_i = task_loss(F_i) - lambda * (F_i - F̄)**2,   the ensemble's output F̄ = mean_i F_i

modalbag's bags are trained apart (other rows, other modalities), so the members that learn together
are the heads of one learner: ``ncl_members`` task heads read the fused representation of one shared
set of modality encoders. Sharing the encoders, the scalers and the fusion gate is a choice:

- the encoders hold most of a learner's parameters and its compute (CNNs, transformers), so M
  members cost about one network, not M (a shared trunk with negatively correlated heads is also how
  deep NCL is usually built, e.g. Shi et al., 2018);
- one fused representation keeps every mechanism that reads it unchanged: domain adaptation's
  CORAL and DANN terms, mixup in the fused space, the denoising objectives' fusion of modality
  subsets and test-time augmentation all see the same ``fused`` as without NCL;
- the members still differ where the decision is made (each head has its own initial weights and
  its own hidden layer), and the penalty's gradient also reaches the shared encoders, which learn
  features that let the heads disagree where disagreement does not cost task loss.

The step's loss is the members' mean of the above: ``mean_i task_loss(F_i) - lambda * ambiguity``,
where the ambiguity ``mean_i |F_i - F̄|²`` is measured in the members' outputs: probability vectors
for classification (squared distances summed over the classes: the Brier score's ambiguity term),
probabilities per label for multilabel and standardised values for regression (both averaged over
the outputs, as their losses are). For squared-error losses, ``mean_i loss_i = loss(F̄) + ambiguity``,
so lambda = 1 trains the mean alone and lambda in [0, 1] keeps the loss bounded below; probabilities
keep the ambiguity bounded for classification too.

The learner's prediction is the members' mean output. It is returned as the network's ``logits``
(log of the mean probability for classification, the logit of the mean probability per label for
multilabel, the mean for regression), so validation, prediction, the safety report's FGSM attack and
adversarial training all see the ensemble of heads as one network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: how a head's logits become the output whose spread NCL rewards, per task type
OUTPUT_KINDS = {"classification": "softmax", "multilabel": "sigmoid", "regression": "identity"}


class MemberHeads(nn.Module):
    """``len(heads)`` task heads on one fused representation; ``forward`` is their mean output as logits."""

    def __init__(self, heads: Sequence[nn.Module], output: str):
        super().__init__()
        if output not in OUTPUT_KINDS.values():
            raise ValueError(f"output must be one of {sorted(OUTPUT_KINDS.values())}, got {output!r}")
        self.heads = nn.ModuleList(heads)
        self.output = output

    def members(self, fused: torch.Tensor) -> torch.Tensor:
        """(M, B, K) logits, one row block per member."""
        return torch.stack([head(fused) for head in self.heads])

    def outputs(self, member_logits: torch.Tensor) -> torch.Tensor:
        """(M, B, K) member outputs in fp32: probabilities, or values for regression."""
        z = member_logits.float()
        if self.output == "softmax":
            return torch.softmax(z, dim=-1)
        if self.output == "sigmoid":
            return torch.sigmoid(z)
        return z

    def combine(self, member_logits: torch.Tensor) -> torch.Tensor:
        """(B, K) logits of the members' mean output (computed in fp32, stably in log space)."""
        z = member_logits.float()
        log_m = math.log(z.shape[0])
        if self.output == "softmax":  # log of the mean probability: softmax of it is that mean
            return torch.logsumexp(torch.log_softmax(z, dim=-1), dim=0) - log_m
        if self.output == "sigmoid":  # logit of the mean probability
            log_p = torch.logsumexp(nn.functional.logsigmoid(z), dim=0) - log_m
            log_q = torch.logsumexp(nn.functional.logsigmoid(-z), dim=0) - log_m
            return log_p - log_q
        return z.mean(dim=0)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.combine(self.members(fused))


def ambiguity(outputs: torch.Tensor, output: str) -> torch.Tensor:
    """``mean_i |F_i - F̄|²`` over members and rows of (M, B, K) outputs: summed over the classes of
    probability vectors (``output='softmax'``), averaged over the outputs otherwise."""
    spread = (outputs - outputs.mean(dim=0, keepdim=True)).square()
    per_row = spread.sum(dim=-1) if output == "softmax" else spread.mean(dim=-1)
    return per_row.mean()


def ncl_strength(options: Any, config: Any) -> tuple[float, str]:
    """``ncl_lambda``, or the config's ``ensemble_diversity_weight`` when that is > 0 (capped at 1,
    Liu & Yao's bound), else 0.5; with where it came from, for the fit's notes."""
    if options.ncl_lambda is not None:
        return float(options.ncl_lambda), "ncl_lambda"
    weight = float(getattr(config, "ensemble_diversity_weight", 0.0) or 0.0)
    if weight > 0:
        return min(1.0, weight), ("ensemble_diversity_weight" if weight <= 1.0
                                  else f"ensemble_diversity_weight={weight:g}, capped at 1")
    return 0.5, "default"


__all__ = ["OUTPUT_KINDS", "MemberHeads", "ambiguity", "ncl_strength"]
