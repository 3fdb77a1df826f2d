"""Domain adaptation of the fusion network (``domain_adaptation``): CORAL and DANN on the fused representation.

Each training step also draws a batch of the target domain's unlabelled rows (``target_data=``, the
learner's modalities only) and runs it through the network; the fused representations of the two
batches are then pulled together by one of

- ``coral`` (Sun & Saenko, 2016, "Deep CORAL"): the squared Frobenius distance between the source
  and target covariance matrices of the fused representation, divided by ``4 d^2``, added to the
  loss times ``domain_adaptation_weight`` (default 1). Computed in fp32 with autocast off, whatever the step's
  precision: a covariance of half-precision activations loses the small entries it compares.
- ``dann`` (Ganin et al., 2016): a small domain classifier on the fused representation, trained
  with binary cross-entropy to tell source from target, behind a gradient-reversal layer, so the
  encoders receive the classifier's gradient negated and learn features it cannot separate. The
  reversal coefficient ramps from 0 to ``domain_adaptation_weight`` (default 0.3) as ``2 / (1 + exp(-10 p)) - 1``
  of the training progress ``p``, as in the paper.

The target rows of a step are drawn from a generator seeded by the fit's seed and the step number,
so a resumed fit and the cost probe (`TrainingLoop.trial_steps`) draw the same rows as an
uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modalbag.plugins.trainers.neural._batches import read_rows

#: The name of the DANN domain classifier in the network's ``aux`` modules (training-only, not saved).
DOMAIN_CLASSIFIER = "domain_classifier"


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||C_s - C_t||_F^2 / (4 d^2)`` of the (n, d) source and target features, in fp32 (autocast off)."""
    with torch.autocast(device_type=source.device.type, enabled=False):
        source, target = source.float(), target.float()
        d = source.shape[1]
        return (covariance(source) - covariance(target)).pow(2).sum() / (4.0 * d * d)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """The (d, d) unbiased covariance of the rows of ``x`` (n, d); zeros for a single row."""
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / max(1, x.shape[0] - 1)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def grad_reverse(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """The identity forward; the gradient times ``-coefficient`` backward (the DANN reversal layer)."""
    return _GradientReversal.apply(x, float(coefficient))


def reversal_coefficient(progress: float, weight: float) -> float:
    """DANN's schedule: ``weight * (2 / (1 + exp(-10 p)) - 1)`` for training progress ``p`` in [0, 1]."""
    p = min(1.0, max(0.0, progress))
    return weight * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


class DomainClassifier(nn.Module):
    """Source (0) or target (1) from the fused representation: one hidden layer, one logit."""

    def __init__(self, embedding_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(16, embedding_dim)
        self.body = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.body(fused).squeeze(-1)


def dann_loss(classifier: nn.Module, source: torch.Tensor, target: torch.Tensor, coefficient: float) -> torch.Tensor:
    """The domain classifier's binary cross-entropy on both batches, through the reversal layer."""
    features = grad_reverse(torch.cat([source, target]), coefficient)
    labels = torch.cat([torch.zeros(len(source), device=source.device), torch.ones(len(target), device=target.device)])
    return F.binary_cross_entropy_with_logits(classifier(features).float(), labels)


class TargetBatches:
    """The target rows that have any of the learner's modalities, as tensors on the training device;
    `draw` gives a step's batch."""

    def __init__(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray],
                 modalities: Sequence[str], device: torch.device, seed: int):
        present = np.any([np.asarray(masks[m]) for m in modalities], axis=0)
        self.rows = np.flatnonzero(present)
        x, mask = read_rows(arrays, masks, modalities, self.rows)
        self.x = {m: t.to(device) for m, t in x.items()}
        self.masks = mask.to(device)
        self.device, self.seed = device, int(seed)
        self.generator = torch.Generator()

    def __len__(self) -> int:
        return len(self.rows)

    def draw(self, size: int, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``size`` target rows drawn with replacement, the same for the same fit seed and ``step``."""
        self.generator.manual_seed((self.seed * 1_000_003 + step) % 2**63)
        idx = torch.randint(len(self.rows), (size,), generator=self.generator).to(self.device)
        return {m: t.index_select(0, idx) for m, t in self.x.items()}, self.masks.index_select(0, idx)


__all__ = ["DOMAIN_CLASSIFIER", "DomainClassifier", "TargetBatches", "coral_loss", "covariance", "dann_loss",
           "grad_reverse", "reversal_coefficient"]
