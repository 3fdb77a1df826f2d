"""``serial``: every learner in this process, one after another (the default when ``n_jobs`` is 1).

Learners see the run's own component instances, so whatever a plugin keeps on itself during a fit
is there afterwards. Each fit runs with the run's thread count (``threads_per_learner``, or the
cores divided by ``n_jobs``), restored after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.execution import JobResult, TrainingWork
from modalbag.kernel import Register


@attrs.frozen(kw_only=True)
class SerialOptions:
    pass


class SerialExecutor:
    def __init__(self, config: Any, options: SerialOptions | None = None):
        self.config = config

    def execute(self, work: TrainingWork) -> Iterator[JobResult]:
        for job in work.jobs:
            yield work.fit_here(job)


@hookimpl
def modalbag_register_executors(register: Register) -> None:
    register("serial", SerialExecutor, options=SerialOptions,
             summary="Train the learners in this process, one after another")
