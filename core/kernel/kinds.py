"""The component kinds, as data: one row per kind, read by the registry, the assembly of a run, the
config checks and the docs generator. Adding a kind is one row here and one registration hook spec.

Roles say what a run does with the components of a kind:

- ``per_bag``: chosen for each bag by learner selection (trainers);
- ``factory``: the engine calls the factory for what it needs (an optimizer per learner, a schedule,
  the executor);
- ``hooks``: the factory's instance joins the run's plugin manager and implements run hooks
  (precision, sinks, validators);
- ``denoising``: combined into one denoising hooks instance per run, objectives weighted by the
  strategy (one loss module per learner);
- ``on_demand``: looked up by name after training, never during it (reports).
"""

from __future__ import annotations

import attrs

ROLES = ("per_bag", "factory", "hooks", "denoising", "on_demand")


@attrs.frozen
class Kind:
    """One component kind: its registration hook, the config option naming its components, its role."""

    name: str
    hook: str
    option: str | None  # the TrainingConfig option that names components; None: chosen otherwise
    role: str = attrs.field(validator=attrs.validators.in_(ROLES))
    summary: str
    #: The component used when the config names none (the executor that runs learners in this process).
    fallback: str | None = None
    #: Its instances only observe the run: each of their hooks is isolated, and the first exception
    #: disables the instance instead of failing a learner (`modalbag.kernel.isolation`).
    observer: bool = False


#: Every kind, in listing order.
KIND_TABLE: tuple[Kind, ...] = (
    Kind("trainer", "modalbag_register_trainers", None, "per_bag", "learns one bag: a model over its modalities"),
    Kind("optimizer", "modalbag_register_optimizers", "optimizer_type", "factory",
         "updates a neural learner's parameters"),
    Kind("scheduler", "modalbag_register_schedulers", "scheduler_type", "factory", "sets the learning rate per step"),
    Kind("objective", "modalbag_register_objectives", "denoising_objectives", "denoising",
         "a cross-modal denoising loss term"),
    Kind("strategy", "modalbag_register_strategies", "denoising_strategy", "denoising",
         "weighs the denoising objectives against the task loss"),
    Kind("precision", "modalbag_register_precisions", None, "hooks",
         "autocast, loss scaling or accumulation around each step (turned on by values)"),
    Kind("sink", "modalbag_register_sinks", "sinks", "hooks", "records the run's metrics somewhere", observer=True),
    Kind("validator", "modalbag_register_validators", "validators", "hooks",
         "checks each epoch: stops early, keeps the best weights"),
    Kind("executor", "modalbag_register_executors", "executor", "factory", "decides where each learner trains",
         fallback="serial"),
    Kind("report", "modalbag_register_reports", None, "on_demand", "scores a trained ensemble on held-out data"),
)

#: Kind name -> its row.
KIND: dict[str, Kind] = {kind.name: kind for kind in KIND_TABLE}

#: Kind name -> registration hook name (the registry's view of the table).
KINDS: dict[str, str] = {kind.name: kind.hook for kind in KIND_TABLE}


def is_observer(kind: str) -> bool:
    """Whether instances of ``kind`` only observe (False for a kind this release does not know)."""
    return kind in KIND and KIND[kind].observer


def role_of(kind: str) -> str:
    """The role of ``kind`` (``hooks`` for a kind this release does not know: its instances can only hook in)."""
    return KIND[kind].role if kind in KIND else "hooks"


__all__ = ["KIND", "KINDS", "KIND_TABLE", "ROLES", "Kind", "is_observer", "role_of"]
