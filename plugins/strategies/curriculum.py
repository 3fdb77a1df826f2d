"""``curriculum``: objectives and their weight enter in stages.

``curriculum_stages`` is a list of ``{'epochs': E, 'objectives': [...], 'denoising_weight': w}``:
a stage runs until epoch E (inclusive) and the last stage runs to the end. A stage without
``objectives`` keeps all of them; without ``denoising_weight`` it keeps the configured one. With no
stages, objectives are added one at a time, in the order of ``denoising_objectives``, at equal
intervals over the run. The overall weight also ramps up linearly over ``warmup_epochs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from modalbag import hookimpl
from modalbag.denoising.objectives import warmup_scale
from modalbag.kernel import Register


@attrs.frozen(kw_only=True)
class CurriculumOptions:
    pass


@attrs.frozen
class Stage:
    last_epoch: int
    objectives: frozenset[str] | None
    weight_ratio: float  # stage's denoising_weight / configured denoising_weight


def default_stages(objectives: Sequence[str], epochs: int) -> list[Stage]:
    k = max(1, len(objectives))
    return [Stage(max(1, round((i + 1) * epochs / k)), frozenset(objectives[: i + 1]), 1.0) for i in range(k)]


class CurriculumWeighting:
    def __init__(self, stages: list[Stage], warmup_epochs: int):
        self.stages, self.warmup_epochs = stages, warmup_epochs

    def stage(self, epoch: int) -> Stage:
        return next((s for s in self.stages if epoch <= s.last_epoch), self.stages[-1])

    def scale(self, epoch: int) -> float:
        return self.stage(epoch).weight_ratio * warmup_scale(epoch, self.warmup_epochs)

    def active(self, epoch: int) -> set[str] | None:
        chosen = self.stage(epoch).objectives
        return None if chosen is None else set(chosen)

    def weights(self, losses: Mapping[str, torch.Tensor], task_loss: torch.Tensor | None) -> dict[str, float]:
        return dict.fromkeys(losses, 1.0)


class Curriculum:
    def __init__(self, config: Any, options: CurriculumOptions):
        self.config = config

    def for_fit(self, objectives: Sequence[str]) -> CurriculumWeighting:
        cfg = self.config
        if cfg.curriculum_stages:
            stages = [Stage(s["epochs"], frozenset(s["objectives"]) if "objectives" in s else None,
                            s.get("denoising_weight", cfg.denoising_weight) / cfg.denoising_weight)
                      for s in cfg.curriculum_stages]
        else:
            stages = default_stages(list(objectives), cfg.epochs)
        return CurriculumWeighting(stages, cfg.warmup_epochs)


@hookimpl
def modalbag_register_strategies(register: Register) -> None:
    register("curriculum", Curriculum, options=CurriculumOptions,
             summary="Objectives and weights enter in stages (curriculum_stages), with warmup")
