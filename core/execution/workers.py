"""What a worker needs to rebuild a run and fit its jobs, and how it travels (cloudpickle).

A pluggy ``PluginManager`` cannot be pickled, so workers never receive the parent's `Run`. They
receive a `WorkerContext`: the config, the task, *copies* of the run's component instances as they
are after ``modalbag_run_start``, the trainer components and the data; `WorkerContext.build_run`
registers those copies, in the same order, into a plugin manager of the worker's own. What a copy
changes stays in the worker unless the learner's record carries it back.
"""

from __future__ import annotations

import ast
import os
import platform
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.dataset import MultimodalDataset
from modalbag.data.domain import AdaptedDataset, target_domain
from modalbag.errors import NotPicklableError, UnknownPluginError
from modalbag.execution.events import captured_events
from modalbag.execution.fitting import fit_learner
from modalbag.execution.jobs import MIB, JobResult, LearnerJob, failed_result
from modalbag.execution.resources import limited_threads
from modalbag.kernel.component import Component
from modalbag.kernel.registry import _new_plugin_manager
from modalbag.kernel.run import ActiveSet, Run, Selected, TaskInfo
from modalbag.training.profiling import peak_rss


def unguarded_main_script() -> str | None:
    """The main script's path when it has no ``if __name__ == "__main__":`` guard, else None.

    A ``forkserver`` or ``spawn`` worker imports the parent's main script: without the guard, the
    training code at its top level runs again in every worker, which fails while starting. An
    interactive session, a notebook or ``python -m`` of a guarded module has nothing to re-run.
    """
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not str(path).endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body):
        return None
    return str(path)


#: Arrays at least this large go to workers as memory-mapped files rather than inside each message.
SHARE_AS_FILE_BYTES = 4 * MIB


@attrs.frozen(eq=False)
class SharedData:
    """The modalities a run's jobs use: arrays inline, or paths of ``.npy`` files opened mmapped."""

    arrays: Mapping[str, np.ndarray | str]
    masks: Mapping[str, np.ndarray]
    specs: Mapping[str, Any]
    #: The target domain's rows in the same modalities (``domain_adaptation``), shared the same way.
    domain: SharedData | None = None

    @classmethod
    def of(cls, dataset: MultimodalDataset, modalities: Sequence[str]) -> SharedData:
        target = target_domain(dataset)
        return cls({m: dataset.arrays[m] for m in modalities}, {m: dataset.masks[m] for m in modalities},
                   {m: dataset.specs[m] for m in modalities},
                   None if target is None else cls.of(target, modalities))

    def as_files(self, directory: str, threshold: int = SHARE_AS_FILE_BYTES, prefix: str = "") -> SharedData:
        """Arrays of at least ``threshold`` bytes written once to ``directory``; each worker maps them
        read-only, so the page cache holds one copy however many workers read it."""
        arrays: dict[str, np.ndarray | str] = {}
        for i, (name, array) in enumerate(self.arrays.items()):
            if isinstance(array, np.ndarray) and array.nbytes >= threshold:
                path = os.path.join(directory, f"{prefix}modality-{i}.npy")
                np.save(path, array)
                arrays[name] = path
            else:
                arrays[name] = array
        domain = None
        if self.domain is not None:
            domain = self.domain.as_files(directory, threshold, prefix=f"{prefix}target-")
        return attrs.evolve(self, arrays=arrays, domain=domain)

    def open(self) -> MultimodalDataset:
        arrays = {m: np.load(a, mmap_mode="r") if isinstance(a, str) else a for m, a in self.arrays.items()}
        dataset = MultimodalDataset(arrays, dict(self.masks), dict(self.specs))
        return dataset if self.domain is None else AdaptedDataset.of(dataset, self.domain.open())


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
    observers: frozenset[int] = frozenset()  #: indexes of the instances that only observe (sinks)
    token: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    def build_run(self, *, distributed: Any = None, extra: Sequence[object] = ()) -> Run:
        """A `Run` over these instances (plus ``extra`` ones, called last) with its own plugin manager."""
        instances = (*self.instances, *extra)
        pm = _new_plugin_manager()
        for i, instance in reversed(list(enumerate(instances))):  # same order as the parent's
            if i in self.observers:
                pm.register_observer(instance, name=f"{i}-{type(instance).__name__}")
            else:
                pm.register(instance, name=f"{i}-{type(instance).__name__}")
        active = ActiveSet(self.optimizer, self.scheduler, self.hooked, instances, pm, observers=self.observers)
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


__all__ = ["SHARE_AS_FILE_BYTES", "SharedData", "TrainerTable", "WorkerContext", "dumps", "fit_in_worker",
           "loads", "worker_name"]
