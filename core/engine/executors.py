"""What every executor shares: learner jobs, their results, and what a worker needs to rebuild a run.

The engine hands an executor plugin a `TrainingWork`: the run's learner jobs, each with its memory
footprint estimated before it starts. The executor runs every job once, where it likes (this
process, worker processes, Ray tasks, torchrun ranks), and yields a `JobResult` per job as it
finishes.

A pluggy ``PluginManager`` cannot be pickled, so workers never receive the parent's `Run`. They
receive a `WorkerContext`: the config, the task, *copies* of the run's component instances as they
are after ``modalbag_run_start``, the trainer components and the data; `WorkerContext.build_run`
registers those copies, in the same order, into a plugin manager of the worker's own. What a copy
changes stays in the worker unless the learner's record carries it back. Results carry the trained
model, the records and the structured log events the worker emitted, which the parent re-emits
through the same loggers with the bag id, so logs end where the application sends them.

Same seed, same config: same models, whichever executor. Float reductions depend on the number of
threads, so a learner always runs with `threads_for` threads (``threads_per_learner``, or the cores
divided by ``n_jobs``), set by the executor around the fit, here or in a worker.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np
import structlog

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.engine.fitting import fit_learner
from modalbag.errors import NotPicklableError, UnknownPluginError, WorkerLostError
from modalbag.io.artifacts import to_json
from modalbag.kernel.component import Component
from modalbag.kernel.markers import hookimpl
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog, _new_plugin_manager
from modalbag.kernel.run import ActiveSet, Run, Selected, TaskInfo
from modalbag.logs import get_logger
from modalbag.training.profiling import peak_rss

log = get_logger("modalbag.executors")

MIB = 1 << 20
#: Memory a fresh worker process takes before its first job (Python, torch, modalbag), until measured.
WORKER_BASE_BYTES = 400 * MIB
#: Arrays at least this large go to workers as memory-mapped files rather than inside each message.
SHARE_AS_FILE_BYTES = 4 * MIB


# -- jobs and results --------------------------------------------------------------------------


@attrs.frozen
class Footprint:
    """A learner's estimated memory while it trains, in bytes, and how it was estimated."""

    data: int
    model: int
    activations: int
    source: str = "estimate"

    @property
    def total(self) -> int:
        return self.data + self.model + self.activations

    @property
    def total_mb(self) -> float:
        return round(self.total / MIB, 1)


@attrs.frozen
class LearnerJob:
    """One learner to fit: its spec, its bag, and its footprint estimated before it starts."""

    spec: LearnerSpec
    bag: Bag
    footprint: Footprint

    @property
    def learner_id(self) -> str:
        return self.spec.learner_id


@attrs.frozen
class JobResult:
    """What an executor yields per job: the learner's record plus where and how it ran.

    ``lost`` holds the reason when the worker died rather than the learner failing by itself;
    ``events`` are the structured log events captured in the worker (empty when it ran here).
    """

    learner: TrainedLearner
    events: tuple[Mapping[str, Any], ...] = ()
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0
    peak_rss: int | None = None
    lost: str | None = None


# -- threads and memory ------------------------------------------------------------------------


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def concurrent_learners(config: TrainingConfig) -> int:
    """How many learners ``n_jobs`` asks to train at once (-1: one per core)."""
    return available_cores() if config.n_jobs == -1 else config.n_jobs


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


# -- logs from workers -------------------------------------------------------------------------


@contextlib.contextmanager
def captured_events() -> Iterator[list[dict[str, Any]]]:
    """Collect the structlog events emitted inside the block (with their logger's name) instead of
    emitting them; warnings become ``worker.warning`` events. Restores the configuration after."""
    events: list[dict[str, Any]] = []

    def grab(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event = dict(event_dict)
        info = event.pop("exc_info", None)
        if info:
            info = sys.exc_info() if info is True else info
            if isinstance(info, BaseException):
                info = (type(info), info, info.__traceback__)
            if info and info[0] is not None:
                event["exception"] = "".join(traceback.format_exception(*info))
        event = {str(k): _plain(v) for k, v in event.items()}
        event.setdefault("log_level", "warning" if method == "warn" else method)
        event["logger_name"] = getattr(logger, "name", None)
        event["at"] = time.time()
        events.append(event)
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[grab])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield events
        for w in caught:
            events.append({"event": "worker.warning", "log_level": "warning", "logger_name": "modalbag.executors",
                           "category": w.category.__name__, "message": str(w.message), "at": time.time()})
    finally:
        structlog.configure(**before)


def _plain(value: Any) -> Any:
    """Event values as plain data, so that they pickle whatever a plugin logged."""
    return to_json(value, fallback=_describe)


def _describe(value: Any) -> str:
    return f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)


_LEVELS = {"debug", "info", "warning", "error", "critical", "exception"}


def replay_events(events: Sequence[Mapping[str, Any]], **context: Any) -> None:
    """Emit events captured in a worker through the parent's loggers of the same names.

    Nothing is filtered here: the application's configuration decides, as for events logged here.
    """
    for captured in events:
        event = dict(captured)
        name = event.pop("logger_name", None) or "modalbag.executors"
        level = event.pop("log_level", "info")
        level = level if level in _LEVELS else "info"
        message = event.pop("event", "")
        getattr(get_logger(name), "error" if level == "exception" else level)(message, **{**context, **event})


# -- what workers receive ----------------------------------------------------------------------


@attrs.frozen(eq=False)
class SharedData:
    """The modalities a run's jobs use: arrays inline, or paths of ``.npy`` files opened mmapped."""

    arrays: Mapping[str, np.ndarray | str]
    masks: Mapping[str, np.ndarray]
    specs: Mapping[str, Any]

    @classmethod
    def of(cls, dataset: MultimodalDataset, modalities: Sequence[str]) -> SharedData:
        return cls({m: dataset.arrays[m] for m in modalities}, {m: dataset.masks[m] for m in modalities},
                   {m: dataset.specs[m] for m in modalities})

    def as_files(self, directory: str, threshold: int = SHARE_AS_FILE_BYTES) -> SharedData:
        """Arrays of at least ``threshold`` bytes written once to ``directory``; each worker maps them
        read-only, so the page cache holds one copy however many workers read it."""
        arrays: dict[str, np.ndarray | str] = {}
        for i, (name, array) in enumerate(self.arrays.items()):
            if isinstance(array, np.ndarray) and array.nbytes >= threshold:
                path = os.path.join(directory, f"modality-{i}.npy")
                np.save(path, array)
                arrays[name] = path
            else:
                arrays[name] = array
        return attrs.evolve(self, arrays=arrays)

    def open(self) -> MultimodalDataset:
        arrays = {m: np.load(a, mmap_mode="r") if isinstance(a, str) else a for m, a in self.arrays.items()}
        return MultimodalDataset(arrays, dict(self.masks), dict(self.specs))


class TrainerTable:
    """The trainer components a run's jobs use, standing in for the catalog inside workers."""

    def __init__(self, components: Mapping[str, Component]):
        self.components = dict(components)

    def get(self, kind: str, name: str) -> Component:
        if kind == "trainer" and name in self.components:
            return self.components[name]
        raise UnknownPluginError(kind, name, self.components)


@attrs.frozen(eq=False)
class WorkerContext:
    """Everything a worker needs to fit a run's jobs, picklable (with cloudpickle)."""

    config: TrainingConfig
    task: TaskInfo
    run_id: str
    optimizer: Selected
    scheduler: Selected | None
    hooked: tuple[Selected, ...]
    instances: tuple[object, ...]
    trainers: Mapping[str, Component]
    data: SharedData
    targets: np.ndarray
    threads: int
    token: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    def build_run(self, *, distributed: Any = None, extra: Sequence[object] = ()) -> Run:
        """A `Run` over these instances (plus ``extra`` ones, called last) with its own plugin manager."""
        instances = (*self.instances, *extra)
        pm = _new_plugin_manager()
        for i, instance in reversed(list(enumerate(instances))):  # same order as the parent's
            pm.register(instance, name=f"{i}-{type(instance).__name__}")
        active = ActiveSet(self.optimizer, self.scheduler, self.hooked, instances, pm)
        return Run(config=self.config, active=active, task=self.task, run_id=self.run_id, distributed=distributed)

    def fit(self, job: LearnerJob, run: Run | None = None, dataset: MultimodalDataset | None = None) -> JobResult:
        """Fit one job here, capturing its log events: what a worker process or task runs."""
        started = time.time()
        run = run if run is not None else self.build_run()
        dataset = dataset if dataset is not None else self.data.open()
        with captured_events() as events, limited_threads(self.threads):
            learner = fit_learner(job.spec, job.bag, dataset, self.targets, run, TrainerTable(self.trainers))
        return JobResult(learner, tuple(events), worker_name(), started, time.time(), peak_rss())


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


_CACHED: dict[str, tuple[Run, MultimodalDataset]] = {}


def fit_in_worker(context: WorkerContext, job: LearnerJob) -> JobResult:
    """Fit ``job`` in a worker, reusing the run this process built for the same context."""
    if context.token not in _CACHED:
        _CACHED.clear()  # one run per worker at a time
        _CACHED[context.token] = (context.build_run(), context.data.open())
    run, dataset = _CACHED[context.token]
    try:
        return context.fit(job, run, dataset)
    except BaseException as exc:  # noqa: BLE001 - SystemExit or KeyboardInterrupt from a plugin
        return failed_result(job, exc)


def failed_result(job: LearnerJob, error: BaseException | str, *, lost: bool = False,
                  worker: str = "") -> JobResult:
    """A failed record for ``job``: ``lost`` when its worker died rather than the learner raising."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    learner = TrainedLearner(job.spec, "failed", error=f"WorkerLostError: {text}" if lost else text)
    return JobResult(learner, worker=worker, finished=time.time(), lost=text if lost else None)


# -- the work an executor receives -------------------------------------------------------------


@attrs.define(eq=False)
class TrainingWork:
    """A run's learner jobs and what running them needs, here (`fit_here`) or elsewhere (`context`)."""

    run: Run
    jobs: tuple[LearnerJob, ...]
    dataset: MultimodalDataset
    targets: np.ndarray
    catalog: Catalog
    threads: int
    memory_budget: int | None
    _context: WorkerContext | None = None

    @property
    def config(self) -> TrainingConfig:
        return self.run.config

    def fit_here(self, job: LearnerJob) -> JobResult:
        """Fit ``job`` in this process on the parent's run (its hooks see the parent's instances)."""
        started = time.time()
        with limited_threads(self.threads):
            learner = fit_learner(job.spec, job.bag, self.dataset, self.targets, self.run, self.catalog)
        return JobResult(learner, (), worker_name(), started, time.time(), peak_rss())

    def context(self) -> WorkerContext:
        """The picklable snapshot of this run that workers rebuild it from (made once)."""
        if self._context is None:
            active = self.run.active
            modalities = sorted({m for job in self.jobs for m in job.spec.modalities})
            trainers = {job.spec.trainer: self.catalog.get("trainer", job.spec.trainer) for job in self.jobs}
            self._context = WorkerContext(
                config=self.run.config, task=self.run.task, run_id=self.run.run_id, optimizer=active.optimizer,
                scheduler=active.scheduler, hooked=active.hooked, instances=tuple(active.instances),
                trainers=trainers, data=SharedData.of(self.dataset, modalities), targets=self.targets,
                threads=self.threads)
        return self._context

    def lost(self, job: LearnerJob, reason: str, worker: str = "") -> JobResult:
        return failed_result(job, reason, lost=True, worker=worker)


def dumps(obj: Any, what: str = "the run") -> bytes:
    """cloudpickle ``obj``; a component that cannot be copied to workers is named in the error."""
    import cloudpickle

    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing here
        raise NotPicklableError(
            f"{what} cannot be copied to worker processes ({type(exc).__name__}: {exc}); make the "
            f"plugin instances picklable, or train in this process with executor='serial'") from exc


def loads(data: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(data)


class Executor(Protocol):
    """What an executor factory returns (see ``modalbag_register_executors``)."""

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        """Run every job of ``work`` once; yield each one's result as it finishes, in any order."""


# -- progress ----------------------------------------------------------------------------------


class ProgressBar:
    """One line over the bags, redrawn as each finishes: only when the user asks (``progress_bar``)."""

    def __init__(self, total: int, stream: io.TextIOBase | None = None, width: int = 30):
        self.total, self.done, self.failed, self.width = total, 0, 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.current = ""  # the epoch of the learner training in this process, when one is
        self._draw()

    @staticmethod
    def wanted(config: TrainingConfig, stream: Any = None) -> bool:
        """``progress_bar``, or ``verbose`` on a terminal: never drawn into a file or a pipe unasked."""
        stream = stream if stream is not None else sys.stderr
        return config.progress_bar or (config.verbose and bool(getattr(stream, "isatty", lambda: False)()))

    @hookimpl
    def modalbag_epoch_end(self, run: Any, fit: Any, record: Any) -> None:
        """Run hook (registered by the engine for in-process learners): show the learner's epoch."""
        self.current = f" | {fit.spec.learner_id} epoch {record.epoch}/{run.config.epochs}"
        self._draw()

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self._draw()

    def _draw(self) -> None:
        filled = int(self.width * self.done / max(1, self.total))
        failed = f", {self.failed} failed" if self.failed else ""
        seconds = time.perf_counter() - self.started
        self.stream.write(f"\rbags [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
                          f"{failed} {seconds:.0f}s{self.current}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


__all__ = [
    "Executor", "Footprint", "JobResult", "LearnerJob", "MemoryGate", "NotPicklableError", "ProgressBar",
    "SharedData", "TrainerTable", "TrainingWork", "WorkerContext", "WorkerLostError", "available_cores",
    "available_memory", "captured_events", "concurrent_learners", "estimate_footprint", "failed_result",
    "fit_in_worker", "limited_threads", "memory_budget", "replay_events", "threads_for",
]
