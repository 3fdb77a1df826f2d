"""``ray``: each learner a Ray task, on an existing cluster (``ray_address``) or a local Ray instance.

Needs the extra: ``pip install 'modalbag[ray]'``. If Ray is already initialised in this process, the
executor uses that; otherwise it connects to ``ray_address`` (``"auto"`` finds a running cluster) or,
with none, starts a local instance that stays up for later runs of this process (``ray.shutdown()``
ends it). The run's snapshot is put in Ray's object store once; every task reads it from there.

Ray schedules: each task asks for ``threads_per_learner`` CPUs and its estimated footprint as
Ray's ``memory`` resource, so a node runs no more learners at once than its cores and memory allow.
Tasks are never retried by Ray (``max_retries=0``): a task whose worker dies fails its own learner
only, with Ray's error, and the others go on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.errors import ConfigError
from modalbag.execution import JobResult, LearnerJob, NotPicklableError, TrainingWork, WorkerContext, fit_in_worker
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least
from modalbag.logs import get_logger

log = get_logger("modalbag.executors.ray")


@attrs.frozen(kw_only=True)
class RayOptions:
    ray_address: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str)), metadata={
            "help": "Address of the Ray cluster to connect to ('auto' finds a running one; None starts a local "
                    "Ray instance). Unused when Ray is already initialised in this process."})
    ray_num_cpus: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(integer_at_least(1)), metadata={
            "help": "CPUs of the local Ray instance started when ray_address is None (None: Ray detects them); "
                    "unused when connecting to a cluster."})


def fit_task(context: WorkerContext, job: LearnerJob) -> JobResult:
    """The body of one Ray task (the object store hands ``context`` over already deserialised)."""
    return fit_in_worker(context, job)


class RayExecutor:
    def __init__(self, config: Any, options: RayOptions | None = None):
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("executor='ray' needs the ray package, which is not installed: "
                              "pip install 'modalbag[ray]' (or choose executor='local')")
        self.config = config
        self.options = options or RayOptions()

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
            log.info("executor.ray.init", address=self.options.ray_address or "local")
            local = {} if self.options.ray_address else {"num_cpus": self.options.ray_num_cpus,
                                                         "include_dashboard": False}
            ray.init(address=self.options.ray_address, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}}, **local)
        return ray

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        if not work.jobs:
            return
        ray = self._connect()
        try:
            context_ref = ray.put(work.context())
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds for what cannot be pickled
            raise NotPicklableError(f"the run cannot be copied to Ray workers ({type(exc).__name__}: {exc}); "
                                    f"make the plugin instances picklable, or use executor='serial'") from exc
        task = ray.remote(fit_task)
        capacity = ray.cluster_resources().get("memory")
        pending: dict[Any, LearnerJob] = {}
        try:
            for job in work.jobs:
                memory = job.footprint.total
                if capacity:  # a request above what any node has would wait forever
                    memory = min(memory, int(0.9 * capacity))
                ref = task.options(num_cpus=work.threads, memory=memory, max_retries=0,
                                   name=f"modalbag:{job.learner_id}").remote(context_ref, job)
                pending[ref] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    yield ray.get(done[0])
                except ray.exceptions.RayError as exc:  # the worker died, ran out of memory, was cancelled
                    yield work.lost(job, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


@hookimpl
def modalbag_register_executors(register: Register) -> None:
    register("ray", RayExecutor, options=RayOptions,
             summary="Each learner a Ray task, on a cluster (ray_address) or a local Ray instance")
