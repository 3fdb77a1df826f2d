"""The contracts plugin components keep, as Protocols (no base class to inherit): a trainer's learner.

The other kinds' contracts live where their callers are: `modalbag.kernel.schedules.Schedule`,
`modalbag.denoising.Objective` and `Strategy`, the executor's in `modalbag.execution.work`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from modalbag.kernel.fit import FitState
    from modalbag.kernel.proposals import BagProfile, LearnerProposal
    from modalbag.kernel.records import LearnerSpec
    from modalbag.kernel.run import BagData, Run


class Learner(Protocol):
    """What ``factory(spec, config, options)`` of a trainer component returns."""

    spec: LearnerSpec

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal | None:
        """Offer to learn a bag (score + architecture), or ``None`` when it cannot."""

    def fit(self, data: BagData, run: Run, fit: FitState) -> None:
        """Train on ``data.train_rows`` (validate on ``data.val_rows``), appending to ``fit.records``
        and calling the run hooks; raise to fail this learner alone."""

    def predict_output(self, inputs: Mapping[str, np.ndarray],
                       masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Class probabilities (n, C), label probabilities, or regression values (n, k)."""

    def describe(self) -> dict[str, Any]:
        """Architecture and size, for reports."""


__all__ = ["Learner"]
