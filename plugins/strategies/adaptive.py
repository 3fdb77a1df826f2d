"""``adaptive``: weights that follow the loss magnitudes, so no objective dominates the task.

With exponential moving averages (momentum ``adaptive_momentum``) of the task loss T and of each of
the K objectives that gave a loss this step, L_k (each average updated on the steps it runs)::

    w_k = clip( T / (K * L_k), adaptive_min_weight, adaptive_max_weight )

so each objective contributes about ``denoising_weight * T / K`` whatever its natural scale, and
all of them together about ``denoising_weight * T``; the clip bounds how far a vanishing loss can be
amplified. Because every step's objectives share T, this strategy ``balances_each_step``: when
objectives take turns (``denoising_objectives_per_step``) the one or few that run share the same
T, so the expected loss per step and per objective is the one of running all of them, and no
n/k factor is applied on top. An objective waiting for its turn keeps its moving average.
Without a task loss (standalone use) the reference T is 1. The overall weight ramps up
linearly over ``warmup_epochs`` so the task is learned first. Averages stay on the device: no host
sync per step. (Magnitude balancing in the spirit of GradNorm, Chen et al. 2018, without its
gradient-norm pass.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from modalbag import hookimpl
from modalbag.denoising.objectives import warmup_scale
from modalbag.kernel import Register
from modalbag.kernel.options import positive, strictly_between_0_and_1


@attrs.frozen(kw_only=True)
class AdaptiveOptions:
    adaptive_momentum: float = attrs.field(default=0.9, validator=strictly_between_0_and_1, metadata={
        "help": "Momentum of the moving averages of the task loss and of each objective's loss, strictly "
                "between 0 and 1 (higher: smoother, slower to follow)."})
    adaptive_min_weight: float = attrs.field(default=0.01, validator=positive, metadata={
        "help": "Lower bound of each objective's weight."})
    adaptive_max_weight: float = attrs.field(default=10.0, validator=positive, metadata={
        "help": "Upper bound of each objective's weight: how far a vanishing loss can be amplified."})

    def __attrs_post_init__(self) -> None:
        if self.adaptive_min_weight > self.adaptive_max_weight:
            raise ValueError("adaptive_min_weight must not exceed adaptive_max_weight")


class AdaptiveWeighting:
    """The moving averages of one learner's fit, kept as one vector (in ``names`` order) so a step
    costs a few operators whatever the number of objectives; on the device, so no host sync."""

    balances_each_step = True  # the objectives that ran share T: no taking-turns factor on top

    def __init__(self, options: AdaptiveOptions, warmup_epochs: int):
        self.options, self.warmup_epochs = options, warmup_epochs
        self.names: list[str] = []
        self.average: torch.Tensor | None = None
        self.task_average: torch.Tensor | None = None
        self.resting: dict[str, torch.Tensor] = {}  # averages of objectives that did not run last step

    def scale(self, epoch: int) -> float:
        return warmup_scale(epoch, self.warmup_epochs)

    def active(self, epoch: int) -> set[str] | None:
        return None

    def _previous(self, names: list[str], current: torch.Tensor) -> torch.Tensor:
        """Last step's averages for ``names``; an objective new to the set starts at its current loss."""
        if self.average is None:
            return current
        if self.average.device != current.device:  # restored from a checkpoint (loaded on the CPU)
            self.average = self.average.to(current.device)
            self.resting = {name: value.to(current.device) for name, value in self.resting.items()}
            if self.task_average is not None:
                self.task_average = self.task_average.to(current.device)
        if names == self.names:
            return self.average
        self.resting.update(zip(self.names, self.average.unbind(), strict=True))
        return torch.stack([self.resting.pop(name, current[i]) for i, name in enumerate(names)])

    def weights(self, losses: Mapping[str, torch.Tensor], task_loss: torch.Tensor | None) -> torch.Tensor:
        names = list(losses)
        current = torch.stack([loss.detach().float() for loss in losses.values()])
        momentum = self.options.adaptive_momentum
        self.average = torch.lerp(current, self._previous(names, current), momentum)
        self.names = names
        reference: torch.Tensor | float = 1.0
        if task_loss is not None:
            task = task_loss.detach().float()
            self.task_average = task if self.task_average is None else torch.lerp(task, self.task_average, momentum)
            reference = self.task_average
        return (reference / (len(names) * self.average.abs().clamp_min(1e-8))).clamp(
            self.options.adaptive_min_weight, self.options.adaptive_max_weight)


class Adaptive:
    def __init__(self, config: Any, options: AdaptiveOptions):
        self.options, self.warmup_epochs = options, config.warmup_epochs

    def for_fit(self, objectives: Sequence[str]) -> AdaptiveWeighting:
        return AdaptiveWeighting(self.options, self.warmup_epochs)


@hookimpl
def modalbag_register_strategies(register: Register) -> None:
    register("adaptive", Adaptive, options=AdaptiveOptions,
             summary="Weights balance each objective to a share of the task loss (bounded), with warmup")
