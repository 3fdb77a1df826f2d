"""The run and what hooks receive about it: the task, a learner's data, the run itself.

These are kernel types: hook specs name them, plugins receive them, and they depend on nothing above
the kernel (config, the active plugin set, schedules).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import pluggy

from modalbag.config.training import TrainingConfig
from modalbag.kernel.component import Component
from modalbag.kernel.fit import Stash
from modalbag.kernel.schedules import ConstantSchedule, LinearWarmup, Schedule


@attrs.frozen
class Selected:
    """A component chosen for a run, with its options parsed and validated."""

    role: str
    component: Component
    options: Any


@attrs.frozen
class ActiveSet:
    """What one run uses: the factories it calls and the instances registered for its hooks."""

    optimizer: Selected
    scheduler: Selected | None
    hooked: tuple[Selected, ...]
    instances: tuple[object, ...]
    plugin_manager: pluggy.PluginManager
    executor: Selected | None = None
    #: Indexes into ``instances`` of the observers (sinks): registered so that their failures are isolated.
    observers: frozenset[int] = frozenset()

    def names(self) -> list[str]:
        chosen = [self.optimizer] + ([self.scheduler] if self.scheduler else []) + list(self.hooked)
        chosen += [self.executor] if self.executor else []
        return [s.component.qualified_name for s in chosen]


@attrs.frozen
class TaskInfo:
    """What the learners predict: task type, output width, class values and the class prior."""

    task_type: str
    n_outputs: int
    classes: np.ndarray | None = attrs.field(eq=False)
    prior: np.ndarray = attrs.field(eq=False)

    @classmethod
    def from_targets(cls, task_type: str, targets: np.ndarray, classes: np.ndarray | None) -> TaskInfo:
        """The task of encoded ``targets``: one output per class (classification, multilabel) or per
        target column (regression); the prior is the class frequencies, else the targets' mean."""
        if task_type == "regression":
            return cls(task_type, targets.shape[1], classes, targets.mean(axis=0))
        assert classes is not None
        prior = (np.bincount(targets, minlength=len(classes)) / len(targets) if task_type == "classification"
                 else targets.mean(axis=0))
        return cls(task_type, len(classes), classes, prior)


@attrs.frozen
class BagData:
    """A learner's training data: full arrays (no copies) plus the rows it may use."""

    arrays: Mapping[str, np.ndarray]
    masks: Mapping[str, np.ndarray]
    specs: Mapping[str, Any]
    targets: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    #: The target domain's unlabelled rows in the same modalities (``domain_adaptation`` with
    #: ``target_data=``); None when the run has none. Every target row may be used.
    domain_arrays: Mapping[str, np.ndarray] | None = None
    domain_masks: Mapping[str, np.ndarray] | None = None


@attrs.define(eq=False)
class Run:
    """One training run: its config, its own plugin manager's hooks, and shared context."""

    config: TrainingConfig
    active: ActiveSet
    task: TaskInfo
    run_id: str = attrs.field(factory=lambda: uuid.uuid4().hex[:12])
    stash: Stash = attrs.field(factory=Stash)
    #: The executor plugin's instance that runs the learners (built by `Engine.prepare`).
    executor: Any = attrs.field(default=None, repr=False)
    #: This process's DDP rank (`modalbag.training.distributed.DistributedContext`), or None outside DDP.
    distributed: Any = None
    #: What the run did differently from its config and why (a worker count capped at the cores, ...).
    notes: list[str] = attrs.field(factory=list)

    @property
    def hook(self) -> Any:
        return self.active.plugin_manager.hook

    def build_optimizer(self, params: Any) -> Any:
        sel = self.active.optimizer
        return sel.component.factory(params, self.config, sel.options)

    def build_schedule(self, optimizer: Any, steps_per_epoch: int) -> Schedule:
        """The configured scheduler, behind a linear warmup unless it warms up by itself."""
        sel = self.active.scheduler
        inner: Schedule = (ConstantSchedule() if sel is None
                           else sel.component.factory(optimizer, self.config, sel.options, steps_per_epoch))
        handles_warmup = sel is not None and getattr(sel.component.factory, "handles_warmup", False)
        if self.config.warmup_epochs and not handles_warmup:
            return LinearWarmup(optimizer, inner, self.config.warmup_epochs * steps_per_epoch)
        return inner


__all__ = ["ActiveSet", "BagData", "Run", "Selected", "TaskInfo"]
