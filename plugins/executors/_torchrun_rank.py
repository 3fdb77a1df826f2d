"""The program each torchrun rank runs: ``python -m modalbag.plugins.executors._torchrun_rank REQUEST RESULT``.

A rank reads the launch's `RankRequest`, joins the process group, fits the learner with the run's
hooks (every rank builds the same model; DDP averages the gradients) and, on rank 0, writes the
result. There is one checkpoint format: the neural trainer's full training state
(`modalbag.training.checkpoints`: weights, optimizer moments, learning-rate schedule, plugin state
such as early-stopping patience, data order and RNG states). Rank 0 writes it every
``checkpoint_interval`` epochs under the request's checkpoint root, and a relaunch restores it, so
the epochs after a crash are the very epochs an uninterrupted run would have trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs

from modalbag.execution import JobResult, LearnerJob, WorkerContext, dumps, loads
from modalbag.io.artifacts import atomic_write_bytes
from modalbag.training.checkpoints import LearnerCheckpoints, checkpoint_root
from modalbag.training.distributed import DistributedContext, init_distributed


@attrs.frozen(eq=False)
class RankRequest:
    """What each rank of one launch reads: the run's snapshot, the job, and how many launches failed."""

    context: WorkerContext
    job: LearnerJob
    timeout_s: float
    attempt: int = 0


def with_checkpoints(context: WorkerContext, directory: str | Path) -> WorkerContext:
    """``context`` saving full training states, under ``directory`` unless the run names its own root.

    A relaunch needs a state to resume from, so the ranks checkpoint even when the run does not
    (``save_checkpoints=False`` or neither ``run_dir`` nor ``checkpoint_dir``); a run that does keeps
    its own root, interval and retention.
    """
    config = context.config
    if config.save_checkpoints and checkpoint_root(config) is not None:
        return context
    return attrs.evolve(context, config=attrs.evolve(config, save_checkpoints=True, checkpoint_dir=str(directory)))


def saved_epoch(context: WorkerContext, job: LearnerJob) -> int:
    """The epoch of the learner's latest saved training state in this run (0: none yet)."""
    root = checkpoint_root(context.config)
    if root is None:
        return 0
    manifest = LearnerCheckpoints(root / job.learner_id, job.learner_id, context.run_id).manifest()
    current = (manifest or {}).get("current", {}).get("state")
    return int(manifest["files"][current]["epoch"]) if current else 0


def fit_on_rank(request: RankRequest, distributed: DistributedContext) -> JobResult:
    """Fit the request's learner on this rank (every rank calls this; rank 0's result is kept)."""
    run = request.context.build_run(distributed=distributed)
    result = request.context.fit(request.job, run)
    learner = result.learner
    if request.attempt:
        learner.notes.append(f"launched {request.attempt + 1} times: {request.attempt} launch(es) ended without "
                             f"a result")
    learner.notes.append(f"trained with DDP over {distributed.world_size} ranks")
    return result


def main(argv: list[str] | None = None) -> int:
    """One rank, under torchrun: read the request, fit, and on rank 0 write the result."""
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


if __name__ == "__main__":
    sys.exit(main())
