"""How a trainer offers to learn a bag: the bag's profile it is shown and the proposal it answers.

Learner selection (`modalbag.engine.selection`) asks every candidate trainer's ``propose(profile,
strategy)``; the proposals' scores order the portfolio, and measurement decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from modalbag.kernel.modalities import ModalitySpec


@attrs.frozen
class BagProfile:
    """What a trainer needs to know about a bag to propose for it."""

    modalities: tuple[str, ...]
    specs: Mapping[str, ModalitySpec]
    n_rows: int
    task_type: str
    num_classes: int

    @property
    def types(self) -> dict[str, str]:
        return {m: self.specs[m].type for m in self.modalities}

    @property
    def n_features(self) -> int:
        return sum(self.specs[m].size for m in self.modalities)


@attrs.frozen
class LearnerProposal:
    """A trainer's offer for a bag: a score (higher wins), an architecture and why.

    ``cost``, where the trainer can estimate it, is the seconds one fit on the bag's rows takes on one
    core, from the profile alone (a formula fitted to measurements, deterministic): only ratios
    between candidates are used, to race a costly candidate out when it is behind
    (`modalbag.engine.portfolio.race`). Measured wall time would make the choice depend on timing noise.
    """

    score: float
    architecture: Mapping[str, Any] = attrs.field(factory=dict)
    reason: str = ""
    cost: float | None = None


__all__ = ["BagProfile", "LearnerProposal"]
