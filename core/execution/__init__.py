"""Running a run's learner jobs: the contract between the engine and executor plugins, and its toolkit.

The engine hands an executor plugin a `TrainingWork` (the learner jobs, each with its memory
footprint estimated before it starts); the executor runs every job once, where it likes (this
process, worker processes, Ray tasks, torchrun ranks), and yields a `JobResult` per job as it
finishes. Executor plugins import from here:

- `modalbag.execution.work`: `TrainingWork`, the `Executor` protocol;
- `modalbag.execution.jobs`: `LearnerJob`, `Footprint`, `JobResult`, `failed_result`;
- `modalbag.execution.workers`: `WorkerContext` (the picklable snapshot a worker rebuilds the run
  from), `SharedData`, `fit_in_worker`, `dumps`/`loads`;
- `modalbag.execution.resources`: cores, threads per learner, free memory, footprints, `MemoryGate`;
- `modalbag.execution.events`: log events captured in a worker and replayed in the parent;
- `modalbag.execution.fitting`: `fit_learner`, one learner on one bag, failures recorded, never raised.

Same seed, same config: same models, whichever executor.
"""

from __future__ import annotations

from modalbag.errors import NotPicklableError, WorkerLostError
from modalbag.execution.events import captured_events, replay_events
from modalbag.execution.fitting import fit_learner
from modalbag.execution.jobs import MIB, Footprint, JobResult, LearnerJob, failed_result
from modalbag.execution.resources import (
    WORKER_BASE_BYTES,
    MemoryGate,
    available_cores,
    available_memory,
    concurrent_learners,
    estimate_footprint,
    limited_threads,
    memory_budget,
    n_jobs_note,
    requested_learners,
    threads_for,
)
from modalbag.execution.work import Executor, TrainingWork
from modalbag.execution.workers import (
    SHARE_AS_FILE_BYTES,
    SharedData,
    TrainerTable,
    WorkerContext,
    dumps,
    fit_in_worker,
    loads,
    unguarded_main_script,
    worker_name,
)

__all__ = [
    "MIB", "SHARE_AS_FILE_BYTES", "WORKER_BASE_BYTES", "Executor", "Footprint", "JobResult", "LearnerJob",
    "MemoryGate", "NotPicklableError", "SharedData", "TrainerTable", "TrainingWork", "WorkerContext",
    "WorkerLostError", "available_cores", "available_memory", "captured_events", "concurrent_learners", "dumps",
    "estimate_footprint", "failed_result", "fit_in_worker", "fit_learner", "limited_threads", "loads",
    "memory_budget", "n_jobs_note", "replay_events", "requested_learners", "threads_for", "unguarded_main_script", "worker_name",
]
