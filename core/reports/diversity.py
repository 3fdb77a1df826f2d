"""How different the ensemble's experts are, and what weighting for diversity changes.

Experts (one modality subset's learners) are compared on the training rows every one of them has
out-of-fold outputs for: the share of rows on which two predict different classes (disagreement)
and the correlation of their per-row errors. With held-out data, the ensemble's accuracy is
measured twice on it, with the run's ``ensemble_diversity_weight`` and with the term off (every
pattern's combination refitted on the same evidence), so the effect of the term is a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modalbag.ensemble.combination import error_correlation, pairwise_disagreement, true_class
from modalbag.errors import NotFittedError


def diversity_report(model: Any, data: Mapping[str, Any] | None = None, labels: Any = None) -> dict[str, Any]:
    """``experts``, ``rows``, ``disagreement`` and ``error_correlation`` (expert -> expert -> value),
    ``diversity_weight``, and with ``data`` and ``labels`` the held-out ``accuracy`` with the term and
    ``accuracy_without_diversity``; a figure that cannot be measured is None with its reason in ``notes``."""
    ensemble = getattr(model, "ensemble", None)
    if ensemble is None or not ensemble.learners:
        raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
    notes: dict[str, str] = {}
    experts = ensemble.experts_of(sorted(ensemble.learners))
    evidence = {name: ensemble.expert_evidence(name, members)[0] for name, members in experts.items()}
    usable = {name: e for name, e in evidence.items() if len(e.rows)}
    common = (np.array(sorted(set.intersection(*(set(e.rows.tolist()) for e in usable.values()))), dtype=np.int64)
              if usable else np.empty(0, dtype=np.int64))
    out: dict[str, Any] = {"experts": list(usable), "rows": int(len(common)),
                           "diversity_weight": ensemble.diversity_weight, "disagreement": None,
                           "error_correlation": None, "accuracy": None, "accuracy_without_diversity": None}
    if len(usable) < 2 or len(common) < 2:
        notes["disagreement"] = "needs two experts with out-of-fold outputs on common training rows"
    elif model.task_type != "classification":
        notes["disagreement"] = "pairwise disagreement compares predicted classes: classification only"
    else:
        outputs = np.stack([e.output[np.searchsorted(e.rows, common)] for e in usable.values()])
        y = ensemble.targets[common]
        names = list(usable)
        agree = pairwise_disagreement(outputs)
        corr = error_correlation(true_class(outputs, y), y, "classification")
        out["disagreement"] = {a: {b: float(agree[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}
        out["error_correlation"] = {a: {b: float(corr[i, j]) for j, b in enumerate(names)}
                                    for i, a in enumerate(names)}
    if data is None or labels is None:
        notes["accuracy"] = "pass held-out data and labels to measure the diversity term's effect"
    elif model.task_type != "classification":
        notes["accuracy"] = "accuracy is measured for classification only"
    else:
        with_term = model.evaluate(data, labels)["accuracy"]
        saved = (ensemble.diversity_weight, dict(ensemble.combinations))
        try:
            ensemble.diversity_weight = 0.0
            ensemble.forget_pattern_combinations()
            without = model.evaluate(data, labels)["accuracy"]
        finally:
            ensemble.diversity_weight = saved[0]
            ensemble.forget_pattern_combinations()
            ensemble.combinations.update(saved[1])
        out["accuracy"], out["accuracy_without_diversity"] = with_term, without
    out["notes"] = notes
    return out


__all__ = ["diversity_report"]
