"""Learner selection: which trainers are candidates for each bag, in what order.

The optimization strategy sets a *portfolio* of candidate trainers (`PORTFOLIOS`), pruned where a
candidate cannot fit the data's size (`prune`); every candidate is asked to `propose` for the bag
(given the bag's profile and the strategy) and the proposals' scores order the candidates. The
choice itself is made by measurement at training time (`modalbag.engine.portfolio`): the spec's
``trainer`` is only the first candidate until then. Trainers named explicitly (``trainers=``) are
the portfolio instead; a single one is used as it is. A trainer that cannot learn a bag (a modality
type it does not handle) proposes ``None``. A trainer named explicitly is asked first whether it can
run at all: a factory's optional ``check_available()`` raises a `PluginError` naming the ``pip
install`` that fixes it, so a missing library fails here, before anything trains. A portfolio
candidate that is not installed is kept in the list and reported as skipped when measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modalbag.data.bags import Bag
from modalbag.errors import ConfigError, PluginError
from modalbag.kernel.modalities import ModalitySpec
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.kernel.records import LearnerSpec
from modalbag.kernel.registry import Catalog

OPTIMIZATION_STRATEGIES = ("balanced", "accuracy", "speed")

#: The candidates each optimization strategy measures, before pruning, in rule order.
PORTFOLIOS: Mapping[str, tuple[str, ...]] = {
    "speed": ("logistic", "hist_gradient_boosting"),
    "balanced": ("logistic", "svm", "knn", "hist_gradient_boosting", "neural"),
    "accuracy": ("logistic", "svm", "knn", "hist_gradient_boosting", "random_forest", "xgboost", "lightgbm",
                 "catboost", "neural"),
}
SVM_MAX_ROWS = 10_000  # kernel fits grow with the square of the rows
KNN_MAX_ROWS = 50_000
GBM_MAX_FEATURES = 1000  # histogram boosting's rounds grow with the columns: wide embeddings are too slow
NEURAL_MIN_FEATURES = 256  # 'balanced' measures the fusion network where inputs are large ...
NEURAL_MIN_ROWS = 500  # ... and there are rows enough to learn them


def prune(candidates: Sequence[str], strategy: str, n_rows: int, n_features: int, raw: bool) -> list[str]:
    """The candidates worth measuring on data of this size (``raw``: images or sequences, not vectors)."""
    out = []
    for name in candidates:
        if name == "svm" and n_rows > SVM_MAX_ROWS:
            continue
        if name == "knn" and n_rows > KNN_MAX_ROWS:
            continue
        if name == "hist_gradient_boosting" and strategy != "accuracy" and n_features > GBM_MAX_FEATURES:
            continue
        if name == "neural" and strategy != "accuracy" and not raw and (
                n_features < NEURAL_MIN_FEATURES or n_rows < NEURAL_MIN_ROWS):
            continue
        out.append(name)
    if raw and "neural" not in out and strategy != "speed":
        out.append("neural")  # the only learner that reads raw images and sequences natively
    if raw and strategy == "speed":
        out = ["logistic", "neural"]
    return out




def select_learners(bags: Sequence[Bag], specs: Mapping[str, ModalitySpec], *, task_type: str,
                    num_classes: int, strategy: str, catalog: Catalog,
                    trainers: Sequence[str] | None = None) -> list[LearnerSpec]:
    """One `LearnerSpec` per bag: its candidates in rule order, the first as its trainer."""
    if strategy not in OPTIMIZATION_STRATEGIES:
        raise ConfigError(f"optimization_strategy must be one of {', '.join(OPTIMIZATION_STRATEGIES)}, "
                          f"got {strategy!r}")
    if trainers:
        components = {name: catalog.get("trainer", name) for name in trainers}
        for comp in components.values():
            check_available = getattr(comp.factory, "check_available", None)
            if check_available is not None:
                check_available()
    else:
        installed = {c.name: c for c in catalog.components("trainer")}
        if not installed:
            raise PluginError("no trainer plugin is installed; reinstall modalbag (it ships 'neural')")
        components = {name: installed.get(name) for name in PORTFOLIOS[strategy]}
    out = []
    for bag in bags:
        profile = BagProfile(bag.modalities, specs, len(bag.rows), task_type, num_classes)
        names = list(components) if trainers else prune(
            list(components), strategy, profile.n_rows, profile.n_features,
            raw=any(len(specs[m].shape) > 1 for m in bag.modalities))
        proposals: list[tuple[LearnerProposal, str]] = []
        for name in names:
            comp = components.get(name)
            proposal = comp.factory.propose(profile, strategy) if comp is not None else None
            if proposal is not None:
                proposals.append((proposal, name))
        if not proposals and not trainers:  # no portfolio candidate installed: every installed trainer competes
            proposals = [(p, c.name) for c in installed.values()
                         if (p := c.factory.propose(profile, strategy)) is not None]
        if not proposals:
            types = sorted(set(profile.types.values()))
            raise PluginError(f"no installed trainer can learn bag {bag.id} (modality types {types}); "
                              f"candidates: {', '.join(names) or 'none'}")
        proposals.sort(key=lambda pn: -pn[0].score)  # stable: ties keep the portfolio's order
        unavailable = [n for n in names if n not in {name for _, name in proposals} and components.get(n) is None]
        candidates = tuple(name for _, name in proposals) + tuple(unavailable)
        proposal, name = proposals[0]
        out.append(LearnerSpec(bag.learner_id, bag.id, name, bag.modalities, profile.types,
                               dict(proposal.architecture), proposal.score, proposal.reason,
                               candidates=candidates if len(candidates) > 1 else (), strategy=strategy))
    return out


__all__ = ["OPTIMIZATION_STRATEGIES", "PORTFOLIOS", "prune", "select_learners"]
