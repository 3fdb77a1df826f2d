"""The machine's share for a run: cores and threads per learner, free memory, footprints, a memory gate.

Same seed, same config: same models, whichever executor. Float reductions depend on the number of
threads, so a learner always runs with `threads_for` threads (``threads_per_learner``, or the cores
divided by ``n_jobs``), set by the executor around the fit, here or in a worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.execution.jobs import MIB, Footprint, LearnerJob
from modalbag.kernel.component import Component
from modalbag.kernel.records import LearnerSpec
from modalbag.logs import get_logger

log = get_logger("modalbag.executors")

#: Memory a fresh worker process takes before its first job (Python, torch, modalbag), until measured.
WORKER_BASE_BYTES = 400 * MIB


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def requested_learners(config: TrainingConfig) -> int:
    """How many learners ``n_jobs`` asks to train at once (-1: one per core)."""
    return available_cores() if config.n_jobs == -1 else config.n_jobs


def concurrent_learners(config: TrainingConfig) -> int:
    """How many learners train at once: ``n_jobs`` (-1: one per core), at most one per usable core.

    More worker processes than cores only share the same cores, each paying for its own process
    and memory, so the count is capped; `n_jobs_note` says so when it applies.
    """
    return max(1, min(requested_learners(config), available_cores()))


def n_jobs_note(config: TrainingConfig) -> str | None:
    """Why fewer learners train at once than ``n_jobs`` asks, or None when it is not capped."""
    asked, used = requested_learners(config), concurrent_learners(config)
    if used >= asked:
        return None
    return (f"n_jobs={asked} is more than the {available_cores()} core(s) this process may use: capped at {used} "
            f"learner(s) at once")


def threads_for(config: TrainingConfig) -> int:
    """Threads each learner uses: ``threads_per_learner``, else cores // concurrent learners."""
    if config.threads_per_learner:
        return config.threads_per_learner
    return max(1, available_cores() // max(1, concurrent_learners(config)))


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Run torch and the BLAS libraries with ``n`` threads, restoring the previous settings after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def available_memory() -> int | None:
    """Bytes the kernel could give new work now: MemAvailable, capped by a cgroup limit if any."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    with contextlib.suppress(OSError, ValueError):  # cgroup v2: the container's own limit
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            current = int(fh.read().strip())
        if limit != "max":
            found.append(max(0, int(limit) - current))
    return min(found) if found else None


def memory_budget(config: TrainingConfig) -> int | None:
    """Bytes the learners running at once may use together (None: unknown, no limit)."""
    if config.memory_limit_mb is not None:
        return int(config.memory_limit_mb * MIB)
    free = available_memory()
    return None if free is None else int(0.9 * free)


def estimate_footprint(spec: LearnerSpec, bag: Bag, specs: Mapping[str, Any], config: TrainingConfig,
                       n_outputs: int, trainer: Component | None = None) -> Footprint:
    """A learner's memory while it trains, before it starts.

    A trainer may answer itself: a factory attribute ``estimate_footprint(spec, bag, specs, config,
    n_outputs)`` returning bytes (or a `Footprint`) wins. Otherwise this estimates a fusion network:
    the bag's rows of each modality copied as float32 tensors (plus standardisation temporaries),
    the parameters with their gradients, two optimizer moments and a best-weights copy, and the
    activations of one training batch and one evaluation batch.
    """
    custom = getattr(getattr(trainer, "factory", None), "estimate_footprint", None)
    if custom is not None:
        found = custom(spec, bag, specs, config, n_outputs)
        return found if isinstance(found, Footprint) else Footprint(0, int(found), 0, "trainer")
    options = config.plugin_options
    arch = dict(spec.architecture)
    hidden = int(options.get("hidden_dim") or arch.get("hidden_dim") or 128)
    embed = int(options.get("embedding_dim") or arch.get("embedding_dim") or 64)
    eval_batch = int(options.get("eval_batch_size") or 1024)
    rows = len(bag.rows)
    floats = 4
    per_row, params, per_sample_act = 0, embed * hidden + hidden * n_outputs + embed * embed, 0
    for name in spec.modalities:
        shape = tuple(specs[name].shape)
        size = int(np.prod(shape))
        per_row += size
        if len(shape) == 1:
            params += size * hidden + hidden * embed
            per_sample_act += size + 3 * hidden
        elif len(shape) == 2:  # sequence (T, F): convolutions over time
            params += shape[1] * hidden * 5 + hidden * hidden * 3 + hidden * embed
            per_sample_act += size + 6 * shape[0] * hidden
        else:  # image (C, H, W): two strided convolutions
            width = max(16, hidden // 4)
            params += shape[0] * width * 9 + width * width * 18 + 2 * width * embed
            per_sample_act += size + 3 * width * shape[1] * shape[2]
    data = rows * per_row * floats * 3
    model = params * floats * 5
    activations = (config.batch_size * 3 + eval_batch) * per_sample_act * floats + 32 * MIB
    return Footprint(int(data), int(model), int(activations))


class MemoryGate:
    """Admits jobs while the memory reserved for them (and the workers holding them) fits a budget.

    Something is always admitted when nothing runs, so a learner larger than the budget still
    trains, alone and with a warning, rather than never.
    """

    def __init__(self, budget: int | None):
        self.budget = budget
        self.used = 0

    def try_reserve(self, need: int, *, running: int, job: LearnerJob | None = None) -> bool:
        if self.budget is not None and self.used + need > self.budget:
            if running:
                return False
            log.warning("bag.over_memory_budget", learner=job.learner_id if job else None,
                        bag=job.bag.id if job else None, need_mb=round(need / MIB, 1),
                        budget_mb=round(self.budget / MIB, 1))
        self.used += need
        return True

    def release(self, amount: int) -> None:
        self.used -= amount


__all__ = ["WORKER_BASE_BYTES", "MemoryGate", "available_cores", "available_memory", "concurrent_learners",
           "estimate_footprint", "limited_threads", "memory_budget", "n_jobs_note", "requested_learners",
           "threads_for"]
