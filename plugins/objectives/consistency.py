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
from modalbag.denoising.objectives import DenoisingContext, ObjectiveOutput, RepresentationSpec
from modalbag.kernel import Register
from modalbag.kernel.options import strictly_between_0_and_1


@attrs.frozen(kw_only=True)
class ConsistencyOptions:
    consistency_drop_rate: float = attrs.field(default=0.5, validator=strictly_between_0_and_1, metadata={
        "help": "Probability of dropping each present modality (of those the objectives act on) to form the "
                "subset, strictly between 0 and 1; at least one modality is kept."})
    drop_rate_curriculum: bool | None = attrs.field(default=None, metadata={
        "help": "Raise the drop rate linearly from 0 over the first half of the epochs (None: only when "
                "denoising_strategy is 'curriculum')."})


class Consistency:
    name = "consistency"
    min_modalities = 2

    def __init__(self, config: Any, options: ConsistencyOptions):
        self.rate = options.consistency_drop_rate
        curriculum = options.drop_rate_curriculum
        self.curriculum = config.denoising_strategy == "curriculum" if curriculum is None else curriculum
        self.ramp_epochs = max(1, config.epochs // 2)
        self._masks: dict[tuple[tuple[int, ...], int, torch.device], torch.Tensor] = {}
        self._rate: tuple[float, torch.Tensor] | None = None

    def build(self, spec: RepresentationSpec) -> None:
        return None  # reuses the learner's own fusion and head

    def drop_rate(self, epoch: int) -> float:
        return self.rate * min(1.0, epoch / self.ramp_epochs) if self.curriculum else self.rate

    def loss(self, module: None, ctx: DenoisingContext) -> ObjectiveOutput | None:
        rate = self.drop_rate(ctx.epoch)
        if rate <= 0:
            return None
        with torch.no_grad():  # the subset: a mask, drawn without host syncs
            masks = ctx.masks
            droppable = self._droppable(ctx.targets_of, masks.shape[1], masks.device)
            draw = torch.rand(masks.shape, device=masks.device)
            subset = masks & ~(droppable & (draw < rate))
            # where everything was dropped, keep the present modality with the highest draw
            rescue = F.one_hot(torch.where(masks, draw, -1.0).argmax(dim=1), masks.shape[1]).bool()
            subset |= rescue & ~subset.any(dim=1, keepdim=True)
        if ctx.fusion_scores is not None:
            fused = ctx.model.fuse(ctx.embeddings, subset, scores=ctx.fusion_scores)
        else:
            fused = ctx.model.fuse(ctx.embeddings, subset)
        logits = ctx.model.head(fused).float()  # the divergence is reduced in fp32 under autocast too
        full = ctx.logits.detach().float()
        if ctx.task_type == "classification":
            loss = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(full, dim=1), log_target=True,
                            reduction="batchmean")
        elif ctx.task_type == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, torch.sigmoid(full))
        else:
            loss = F.mse_loss(logits, full)
        with torch.no_grad():
            if ctx.task_type == "classification":
                agree = (logits.argmax(dim=1) == full.argmax(dim=1)).float().mean()
            elif ctx.task_type == "multilabel":
                agree = ((logits > 0) == (full > 0)).float().mean()
            else:
                agree = torch.exp(-loss)
        return ObjectiveOutput(loss, {"score": agree, "drop_rate": self._rate_tensor(rate, masks.device)})

    def _droppable(self, targets: tuple[int, ...], m: int, device: torch.device) -> torch.Tensor:
        key = (targets, m, device)
        if key not in self._masks:
            droppable = torch.zeros(m, dtype=torch.bool, device=device)
            droppable[list(targets)] = True
            self._masks[key] = droppable
        return self._masks[key]

    def _rate_tensor(self, rate: float, device: torch.device) -> torch.Tensor:
        if self._rate is None or self._rate[0] != rate or self._rate[1].device != device:
            self._rate = (rate, torch.tensor(rate, device=device))
        return self._rate[1]


@hookimpl
def modalbag_register_objectives(register: Register) -> None:
    register("consistency", Consistency, options=ConsistencyOptions,
             summary="KL between predictions from all modalities and from random modality subsets")
