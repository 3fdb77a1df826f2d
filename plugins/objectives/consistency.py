"""``consistency``: the same prediction from all modalities and from a random subset of them.

Modality dropout: each present modality is dropped with probability r (at least one is kept); the
prediction from the subset is pulled toward the (stop-gradient) prediction from every modality::

    L = KL( sg(p(y | all)) || p(y | subset) )          classification (softmax), batch mean
      = BCE( p(y | subset), sg(p(y | all)) )           multilabel
      = || f(subset) - sg(f(all)) ||^2                  regression

The drop rate r (``consistency_drop_rate``) follows a curriculum when ``drop_rate_curriculum`` is
on (by default, when ``denoising_strategy`` is 'curriculum'): it rises linearly from 0 to r over the
first half of the epochs, so early training sees mild corruption. Recorded ``score``: how often the
subset's prediction agrees with the full one. Related: R-Drop (Liang et al., 2021), modality
dropout for robust multimodal models (e.g. Neverova et al., 2015).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch.nn import functional as F

from modalbag import hookimpl
from modalbag.denoising import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.plugin_options import fraction


@attrs.frozen(kw_only=True)
class ConsistencyOptions:
    consistency_drop_rate: float = attrs.field(default=0.5, validator=fraction)
    drop_rate_curriculum: bool | None = None


class Consistency:
    name = "consistency"
    min_modalities = 2

    def __init__(self, config: Any, options: ConsistencyOptions):
        self.rate = options.consistency_drop_rate
        curriculum = options.drop_rate_curriculum
        self.curriculum = config.denoising_strategy == "curriculum" if curriculum is None else curriculum
        self.ramp_epochs = max(1, config.epochs // 2)

    def build(self, spec: RepresentationSpec) -> None:
        return None  # reuses the learner's own fusion and head

    def drop_rate(self, epoch: int) -> float:
        return self.rate * min(1.0, epoch / self.ramp_epochs) if self.curriculum else self.rate

    def loss(self, module: None, ctx: DenoisingContext) -> ObjectiveOutput | None:
        rate = self.drop_rate(ctx.epoch)
        if rate <= 0:
            return None
        droppable = torch.zeros(ctx.masks.shape[1], dtype=torch.bool, device=ctx.masks.device)
        droppable[list(ctx.targets_of)] = True
        keep_draw = torch.rand(ctx.masks.shape, device=ctx.masks.device)
        subset = ctx.masks & ~(droppable & (keep_draw < rate))
        empty = ~subset.any(dim=1)  # keep one present modality at random where all were dropped
        rescue = torch.where(ctx.masks, keep_draw, torch.full_like(keep_draw, -1.0)).argmax(dim=1)
        subset[empty, rescue[empty]] = True
        logits = ctx.model.head(ctx.model.fuse(ctx.embeddings, subset))
        full = ctx.logits.detach()
        if ctx.task_type == "classification":
            loss = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(full, dim=1), log_target=True,
                            reduction="batchmean")
            agree = (logits.argmax(dim=1) == full.argmax(dim=1)).float().mean()
        elif ctx.task_type == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, torch.sigmoid(full))
            agree = ((logits > 0) == (full > 0)).float().mean()
        else:
            loss = F.mse_loss(logits, full)
            agree = torch.exp(-loss.detach())
        return ObjectiveOutput(loss, {"score": agree, "drop_rate": torch.tensor(rate)})


@hookimpl
def modalbag_register_objectives(register: Any) -> None:
    register("consistency", Consistency, options=ConsistencyOptions,
             summary="KL between predictions from all modalities and from random modality subsets")
