"""Learner selection: which trainer learns each bag, with what architecture.

Every registered trainer is asked to `propose` for each bag (given the bag's profile and the
optimization strategy); the best-scored proposal wins, ties going to the trainer listed first.
Trainers that cannot learn a bag (a modality type they do not handle, a library that is not
installed) return ``None``. A trainer named explicitly is asked first whether it can run at all: a
factory's optional ``check_available()`` raises a `PluginError` naming the ``pip install`` that
fixes it, so a missing library fails here, before anything trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from modalbag.bags import Bag
from modalbag.data import ModalitySpec
from modalbag.errors import ConfigError, PluginError
from modalbag.records import LearnerSpec
from modalbag.registry import Catalog

OPTIMIZATION_STRATEGIES = ("balanced", "accuracy", "speed")


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
    """A trainer's offer for a bag: a score (higher wins), an architecture and why."""

    score: float
    architecture: Mapping[str, Any] = attrs.field(factory=dict)
    reason: str = ""


def select_learners(bags: Sequence[Bag], specs: Mapping[str, ModalitySpec], *, task_type: str,
                    num_classes: int, strategy: str, catalog: Catalog,
                    trainers: Sequence[str] | None = None) -> list[LearnerSpec]:
    """One `LearnerSpec` per bag, from the installed trainers (or only those named)."""
    if strategy not in OPTIMIZATION_STRATEGIES:
        raise ConfigError(f"optimization_strategy must be one of {', '.join(OPTIMIZATION_STRATEGIES)}, "
                          f"got {strategy!r}")
    components = ([catalog.get("trainer", name) for name in trainers] if trainers
                  else catalog.components("trainer"))
    if not components:
        raise PluginError("no trainer plugin is installed; reinstall modalbag (it ships 'neural')")
    for comp in components if trainers else ():
        check_available = getattr(comp.factory, "check_available", None)
        if check_available is not None:
            check_available()
    out = []
    for bag in bags:
        profile = BagProfile(bag.modalities, specs, len(bag.rows), task_type, num_classes)
        best: tuple[LearnerProposal, str] | None = None
        for comp in components:
            proposal = comp.factory.propose(profile, strategy)
            if proposal is not None and (best is None or proposal.score > best[0].score):
                best = (proposal, comp.name)
        if best is None:
            types = sorted(set(profile.types.values()))
            raise PluginError(f"no installed trainer can learn bag {bag.id} (modality types {types}); "
                              f"installed trainers: {', '.join(c.name for c in components)}")
        proposal, name = best
        out.append(LearnerSpec(bag.learner_id, bag.id, name, bag.modalities, profile.types,
                               dict(proposal.architecture), proposal.score, proposal.reason))
    return out


__all__ = ["OPTIMIZATION_STRATEGIES", "BagProfile", "LearnerProposal", "select_learners"]
