"""Batch-level regularisation of the neural trainer: modality dropout, mixup and CutMix.

All draw from torch's global generator, which the trainer seeds per bag, so runs repeat exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def drop_modalities(masks: torch.Tensor, rate: float | torch.Tensor) -> torch.Tensor:
    """Hide each present modality of each sample with probability ``rate`` (one for all, or a (M,)
    tensor: one per modality column), keeping at least one.

    Training on samples with modalities hidden is what keeps a fusion network accurate when they
    are missing at prediction time. A sample whose draw would hide everything keeps its mask.
    """
    if masks.shape[1] < 2 or (not isinstance(rate, torch.Tensor) and not rate):
        return masks
    kept = masks & (torch.rand(masks.shape, device=masks.device) >= rate)
    empty = ~kept.any(dim=1, keepdim=True)
    return torch.where(empty, masks, kept)


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


def cutmix_images(inputs: dict[str, torch.Tensor], alpha: float) -> tuple[float, torch.Tensor] | None:
    """Paste a random box of another sample's raw images into each sample (Yun et al., 2019).

    Returns ``(lam, perm)`` with ``lam`` the share of each image left untouched (the weight of the
    sample's own target), or None when the bag has no raw (C, H, W) images.
    """
    images = [m for m, x in inputs.items() if x.ndim == 4]
    if not images:
        return None
    n = len(inputs[images[0]])
    perm = torch.randperm(n).to(inputs[images[0]].device)
    lam = _beta(alpha)
    h, w = inputs[images[0]].shape[-2:]
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    for m in images:
        x = inputs[m].clone()
        x[:, :, y0:y1, x0:x1] = inputs[m][perm][:, :, y0:y1, x0:x1]
        inputs[m] = x
    return 1.0 - (y1 - y0) * (x1 - x0) / (h * w), perm


def choose_mix(batch: dict[str, Any], mixup_alpha: float, cutmix_alpha: float) -> tuple[str, float, torch.Tensor] | None:
    """Pick this batch's mixing: mixup, CutMix (raw images only) or, with both set, one at random."""
    use_cutmix = cutmix_alpha > 0 and (not mixup_alpha or bool(torch.rand(()) < 0.5))
    if use_cutmix:
        cut = cutmix_images(batch["inputs"], cutmix_alpha)
        if cut is not None:
            return "cutmix", cut[0], cut[1]
    if mixup_alpha > 0:
        n = len(batch["target"])
        return "mixup", _beta(mixup_alpha), torch.randperm(n).to(batch["target"].device)
    return None


def mixed_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
               target: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * loss(y) + (1 - lam) * loss(y[perm])``: the loss of a mixed pair of samples."""
    return lam * loss_fn(logits, target) + (1.0 - lam) * loss_fn(logits, target[perm])


__all__ = ["choose_mix", "cutmix_images", "drop_modalities", "mixed_loss"]
