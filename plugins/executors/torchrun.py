"""``torchrun``: each learner trained with torch DDP over ``num_processes`` ranks (``distributed_training``).

The learners train one after another, each over every rank: this is for a learner too large or too
slow for one process. For each, the executor writes the run's snapshot to a file and launches
``torchrun --standalone --nproc-per-node N -m modalbag.plugins.executors._torchrun_rank`` (the rank
program); rank 0 writes the result back. Every rank joins the group with ``distributed_timeout``, so a dead
peer fails the launch instead of hanging it, and torchrun ends the other ranks.

Recovery is by checkpoint and rerun: a launch that ends without a result is launched again, up to
``distributed_max_restarts`` times, resuming from the full training state rank 0 saved last (every
``checkpoint_interval`` epochs: weights, optimizer moments, schedule, early-stopping state, data order
and RNG states, the one format of `modalbag.training.checkpoints`), so the resumed learner is the one
an uninterrupted launch would have trained. The states go where the run keeps its checkpoints, or to
the launch's own folder when it keeps none. torchrun's own in-place elastic restarts stay off
(``--max-restarts 0``).

Already inside a torchrun job of your own (RANK and WORLD_SIZE set, for example over several
machines)? Then nothing is launched: this process is one rank, and trains each learner with its
peers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.execution import JobResult, LearnerJob, TrainingWork, available_cores, dumps, loads
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least
from modalbag.logs import get_logger
from modalbag.plugins.executors._torchrun_rank import RankRequest, fit_on_rank, saved_epoch, with_checkpoints
from modalbag.training.distributed import init_distributed, under_torchrun

log = get_logger("modalbag.executors.torchrun")

#: The module each rank runs (``python -m``).
RANK_PROGRAM = "modalbag.plugins.executors._torchrun_rank"


@attrs.frozen(kw_only=True)
class TorchrunOptions:
    distributed_max_restarts: int = attrs.field(default=1, validator=integer_at_least(0), metadata={
        "help": "Relaunches of a learner's torchrun job that ended without a result, each resuming from the "
                "last saved full training state (every checkpoint_interval epochs; 0: no relaunch)."})


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class TorchrunExecutor:
    def __init__(self, config: Any, options: TorchrunOptions | None = None):
        self.config = config
        self.options = options or TorchrunOptions()
        self.processes = config.num_processes
        self.timeout_s = config.distributed_timeout

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        if under_torchrun():
            yield from self._as_a_rank(work)
            return
        threads = self.config.threads_per_learner or max(1, available_cores() // self.processes)
        context = attrs.evolve(work.context(), threads=threads)
        for job in work.jobs:
            yield self._launch(work, job, context)

    def _as_a_rank(self, work: TrainingWork) -> Iterator[JobResult]:
        """This process is one rank of a group started outside modalbag: train with its peers."""
        distributed = init_distributed(self.timeout_s)
        for job in work.jobs:
            yield fit_on_rank(RankRequest(work.context(), job, self.timeout_s), distributed)

    def _launch(self, work: TrainingWork, job: LearnerJob, context: Any) -> JobResult:
        workdir = tempfile.mkdtemp(prefix=f"modalbag-ddp-{job.learner_id}-")
        context = with_checkpoints(context, os.path.join(workdir, "checkpoints"))
        result_path = os.path.join(workdir, "result.pkl")
        env = dict(os.environ)
        path = [p for p in sys.path if p and os.path.isdir(p)]  # so ranks import what this process can
        env["PYTHONPATH"] = os.pathsep.join(path + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else path)
        env["OMP_NUM_THREADS"] = str(context.threads)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", str(self.processes), "--max-restarts", "0", "-m", RANK_PROGRAM,
                   os.path.join(workdir, "request.pkl"), result_path]
        try:
            attempt = 0
            while True:
                request = RankRequest(context, job, self.timeout_s, attempt)
                with open(os.path.join(workdir, "request.pkl"), "wb") as fh:
                    fh.write(dumps(request))
                log.debug("distributed.launch", learner=job.learner_id, ranks=self.processes, attempt=attempt)
                done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, check=False)
                result: JobResult | None = None
                if os.path.exists(result_path):
                    with open(result_path, "rb") as fh:
                        result = loads(fh.read())
                    os.unlink(result_path)
                # a rank crashed when torchrun fails; rank 0 may still have written its side of it
                if result is not None and (done.returncode == 0 or result.learner.ok):
                    return result
                attempt += 1
                if attempt > self.options.distributed_max_restarts:
                    rank0 = f"; rank 0 reported {result.learner.error}" if result is not None else ""
                    return work.lost(job, f"torchrun exited with code {done.returncode} after {attempt} "
                                          f"launch(es){rank0}; its last lines:\n{_tail(done.stdout)}")
                log.warning("distributed.relaunch", learner=job.learner_id, attempt=attempt,
                            exit_code=done.returncode, resume_epoch=saved_epoch(context, job),
                            output=_tail(done.stdout, 5))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@hookimpl
def modalbag_register_executors(register: Register) -> None:
    register("torchrun", TorchrunExecutor, options=TorchrunOptions,
             summary="Train each learner with torch DDP over num_processes ranks launched by torchrun")
