"""The fusion network: an encoder per modality, attention over the modalities a sample has, a task head.

Inputs are standardised inside the network (`Standardize`, fitted on the bag's training rows), so a
saved learner carries its own preprocessing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modalbag.plugins.trainers.neural._ncl import MemberHeads


class Standardize(nn.Module):
    """Per-feature (vectors, sequences) or per-channel (images) standardisation, fitted on train rows."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    @classmethod
    def fit(cls, array: np.ndarray, rows: np.ndarray, enabled: bool, l2_normalize: bool = False,
            chunk: int = 4096) -> Standardize:
        """Mean and std of ``array[rows]``, read ``chunk`` rows at a time (memory-mapped data stays on
        disk), accumulated in float64."""
        shape = array.shape[1:]
        reduce_axes = (0,) if len(shape) == 1 else (0, 1) if len(shape) == 2 else (0, 2, 3)
        keep_shape = [1 if i in reduce_axes else s for i, s in enumerate((len(rows), *shape))][1:]
        if not enabled or len(rows) == 0:
            return cls(np.zeros(keep_shape, np.float32), np.ones(keep_shape, np.float32))
        total = np.zeros(keep_shape, np.float64)
        total_sq = np.zeros(keep_shape, np.float64)
        count = 0
        for start in range(0, len(rows), chunk):
            block = np.asarray(array[np.sort(rows[start:start + chunk])], dtype=np.float64)
            if l2_normalize:
                block = block / np.maximum(np.linalg.norm(block, axis=-1, keepdims=True), 1e-12)
            total += block.sum(axis=reduce_axes).reshape(keep_shape)
            total_sq += np.square(block).sum(axis=reduce_axes).reshape(keep_shape)
            count += block.size // int(np.prod(keep_shape))
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class L2Normalize(nn.Module):
    """Unit-length rows: text embeddings compare by direction, so their norm is mostly noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class TrainAugment(nn.Module):
    """Training-time input regularisation on standardised inputs; the identity in eval mode.

    ``feature_dropout`` zeroes input features with probability p (inverted dropout);
    ``noise_injection`` adds Gaussian noise of that standard deviation (inputs are standardised, so
    it is relative to each feature's spread); ``image_augmentation`` flips raw images left-right
    with probability 1/2.
    """

    def __init__(self, feature_dropout: float, noise: float, flip_images: bool):
        super().__init__()
        self.feature_dropout, self.noise, self.flip_images = feature_dropout, noise, flip_images

    @property
    def active(self) -> bool:
        return bool(self.feature_dropout or self.noise or self.flip_images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.flip_images and x.ndim == 4:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        if self.feature_dropout:
            x = F.dropout(x, self.feature_dropout, training=True)
        return x


class VectorEncoder(nn.Module):
    """An MLP for feature vectors. Encoders return (hidden, embedding): two representation depths."""

    def __init__(self, in_dim: int, hidden: int, out: int, dropout: float):
        super().__init__()
        self.hidden_dim = hidden
        self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.out(h)


class ImageEncoder(nn.Module):
    """A small CNN for raw (C, H, W) images: two strided conv blocks and global pooling."""

    def __init__(self, channels: int, hidden: int, out: int, dropout: float):
        super().__init__()
        width = max(16, hidden // 4)
        self.hidden_dim = 2 * width
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(1, 2 * width), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        )
        self.out = nn.Linear(2 * width, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h, self.out(h)


class SequenceEncoder(nn.Module):
    """(T, F) sequences: 1-D convolutions over time, or a small transformer; mean-pooled."""

    def __init__(self, features: int, hidden: int, out: int, dropout: float, kind: str):
        super().__init__()
        self.kind = kind
        self.hidden_dim = hidden
        if kind == "transformer":
            self.inp = nn.Linear(features, hidden)
            layer = nn.TransformerEncoderLayer(hidden, nhead=4 if hidden % 4 == 0 else 1, dim_feedforward=2 * hidden,
                                               dropout=dropout, batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        else:
            self.body = nn.Sequential(nn.Conv1d(features, hidden, 5, padding=2), nn.GELU(),
                                      nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU())
        self.out = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "transformer":
            h = self.body(self.inp(x)).mean(dim=1)
        else:
            h = self.body(x.transpose(1, 2)).mean(dim=2)
        return h, self.out(h)


class FusionNetwork(nn.Module):
    """Encoders per modality, masked attention fusion, task head.

    ``forward`` returns ``logits``, per-modality ``embeddings`` (B, M, E) and ``hidden``
    representations ({name: (B, H_m)}), the ``fused`` representation (B, E) and the gate's
    ``fusion_scores`` (B, M): denoising objectives read these and call ``fuse`` (with those scores)
    and ``head`` on modality subsets. With ``members`` >= 2, ``head`` is `MemberHeads` (negative
    correlation learning, `_ncl`): ``logits`` are the members' mean output and ``member_logits``
    (M, B, K) each member's.
    """

    def __init__(self, encoders: Mapping[str, nn.Module], scalers: Mapping[str, nn.Module],
                 embedding_dim: int, hidden_dim: int, n_outputs: int, dropout: float,
                 input_shapes: Mapping[str, tuple[int, ...]] | None = None, augment: TrainAugment | None = None,
                 members: int = 1, member_output: str = "softmax"):
        super().__init__()
        self.modalities = list(encoders)
        self.embedding_dim, self.n_outputs = embedding_dim, n_outputs
        self.input_shapes = dict(input_shapes or {})
        self.encoders = nn.ModuleDict(encoders)
        self.scalers = nn.ModuleDict(scalers)
        self.augment = augment if augment is not None and augment.active else nn.Identity()
        self.norm = nn.LayerNorm(embedding_dim)
        self.gate = nn.Sequential(nn.Linear(embedding_dim, embedding_dim // 2 or 1), nn.Tanh(),
                                  nn.Linear(embedding_dim // 2 or 1, 1))
        self.members = members
        heads = [nn.Sequential(nn.Linear(embedding_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                               nn.Linear(hidden_dim, n_outputs)) for _ in range(members)]
        # ncl_members >= 2: heads trained together with negative correlation learning (see `_ncl`);
        # ``head`` stays one module whose output is their mean, so everything that calls it is unchanged
        self.head = heads[0] if members == 1 else MemberHeads(heads, member_output)
        self.aux = nn.ModuleDict()  # denoising objectives attach their modules here

    def embed(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden, embedded = {}, []
        for m in self.modalities:
            hidden[m], e = self.encoders[m](self.augment(self.scalers[m](inputs[m])))
            embedded.append(self.norm(e))
        return torch.stack(embedded, dim=1), hidden

    def fusion_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, M) gate logits: how much each modality's embedding counts where it is present."""
        return self.gate(embeddings).squeeze(-1)

    def fuse(self, embeddings: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        """Masked softmax-weighted sum of the present modalities' embeddings. Pass ``scores`` (from
        `fusion_scores`) to fuse another subset of the same batch without re-running the gate."""
        scores = self.fusion_scores(embeddings) if scores is None else scores
        weights = torch.softmax(scores.masked_fill(~masks, float("-inf")), dim=1)
        return torch.bmm(weights[:, None, :], embeddings).squeeze(1)

    def forward(self, inputs: Mapping[str, torch.Tensor], masks: torch.Tensor,
                mix: tuple[float, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``mix=(lam, perm)``: also return ``mixed_logits`` from ``lam * fused + (1 - lam) * fused[perm]``
        (mixup in the fused representation, which works for any modality and for missing ones)."""
        embeddings, hidden = self.embed(inputs)
        scores = self.fusion_scores(embeddings)
        fused = self.fuse(embeddings, masks, scores)
        out = {"embeddings": embeddings, "hidden": hidden, "fused": fused, "fusion_scores": scores}
        self._heads(out, "", fused)
        if mix is not None:
            lam, perm = mix
            self._heads(out, "mixed_", lam * fused + (1.0 - lam) * fused[perm])
        return out

    def _heads(self, out: dict[str, torch.Tensor], prefix: str, fused: torch.Tensor) -> None:
        """``{prefix}logits``, and with member heads also ``{prefix}member_logits`` (M, B, K)."""
        if isinstance(self.head, MemberHeads):
            members = self.head.members(fused)
            out[f"{prefix}member_logits"] = members
            out[f"{prefix}logits"] = self.head.combine(members)
        else:
            out[f"{prefix}logits"] = self.head(fused)


# -- the learner --------------------------------------------------------------------------------


__all__ = ["FusionNetwork", "ImageEncoder", "L2Normalize", "SequenceEncoder", "Standardize", "TrainAugment",
           "VectorEncoder"]
