"""Progressive learning: training in stages that freeze layers and scale the learning rate.

``progressive_stages`` is a list of stages, each ``{"epochs": n, "frozen_layers": [...],
"lr_multiplier": m, "fine_tuning": bool}``. Stage i covers the ``epochs`` after the previous
stages; the last stage continues to the end of training. ``frozen_layers`` names modules of the
network (``"encoder"`` matches ``encoders.*``: a name matches a parameter when a component of the
parameter's dotted path equals it or equals it plus ``s``); frozen parameters get no gradient, so
the optimizer leaves them (and their weight decay) untouched. ``fine_tuning: true`` unfreezes
every layer whatever ``frozen_layers`` says. ``lr_multiplier`` scales the rate the schedule sets,
without disturbing the schedule's own timeline (see `StageScaledSchedule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modalbag.config.stages import Stage, parse_stages
from modalbag.kernel.schedules import Schedule


def matches(parameter_name: str, layer: str) -> bool:
    """Whether ``layer`` names a module on the parameter's dotted path (``encoder`` ~ ``encoders``)."""
    parts = parameter_name.split(".")
    return any(part in (layer, layer + "s") for part in parts) or parameter_name.startswith(layer + ".")


class StageScaledSchedule:
    """Wraps a schedule so the learning rate it sets is multiplied by the current stage's factor.

    Before the inner schedule steps, the factor is divided out, so relative schedules (plateau
    reductions) and absolute ones (cosine, warmup) keep their own state exactly as without stages.
    """

    def __init__(self, optimizer: Any, inner: Schedule):
        self.optimizer, self.inner, self.multiplier = optimizer, inner, 1.0

    def set_multiplier(self, multiplier: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] / self.multiplier * multiplier
        self.multiplier = multiplier

    def _around(self, step: Any) -> None:
        m = self.multiplier
        self.set_multiplier(1.0)
        step()
        self.set_multiplier(m)

    def after_batch(self) -> None:
        self._around(self.inner.after_batch)

    def after_epoch(self, val_loss: float | None) -> None:
        self._around(lambda: self.inner.after_epoch(val_loss))


class ProgressivePlan:
    """Applies the stage of each epoch to a model and its schedule."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self.current: int | None = None

    def stage_index(self, epoch: int) -> int:
        end = 0
        for i, stage in enumerate(self.stages):
            end += stage.epochs
            if epoch <= end:
                return i
        return len(self.stages) - 1

    def check_layers(self, model: Any) -> None:
        """Fail before training when a stage names a module the network does not have."""
        names = [n for n, _ in model.named_parameters()]
        top = sorted({n.split(".")[0] for n in names})
        for stage in self.stages:
            for layer in stage.frozen_layers:
                if not any(matches(n, layer) for n in names):
                    raise ValueError(f"progressive stage {stage.name!r} freezes {layer!r}, which matches no "
                                     f"module of the network; modules: {', '.join(top)}")

    def enter(self, epoch: int, model: Any, schedule: StageScaledSchedule) -> Stage | None:
        """Apply epoch ``epoch``'s stage; returns it when the stage changed, else None."""
        index = self.stage_index(epoch)
        if index == self.current:
            return None
        self.current = index
        stage = self.stages[index]
        frozen = () if stage.fine_tuning else stage.frozen_layers
        for name, param in model.named_parameters():
            trainable = not any(matches(name, layer) for layer in frozen)
            param.requires_grad_(trainable)
            if not trainable:
                param.grad = None
        schedule.set_multiplier(stage.lr_multiplier)
        return stage


__all__ = ["ProgressivePlan", "Stage", "StageScaledSchedule", "matches", "parse_stages"]
