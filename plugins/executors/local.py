"""``local``: learners side by side in worker processes on this machine (the default when ``n_jobs`` > 1).

Each worker is a process of its own, joined to this one by a pipe, so a worker that dies (killed,
out of memory, ``os._exit``) is seen at once through its process sentinel and fails the one learner
it was running; a fresh worker takes its place for the others. (A shared pool, ``joblib.Parallel``
or ``ProcessPoolExecutor``, breaks as a whole when one worker dies, failing every learner in flight.)

- At most ``n_jobs`` workers (``-1``: one per core), each running its learners with
  ``threads_per_learner`` threads (default: cores // ``n_jobs``), so workers x threads never
  oversubscribes the cores.
- Memory-aware: a learner starts only when its estimated footprint, plus a new worker's own memory
  when one must start, fits what is left of the budget (``memory_limit_mb``, else 90% of the
  memory available when training starts). The first learner always starts.
- The run's snapshot is written once to a temporary file that each worker reads; large arrays go
  as ``.npy`` files that workers map read-only, so the page cache holds one copy of the data.
- Workers start with ``forkserver`` where the platform has it: a server process imports torch and
  the plugins once and forks each worker from there, so a worker starts in a fraction of a second
  (the first run of a process pays the server's imports). ``spawn`` starts each worker from
  scratch. Never ``fork``, which would copy this process's threads' locks mid-flight and can hang
  torch.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import signal
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.execution import (
    MIB,
    WORKER_BASE_BYTES,
    JobResult,
    LearnerJob,
    MemoryGate,
    NotPicklableError,
    TrainingWork,
    concurrent_learners,
    dumps,
    failed_result,
    fit_in_worker,
    loads,
    unguarded_main_script,
)
from modalbag.kernel import Register
from modalbag.kernel.options import positive
from modalbag.logs import get_logger
from modalbag.training.profiling import current_rss

log = get_logger("modalbag.executors.local")

START_METHODS = ("forkserver", "spawn")
#: Imported once by the fork server, so that each worker starts already holding them.
PRELOAD = ("numpy", "torch", "torch.nn", "torch.optim", "torch._dynamo", "sklearn.metrics", "threadpoolctl",
           "modalbag.engine.engine", "modalbag.execution", __name__)


def _default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


@attrs.frozen(kw_only=True)
class LocalOptions:
    start_method: str = attrs.field(factory=_default_start_method, validator=attrs.validators.in_(START_METHODS),
                                    metadata={"help": "How worker processes start: 'forkserver' (forked from a "
                                                      "server that imported torch and the plugins once; the "
                                                      "default where the platform has it) or 'spawn' (each "
                                                      "from scratch)."})
    bag_timeout: float | None = attrs.field(default=None, validator=attrs.validators.optional(positive), metadata={
        "help": "Seconds a worker may spend on one learner before it is killed and that learner fails "
                "(None: no limit)."})


# -- what the parent and a worker say to each other ----------------------------------------------


@attrs.frozen
class Ready:
    """Worker -> parent: the run's snapshot is loaded; ``rss`` is the worker's memory then (0: unknown)."""

    rss: int


@attrs.frozen
class Broken:
    """Worker -> parent: the snapshot cannot be loaded here, so every job would fail the same way."""

    reason: str


@attrs.frozen
class Stop:
    """Parent -> worker: no more jobs; exit."""


@attrs.frozen
class Gone:
    """What the parent reads from a worker whose pipe closed or whose process ended."""


#: A worker sends `Ready` or `Broken` once, then one `JobResult` per `LearnerJob` it receives.
FromWorker = Ready | Broken | JobResult | Gone
ToWorker = LearnerJob | Stop


def worker_main(conn: Connection, context_path: str, threads: int) -> None:
    """A worker's life: read the run's snapshot, say `Ready`, then fit each job sent until `Stop`."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    try:
        with open(context_path, "rb") as fh:
            context = loads(fh.read())
    except BaseException as exc:  # noqa: BLE001 - every job would fail the same way: say so once
        conn.send_bytes(dumps(Broken(f"{type(exc).__name__}: {exc}")))
        return
    conn.send_bytes(dumps(Ready(current_rss() or 0)))
    while True:
        try:
            message: ToWorker = loads(conn.recv_bytes())
        except EOFError:  # the parent went away
            return
        if isinstance(message, Stop):
            return
        result = fit_in_worker(context, message)
        try:
            data = dumps(result, f"the result of {message.learner_id}")
        except NotPicklableError as exc:
            data = dumps(failed_result(message, exc))
        conn.send_bytes(data)


@attrs.define(eq=False)
class _Worker:
    process: Any
    conn: Connection
    reserved_base: int
    job: LearnerJob | None = None
    ready: bool = False
    sent_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{platform.node()}:{self.process.pid}"

    @property
    def reserved(self) -> int:
        """Memory held for this worker in the gate: its own, and its job's while it has one."""
        return self.reserved_base + (self.job.footprint.total if self.job is not None else 0)

    def send(self, job: LearnerJob) -> None:
        self.conn.send_bytes(dumps(job))
        self.sent_at = time.monotonic()

    def receive(self) -> FromWorker:
        try:
            return loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return Gone()

    def exitcode(self) -> int | None:
        self.process.join(1)
        return self.process.exitcode

    def stop(self, *, wait_s: float) -> None:
        try:
            self.conn.send_bytes(dumps(Stop()))
        except (OSError, ValueError):
            pass
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


def describe_exit(code: int | None, job: LearnerJob | None) -> str:
    """Why a worker ended, in words: the signal's name, and the likely cause of a SIGKILL."""
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        text = f"the worker process was killed by {name}"
        if -code == signal.SIGKILL:
            estimate = f" (estimated {job.footprint.total_mb} MB)" if job is not None else ""
            text += f"; the kernel's out-of-memory killer sends SIGKILL: lower n_jobs or memory_limit_mb{estimate}"
        return text
    return f"the worker process exited with code {code}"


def main_guard_hint() -> str:
    """Why workers die while starting when the main script trains at import time, or "".

    A ``forkserver`` or ``spawn`` worker imports the parent's main script; without an
    ``if __name__ == "__main__":`` guard, the training code at its top level runs again in the
    worker, which fails while bootstrapping (exit code 1). Said only when the script has no guard.
    """
    path = unguarded_main_script()
    if path is None:
        return ""
    return (f"; {path} has no `if __name__ == \"__main__\":` guard: each worker process imports that script, so "
            f"the training code at its top level runs again there and the worker fails while starting. Put the "
            f"code that trains under that guard, or train with executor='serial'")


def start_fork_server() -> None:
    """Start this process's fork server now, preloading `PRELOAD`, unless it already runs.

    The preload takes effect only when the server first starts; a server someone else started
    still works, and its workers import what they lack themselves.
    """
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(PRELOAD))
    forkserver.ensure_running()


class LocalExecutor:
    """Worker processes on this machine, each fitting one learner at a time."""

    def __init__(self, config: Any, options: LocalOptions | None = None):
        self.config = config
        self.options = options or LocalOptions()
        self.workers = concurrent_learners(config)
        if self.options.start_method == "forkserver":
            start_fork_server()  # its imports overlap with drawing bags and choosing learners

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        if not work.jobs:
            return
        with tempfile.TemporaryDirectory(prefix="modalbag-run-") as tmp:
            snapshot = work.context()
            snapshot = attrs.evolve(snapshot, data=snapshot.data.as_files(tmp))
            context_path = os.path.join(tmp, "context.pkl")
            with open(context_path, "wb") as fh:
                fh.write(dumps(snapshot))
            pool = _Pool(work, self.options, min(self.workers, len(work.jobs)), context_path)
            log.debug("executor.local.start", workers=pool.limit, threads=work.threads,
                      budget_mb=None if pool.gate.budget is None else round(pool.gate.budget / MIB, 1))
            try:
                while pool.jobs or pool.running:
                    pool.dispatch()
                    for worker, message in pool.wait():
                        yield from pool.handle(worker, message)
                    yield from pool.expire()
            finally:
                pool.close()


class _Pool:
    """One `execute` call's workers, waiting jobs and memory gate, and how each worker message moves them."""

    def __init__(self, work: TrainingWork, options: LocalOptions, limit: int, context_path: str):
        self.work, self.options, self.context_path = work, options, context_path
        self.limit = max(1, limit)
        self.jobs: deque[LearnerJob] = deque(work.jobs)
        self.workers: list[_Worker] = []
        self.gate = MemoryGate(work.memory_budget)
        self.base = WORKER_BASE_BYTES  # a new worker's own memory, until a worker reports it
        self.mp = multiprocessing.get_context(options.start_method)

    @property
    def running(self) -> int:
        return sum(w.job is not None for w in self.workers)

    def dispatch(self) -> None:
        """Give waiting jobs, in order, to idle workers (or new ones) while memory allows."""
        for job in list(self.jobs):
            idle = next((w for w in self.workers if w.job is None), None)
            if idle is not None:
                if self.gate.try_reserve(job.footprint.total, running=self.running, job=job):
                    self.jobs.remove(job)
                    idle.job = job
                    if idle.ready:
                        idle.send(job)
            elif len(self.workers) >= self.limit:
                return
            elif self.gate.try_reserve(self.base + job.footprint.total, running=self.running, job=job):
                self.jobs.remove(job)
                self.workers.append(self._start(job))

    def _start(self, job: LearnerJob) -> _Worker:
        parent, child = self.mp.Pipe(duplex=True)
        process = self.mp.Process(target=worker_main, args=(child, self.context_path, self.work.threads),
                                  name="modalbag-worker", daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent, self.base, job=job)

    def wait(self) -> Iterator[tuple[_Worker, FromWorker]]:
        """Each worker with something to say (a message, or its end) before the next bag deadline."""
        waitables: dict[Any, _Worker] = {}
        for w in self.workers:
            waitables[w.conn] = w
            waitables[w.process.sentinel] = w
        for ready in wait(list(waitables), timeout=self._next_deadline()):
            w = waitables[ready]
            if w not in self.workers:
                continue  # already handled through its other waitable
            yield w, w.receive() if ready is w.conn or w.conn.poll() else Gone()

    def handle(self, w: _Worker, message: FromWorker) -> Iterator[JobResult]:
        """Move the pool on by one message; yields the results it settles."""
        if isinstance(message, JobResult):
            assert w.job is not None
            self.gate.release(w.job.footprint.total)
            w.job = None
            yield message
        elif isinstance(message, Ready):
            w.ready = True
            if message.rss:
                self.base = max(message.rss, self.base if self.base != WORKER_BASE_BYTES else 0)
            if w.job is not None:
                w.send(w.job)
        elif isinstance(message, Broken):
            # the snapshot cannot be loaded in a worker: every job fails the same way
            for job in [*(x.job for x in self.workers if x.job is not None), *self.jobs]:
                yield failed_result(job, f"workers cannot load the run: {message.reason}")
            self.jobs.clear()
            for x in self.workers:
                x.job = None
        else:  # Gone
            self.workers.remove(w)
            self.gate.release(w.reserved)
            if w.job is not None:
                reason = describe_exit(w.exitcode(), w.job) + ("" if w.ready else main_guard_hint())
                yield self.work.lost(w.job, reason, w.name)
            w.stop(wait_s=0)

    def _next_deadline(self) -> float | None:
        timeout = self.options.bag_timeout
        started = [w.sent_at for w in self.workers if w.job is not None and w.ready]
        if timeout is None or not started:
            return None
        return max(0.0, min(started) + timeout - time.monotonic())

    def expire(self) -> Iterator[JobResult]:
        """Kill the workers whose learner ran past ``bag_timeout``; that learner fails."""
        timeout = self.options.bag_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for w in list(self.workers):
            if w.job is not None and w.ready and now - w.sent_at > timeout:
                w.process.kill()
                self.workers.remove(w)
                self.gate.release(w.reserved)
                yield self.work.lost(w.job, f"the learner did not finish within bag_timeout={timeout} s", w.name)
                w.stop(wait_s=0)

    def close(self) -> None:
        busy = self.running > 0
        for w in self.workers:
            w.stop(wait_s=0.1 if busy else 5)


@hookimpl
def modalbag_register_executors(register: Register) -> None:
    register("local", LocalExecutor, options=LocalOptions,
             summary="Train learners side by side in worker processes on this machine (n_jobs of them)")
