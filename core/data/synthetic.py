"""Synthetic multimodal tasks with real structure, for demos, tests and benchmarks.

A shared latent factor ``z`` drives the label and every modality. Each modality observes only part
of ``z`` (a random subset of its dimensions, always leaving some out), through a different random
non-linear map, at a different noise level and scale. So no single modality solves the task, their
union nearly does, and modalities overlap enough that one can be predicted from another: fusion
and cross-modal learning both matter. `SyntheticTask.sample` draws fresh samples of the *same*
task, so held-out evaluation is honest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag.errors import DataError
from modalbag.kernel.modalities import MODALITY_TYPES


def _parse_shape(name: str, spec: Any) -> tuple[tuple[int, ...], str]:
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)):
        raise DataError(f"synthetic modality {name!r} must be (dim, type) or ((C, H, W), 'image'), got {spec!r}")
    dims, kind = spec
    if kind not in MODALITY_TYPES:
        raise DataError(f"synthetic modality {name!r} has unknown type {kind!r}; types: {', '.join(MODALITY_TYPES)}")
    shape = (int(dims),) if np.isscalar(dims) else tuple(int(d) for d in dims)
    if any(d <= 0 for d in shape):
        raise DataError(f"synthetic modality {name!r} needs positive dimensions, got {shape}")
    if kind == "sequence" and len(shape) != 2:
        raise DataError(f"synthetic sequence {name!r} needs (T, features), got {shape}")
    if kind == "image" and len(shape) not in (1, 3):
        raise DataError(f"synthetic image {name!r} needs a feature dim or (C, H, W), got {shape}")
    if kind in ("tabular", "text") and len(shape) != 1:
        raise DataError(f"synthetic {kind} modality {name!r} needs one dimension, got {shape}")
    return shape, kind


@attrs.frozen
class _ModalityMap:
    shape: tuple[int, ...]
    kind: str
    observed: np.ndarray  # indices of latent dims this modality sees
    hidden: np.ndarray  # (|observed|, h) first projection
    out: np.ndarray  # (h, prod(shape)) lift to the modality's size
    noise: float
    scale: np.ndarray  # per-feature scale (modalities differ by orders of magnitude)
    offset: np.ndarray


@attrs.frozen
class SyntheticTask:
    """A fixed generative process; `sample` draws (data, labels) from it."""

    task_type: str
    n_classes: int
    latent_dim: int
    maps: Mapping[str, _ModalityMap]
    label_weights: np.ndarray
    label_noise: float

    @classmethod
    def create(cls, modalities: Mapping[str, Any], *, n_classes: int = 2, task_type: str = "classification",
               random_state: int = 0, latent_dim: int | None = None, noise: float = 0.5) -> SyntheticTask:
        if not modalities:
            raise DataError("create_synthetic_model needs at least one modality")
        rng = np.random.default_rng(random_state)
        names = list(modalities)
        k = latent_dim or max(8, 2 * len(names) + 2)
        views = _assign_views(len(names), k, rng)
        maps = {}
        for i, name in enumerate(names):
            shape, kind = _parse_shape(name, modalities[name])
            obs = views[i]
            h = 32
            size = int(np.prod(shape))
            scale = np.exp(rng.uniform(-1.0, 3.0, size)) if kind == "tabular" else np.full(size, 1.0 + 4.0 * i)
            maps[name] = _ModalityMap(
                shape=shape, kind=kind, observed=obs,
                hidden=rng.normal(0, 1.5 / np.sqrt(len(obs)), (len(obs), h)),
                out=rng.normal(0, 1.0 / np.sqrt(h), (h, size)),
                noise=noise * (0.6 + 0.8 * rng.random()),
                scale=scale, offset=rng.normal(0, 2.0, size) * (kind == "tabular"),
            )
        out_dim = 1 if task_type == "regression" else n_classes
        weights = rng.normal(0, 1.0, (k, out_dim))
        return cls(task_type, n_classes, k, maps, weights, label_noise=0.1)

    def sample(self, n_samples: int, random_state: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Draw ``n_samples`` fresh samples: ``({name: array}, labels)``."""
        rng = np.random.default_rng(random_state)
        z = rng.normal(size=(n_samples, self.latent_dim))
        data = {name: self._render(m, z, rng) for name, m in self.maps.items()}
        return data, self._labels(z, rng)

    def _render(self, m: _ModalityMap, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        hidden = np.tanh(z[:, m.observed] @ m.hidden)
        flat = hidden @ m.out * np.sqrt(m.out.shape[0])
        flat = flat + rng.normal(0, m.noise, flat.shape)
        flat = flat * m.scale + m.offset
        if m.kind == "image" and len(m.shape) == 1:
            flat = np.maximum(flat, 0.0)  # CNN-feature-like: non-negative activations
        return flat.reshape((len(z), *m.shape)).astype(np.float32)

    def _labels(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        score = z @ self.label_weights
        if self.task_type == "regression":
            return (score[:, 0] + rng.normal(0, self.label_noise, len(z))).astype(np.float32)
        if self.task_type == "multilabel":
            return (score + rng.normal(0, self.label_noise, score.shape) > 0).astype(np.int64)
        return np.argmax(score + rng.gumbel(0, self.label_noise, score.shape), axis=1).astype(np.int64)


def _assign_views(n_modalities: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Latent dims each modality observes: every dim seen by someone, no modality sees all."""
    if n_modalities == 1:
        return [np.arange(k)]
    share = max(2, int(round(0.6 * k)))
    share = min(share, k - 1)
    views = [set(rng.choice(k, share, replace=False).tolist()) for _ in range(n_modalities)]
    for dim in set(range(k)) - set().union(*views):
        owner = min(range(n_modalities), key=lambda i: len(views[i]))
        views[owner].add(dim)
    for view in views:  # keep every modality partial even after filling gaps
        while len(view) >= k:
            view.remove(rng.choice(sorted(view)))
    return [np.array(sorted(v)) for v in views]


__all__ = ["SyntheticTask"]
