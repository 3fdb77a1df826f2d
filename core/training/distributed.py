"""One learner over several processes: torch DDP ranks, as the ``torchrun`` executor launches them.

With ``distributed_training=True`` each learner trains over ``num_processes`` ranks. Every rank
builds the same model from the same seed and walks the same shuffled order of rows; each batch is
split between the ranks (`DistributedContext.shard`, padded like ``DistributedSampler`` so that every
rank gets as many rows) and ``DistributedDataParallel`` averages the gradients, so one step sees the
whole global batch of ``batch_size`` rows, as a single process would.

This module is the trainer's side of it: joining the group (`init_distributed`, gloo on CPU, NCCL
for CUDA tensors, always with a timeout, so a rank whose peer died fails instead of waiting) and the
rank's context. The program each rank runs, and recovery by relaunch from the last full training
state, belong to the ``torchrun`` executor plugin.

Run hooks run on every rank (`Run.distributed` says which rank): a plugin that writes files should
do so on rank 0 (``run.distributed is None or run.distributed.is_main``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import attrs


@attrs.frozen
class DistributedContext:
    """This process's place in a DDP group; the neural trainer wraps its model and shards batches."""

    rank: int
    world_size: int
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: Any) -> Any:
        """``model`` inside ``DistributedDataParallel`` (its parameters stay those of ``model``).

        The auxiliary modules under ``model.aux`` (denoising heads) are left out of DDP: they are
        used outside ``forward`` and not at every step (objectives taking turns, curriculum stages),
        which DDP's reducer cannot follow. They start from rank 0's values, as DDP's own do, and
        `average_gradients` averages their gradients after each backward.
        """
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        aux = getattr(model, "aux", None)
        if aux is not None:
            named = [*aux.named_parameters(), *aux.named_buffers()]
            if named:
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    model, [f"aux.{name}" for name, _ in named])
                for _, tensor in named:
                    dist.broadcast(tensor.data, src=0)
        if self.device.startswith("cuda"):
            return DistributedDataParallel(model, device_ids=[self.local_rank])
        return DistributedDataParallel(model)

    def average_gradients(self, params: list[Any]) -> None:
        """Average the gradients of ``params`` over the ranks in one all-reduce.

        A parameter without a gradient on a rank counts as a zero there (as DDP counts an unused
        one); one that has none on any rank keeps ``grad=None``, so the optimizer skips it as it
        would in a single process.
        """
        import torch
        import torch.distributed as dist

        if not params:
            return
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
        flat = torch.cat([p.grad.detach().reshape(-1).to(dtype) if p.grad is not None
                          else torch.zeros(p.numel(), dtype=dtype, device=p.device) for p in params]
                         + [torch.tensor([p.grad is not None for p in params], dtype=dtype,
                                         device=params[0].device)])
        dist.all_reduce(flat)
        values, present = flat[: -len(params)], flat[-len(params):].tolist()
        for p, chunk, seen in zip(params, values.split([p.numel() for p in params]), present, strict=True):
            if not seen:
                continue
            average = chunk.view_as(p).div_(self.world_size).to(p.dtype)
            if p.grad is None:
                p.grad = average
            else:
                p.grad.copy_(average)

    def shard(self, idx: Any) -> Any:
        """This rank's rows of a batch: strided, padded by wrapping around to a multiple of the ranks."""
        n, world = len(idx), self.world_size
        if n % world:
            total = -(-n // world) * world
            idx = idx.repeat(-(-total // n))[:total]
        return idx[self.rank::world]


def under_torchrun() -> bool:
    """True inside a process that ``torchrun`` (or another launcher setting RANK/WORLD_SIZE) started."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(timeout_s: float) -> DistributedContext:
    """Join the process group torchrun describes in the environment, waiting at most ``timeout_s``.

    Gloo for CPU tensors; with CUDA, ``cpu:gloo,cuda:nccl`` and the rank's GPU as its device.
    """
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = "cpu"
    backend = "gloo"
    if torch.cuda.is_available():
        backend, device = "cpu:gloo,cuda:nccl", f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank, world, local_rank, device)


__all__ = ["DistributedContext", "init_distributed", "under_torchrun"]
