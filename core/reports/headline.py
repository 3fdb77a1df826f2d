"""What a report says first: how good the ensemble is, and how that changes as modalities go missing.

**On held-out data** (``data`` and ``labels`` given): the ensemble's score with every modality the
data have; per subset of modalities, the score when only that subset is present (the ensemble routes
each row to the learners that can see it, as `Ensemble.predict` does); by share missing, the score
after dropping each present (row, modality) pair independently with that probability, one seeded draw
per share. These are what `model.evaluate` and the robustness report measure.

**Without held-out data**: the same on *out-of-fold* training rows, where every learner's output on
a row comes from a model that never trained on it (cross-fitted folds, or out-of-bag rows of bootstrap
bags). The combination weights were fitted on those rows, so the figures lean optimistic, and the
report says so. Per subset, the learners whose modalities the subset holds are combined on the rows
they all have evidence for. By share missing ``r``, with ``M`` modalities, each subset ``S`` is
present with probability ``(1 - r)^|S| r^(M - |S|)`` and the curve is the expectation of the subset
scores under it (the empty subset scores the training prior): an estimate, since each subset is
scored on its own out-of-fold rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modalbag.errors import NotFittedError
from modalbag.reports.robustness import LOWER_IS_BETTER, EnsembleScorer, resolve_metric
from modalbag.training.metrics import task_metrics

#: Every non-empty subset is scored up to this many modalities; beyond, each alone, all but each, all.
ALL_SUBSETS_MAX_MODALITIES = 6
#: Shares of (row, modality) pairs dropped for the curve.
MISSING_SHARES = (0.0, 0.25, 0.5, 0.75, 0.9)


def modality_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The subsets the headline scores, largest first (see `ALL_SUBSETS_MAX_MODALITIES`)."""
    names = tuple(modalities)
    if len(names) <= ALL_SUBSETS_MAX_MODALITIES:
        found = [c for k in range(len(names), 0, -1) for c in itertools.combinations(names, k)]
    else:
        found = [names] + [tuple(n for n in names if n != m) for m in names] + [(m,) for m in names]
    return list(dict.fromkeys(found))


def _score(task_type: str, metric: str, y: np.ndarray, output: np.ndarray) -> float:
    return float(task_metrics(task_type, y, output)[metric])


def ensemble_headline(model: Any, data: Mapping[str, Any] | None = None, labels: Any = None, *,
                      metric: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The ensemble's score and its curves as modalities go missing (see the module docstring).

    Returns ``metric``, ``higher_is_better``, ``source`` (``held-out data`` or ``out-of-fold training
    rows``), ``rows``, ``score``, ``by_subset`` (``present``, ``score``, ``rows``), ``by_share_missing``
    (``share_missing``, ``score``) and ``notes``; a figure that cannot be measured is ``None`` with
    its reason in ``notes``.
    """
    ensemble = getattr(model, "ensemble", None)
    if ensemble is None or not ensemble.learners:
        raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
    name = resolve_metric(model.task_type, metric)
    if data is not None:
        found = _held_out(model, data, labels, name, seed)
    else:
        found = _out_of_fold(model, name)
    return {"metric": name, "higher_is_better": name not in LOWER_IS_BETTER, **found}


def _held_out(model: Any, data: Mapping[str, Any], labels: Any, metric: str, seed: int) -> dict[str, Any]:
    scorer = EnsembleScorer(model, data, labels, metric)
    rng = np.random.default_rng(seed)
    by_subset = [{"present": list(s), "score": scorer.score(scorer.only(s)), "rows": scorer.n}
                 for s in modality_subsets(scorer.modalities)]
    by_share = [{"share_missing": r, "score": scorer.score(scorer.random_missing(r, rng))} for r in MISSING_SHARES]
    return {"source": "held-out data", "rows": scorer.n, "score": scorer.score(), "by_subset": by_subset,
            "by_share_missing": by_share,
            "notes": [("by share missing: each present (row, modality) pair dropped independently with that "
                       f"probability, one draw seeded with {seed}")]}


def _out_of_fold(model: Any, metric: str) -> dict[str, Any]:
    ensemble = model.ensemble
    task_type = model.task_type
    ids = list(ensemble.learners)
    modalities = list(model.dataset.specs)
    notes = [("out-of-fold training rows: no learner trained on the row it predicts, but the combination was "
              "fitted on these rows, so the figures lean optimistic; pass held-out data for an unbiased score")]
    rows, output = ensemble.out_of_fold(ids)
    score = _score(task_type, metric, ensemble.targets[rows], output) if len(rows) else None
    if score is None:
        notes.append("score: no training row has out-of-fold outputs from every learner")
    y = ensemble.targets
    prior = _score(task_type, metric, y, np.tile(ensemble.task.prior, (len(y), 1)))
    by_subset, subset_score, unseen = [], {}, []
    for subset in modality_subsets(modalities):
        usable = [lid for lid in ids if set(ensemble.learners[lid].spec.modalities) <= set(subset)]
        if not usable:  # the ensemble predicts the training prior for such rows, as in deployment
            value, n_rows = prior, len(y)
            unseen.append(" + ".join(subset))
        else:
            found_rows, found = ensemble.out_of_fold(usable)
            value = _score(task_type, metric, y[found_rows], found) if len(found_rows) else None
            n_rows = len(found_rows)
        subset_score[frozenset(subset)] = value
        by_subset.append({"present": list(subset), "score": value, "rows": int(n_rows)})
    if unseen:
        notes.append(f"no learner reads only {'; '.join(unseen)}: with only those present the ensemble predicts "
                     "the training prior, and that is the score shown")
    if any(v is None for v in subset_score.values()):
        notes.append("a subset without a score: its learners have no out-of-fold row in common")
    by_share: list[dict[str, Any]] = []
    complete = len(modalities) <= ALL_SUBSETS_MAX_MODALITIES and all(v is not None for v in subset_score.values())
    if complete:
        m = len(modalities)
        for r in MISSING_SHARES:
            expected = prior * r ** m
            for subset, value in subset_score.items():
                expected += (1 - r) ** len(subset) * r ** (m - len(subset)) * value
            by_share.append({"share_missing": r, "score": float(expected)})
        notes.append("by share missing: the expected subset score when each modality is missing independently "
                     "with that probability, each subset scored on its own out-of-fold rows (an estimate)")
    else:
        by_share = [{"share_missing": r, "score": None} for r in MISSING_SHARES]
        notes.append("by share missing: needs a score for every subset of at most "
                     f"{ALL_SUBSETS_MAX_MODALITIES} modalities; pass held-out data to measure it")
    return {"source": "out-of-fold training rows", "rows": len(rows), "score": score, "by_subset": by_subset,
            "by_share_missing": by_share, "notes": notes}


__all__ = ["ALL_SUBSETS_MAX_MODALITIES", "MISSING_SHARES", "ensemble_headline", "modality_subsets"]
