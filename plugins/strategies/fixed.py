"""``fixed``: every objective weighs 1 for the whole run (times ``denoising_weight``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch

from modalbag import hookimpl
from modalbag.kernel import Register


@attrs.frozen(kw_only=True)
class FixedOptions:
    pass


class FixedWeighting:
    def scale(self, epoch: int) -> float:
        return 1.0

    def active(self, epoch: int) -> set[str] | None:
        return None

    def weights(self, losses: Mapping[str, torch.Tensor], task_loss: torch.Tensor | None) -> dict[str, float]:
        return dict.fromkeys(losses, 1.0)


class Fixed:
    def __init__(self, config: Any, options: FixedOptions):
        pass

    def for_fit(self, objectives: Sequence[str]) -> FixedWeighting:
        return FixedWeighting()


@hookimpl
def modalbag_register_strategies(register: Register) -> None:
    register("fixed", Fixed, options=FixedOptions, summary="Constant weight 1 for every objective")
