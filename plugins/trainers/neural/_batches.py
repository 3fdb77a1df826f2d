"""Where the neural trainer's batches come from: in-memory tensors or a streaming DataLoader.

Both sources turn the same per-epoch list of row-index batches into the same batches, so a run
gives the same result on either path (a test checks it). The in-memory path indexes tensors that
are built once (on the training device) and does no per-sample work; the DataLoader path reads
each batch's rows from the arrays (memory-mapped .npy files stay on disk) in worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from modalbag.data.dataset import is_memory_mapped
from modalbag.execution.resources import available_cores

Batch = dict[str, Any]


def read_rows(arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], modalities: Sequence[str],
              rows: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The inputs and the (B, M) presence mask of ``rows``, in ``rows`` order.

    Memory-mapped arrays are read in sorted row order (sequential access on disk) and put back.
    """
    inputs = {m: torch.from_numpy(_take(arrays[m], rows)) for m in modalities}
    mask = torch.from_numpy(np.stack([np.asarray(masks[m])[rows] for m in modalities], axis=1))
    return inputs, mask


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    if not is_memory_mapped(array):
        return np.ascontiguousarray(array[rows], dtype=np.float32)  # one copy
    order = np.argsort(rows, kind="stable")
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return np.ascontiguousarray(np.asarray(array[rows[order]], dtype=np.float32)[back])


class InMemory:
    """Every training row as one tensor per modality, indexed per batch."""

    def __init__(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], modalities: Sequence[str],
                 rows: np.ndarray, targets: torch.Tensor, device: torch.device):
        x, mask = read_rows(arrays, masks, modalities, rows)
        self.modalities = list(modalities)
        self.device = device
        self.x = {m: t.to(device) for m, t in x.items()}
        self.masks = mask.to(device)
        self.targets = targets.to(device)

    def epoch(self, batches: Sequence[torch.Tensor]) -> Iterator[Batch]:
        for idx in batches:
            idx = idx.to(self.device, non_blocking=True)
            yield {"inputs": {m: self.x[m].index_select(0, idx) for m in self.modalities},
                   "masks": self.masks.index_select(0, idx), "target": self.targets.index_select(0, idx)}

    def close(self) -> None:
        pass


class _RowReader(torch.utils.data.Dataset):
    """A map-style dataset whose items are whole batches: ``reader[positions]`` reads those rows."""

    def __init__(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], modalities: Sequence[str],
                 rows: np.ndarray, targets: torch.Tensor):
        self.arrays, self.masks, self.modalities = dict(arrays), dict(masks), list(modalities)
        self.rows, self.targets = rows, targets

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: torch.Tensor) -> Batch:
        pos = positions.numpy()
        inputs, mask = read_rows(self.arrays, self.masks, self.modalities, self.rows[pos])
        return {"inputs": inputs, "masks": mask, "target": self.targets.index_select(0, positions)}


class _EpochBatches(torch.utils.data.Sampler):
    """Yields the current epoch's batches of positions; the trainer sets them before each epoch."""

    def __init__(self) -> None:
        self.batches: Sequence[torch.Tensor] = ()

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Streamed:
    """Batches read by a ``torch.utils.data.DataLoader`` (``num_workers``, ``pin_memory``, ...)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], modalities: Sequence[str],
                 rows: np.ndarray, targets: torch.Tensor, device: torch.device, *, num_workers: int,
                 pin_memory: bool, persistent_workers: bool, prefetch_factor: int | None):
        self.device = device
        self.sampler = _EpochBatches()
        workers = num_workers > 0
        self.loader = torch.utils.data.DataLoader(
            _RowReader(arrays, masks, modalities, rows, targets), sampler=self.sampler, batch_size=None,
            num_workers=num_workers, pin_memory=pin_memory and device.type == "cuda",
            persistent_workers=persistent_workers and workers, prefetch_factor=prefetch_factor if workers else None,
            # its own generator: creating an iterator must not draw from the global RNG that
            # dropout and augmentation use, or the two paths would diverge
            generator=torch.Generator(),
        )

    def epoch(self, batches: Sequence[torch.Tensor]) -> Iterator[Batch]:
        self.sampler.batches = list(batches)
        for batch in self.loader:
            if self.device.type != "cpu":
                batch = _to(batch, self.device)
            yield batch

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def _to(batch: Batch, device: torch.device) -> Batch:
    return {"inputs": {m: t.to(device, non_blocking=True) for m, t in batch["inputs"].items()},
            "masks": batch["masks"].to(device, non_blocking=True),
            "target": batch["target"].to(device, non_blocking=True)}


def wants_loader(mode: str, arrays: Mapping[str, np.ndarray], num_workers: int) -> bool:
    """The DataLoader path for ``mode='loader'``, or under 'auto' for on-disk data or worker processes."""
    if mode != "auto":
        return mode == "loader"
    return num_workers > 0 or any(is_memory_mapped(a) for a in arrays.values())


def loader_workers(num_workers: int) -> int:
    """DataLoader worker processes for ``num_workers``: at most one per core this process may use.

    Workers beyond the cores only take turns on them, and each is a process started again every
    epoch unless ``persistent_workers``: the spec's ``num_workers=16`` on 2 cores spent most of a
    500-second run starting workers.
    """
    return min(num_workers, available_cores())


def eval_batches(arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], modalities: Sequence[str],
                 rows: np.ndarray, batch_size: int) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Validation inputs read ``batch_size`` rows at a time (the streamed path's evaluation)."""
    for start in range(0, len(rows), batch_size):
        yield read_rows(arrays, masks, modalities, rows[start:start + batch_size])


__all__ = ["InMemory", "Streamed", "eval_batches", "loader_workers", "read_rows", "wants_loader"]
