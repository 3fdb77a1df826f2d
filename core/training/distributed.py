"""One learner over several processes: torch DDP ranks, launched by ``torchrun``.

With ``distributed_training=True`` each learner trains over ``num_processes`` ranks. Every rank
builds the same model from the same seed and walks the same shuffled order of rows; each batch is
split between the ranks (`DistributedContext.shard`, padded like ``DistributedSampler`` so that every
rank gets as many rows) and ``DistributedDataParallel`` averages the gradients, so one step sees the
whole global batch of ``batch_size`` rows, as a single process would.

This module is what each rank runs: ``python -m modalbag.training.distributed REQUEST RESULT`` (the
``torchrun`` executor plugin launches it). It joins the process group (gloo on CPU, NCCL for CUDA
tensors) always with a timeout, so a rank whose peer died fails instead of waiting, fits the learner
with the run's hooks, and rank 0 writes the result.

Recovery is by checkpoint and rerun, not in-place elastic restart: rank 0 saves the weights after
every epoch, and when a launch ends without a result the executor launches again, resuming from the
last saved epoch (weights and epoch count resume; optimizer moments, the learning-rate schedule and
early-stopping patience start afresh).

Run hooks run on every rank (`Run.distributed` says which rank): a plugin that writes files should
do so on rank 0 (``run.distributed is None or run.distributed.is_main``).
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import attrs

from modalbag.engine.executors import JobResult, LearnerJob, WorkerContext, dumps, loads
from modalbag.io.artifacts import atomic_write_bytes
from modalbag.kernel.markers import hookimpl
from modalbag.kernel.records import EpochRecord


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


def read_checkpoint(path: str) -> dict[str, Any] | None:
    """The resume checkpoint at ``path``: ``epoch``, ``model`` (a state dict) and ``records``."""
    import torch

    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class RankCheckpoint:
    """Saves the weights after each epoch on rank 0, and loads them back when a launch resumes."""

    def __init__(self, path: str, rank: int, resume: dict[str, Any] | None):
        self.path, self.rank, self.resume = path, rank, resume
        self.offset = resume["epoch"] if resume else 0
        self.prior = [EpochRecord.from_dict(r) for r in resume["records"]] if resume else []

    @hookimpl
    def modalbag_fit_setup(self, run: Any, fit: Any) -> None:
        if self.resume is not None:
            fit.model.load_state_dict(self.resume["model"])

    @hookimpl
    def modalbag_epoch_end(self, run: Any, fit: Any, record: EpochRecord) -> None:
        if self.rank != 0 or fit.model is None:
            return
        import io

        import torch

        records = [r.to_dict() for r in self.renumbered(fit.records)]
        buffer = io.BytesIO()
        torch.save({"epoch": self.offset + record.epoch, "model": fit.model.state_dict(), "records": records}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def renumbered(self, records: list[EpochRecord]) -> list[EpochRecord]:
        """The records of every launch so far, numbered from the first."""
        return self.prior + [attrs.evolve(r, epoch=r.epoch + self.offset) for r in records]


@attrs.frozen(eq=False)
class RankRequest:
    """What each rank of one launch reads: the run's snapshot, the job, and how to recover."""

    context: WorkerContext
    job: LearnerJob
    timeout_s: float
    checkpoint_path: str
    attempt: int = 0


def fit_on_rank(request: RankRequest, distributed: DistributedContext) -> JobResult:
    """Fit the request's learner on this rank (every rank calls this; rank 0's result is kept)."""
    resume = read_checkpoint(request.checkpoint_path) if request.attempt else None
    saver = RankCheckpoint(request.checkpoint_path, distributed.rank, resume)
    run = request.context.build_run(distributed=distributed, extra=[saver])
    result = request.context.fit(request.job, run)
    learner = result.learner
    if resume is not None:
        learner.records = saver.renumbered(learner.records)
        learner.notes.append(f"resumed from the checkpoint of epoch {saver.offset} after "
                             f"{request.attempt} failed launch(es)")
    learner.notes.append(f"trained with DDP over {distributed.world_size} ranks")
    return result


def main(argv: list[str] | None = None) -> int:
    """A rank: ``python -m modalbag.training.distributed REQUEST RESULT`` under torchrun."""
    request_path, result_path = argv if argv is not None else sys.argv[1:]
    import torch.distributed as dist

    with open(request_path, "rb") as fh:
        request: RankRequest = loads(fh.read())
    context = init_distributed(request.timeout_s)
    try:
        result = fit_on_rank(request, context)
        if context.is_main:
            atomic_write_bytes(result_path, dumps(result, f"the result of {request.job.learner_id}"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


__all__ = ["DistributedContext", "RankCheckpoint", "RankRequest", "fit_on_rank", "init_distributed",
           "under_torchrun"]

if __name__ == "__main__":
    sys.exit(main())
