"""``recommendation``: a multilabel ensemble read as a recommender (labels are items, rows users).

Items are ranked per user by predicted probability. Precision@k, recall@k, NDCG@k, MAP, catalog
coverage, intra-list diversity (cosine distance between listed items' vectors: ``item_features``
when given, else the items' co-occurrence columns in the held-out labels), accuracy on cold-start
users (rows flagged ``cold_start=``, or rows missing ``behavioral_modality``), each modality's
contribution (NDCG@k lost without it), and business uplift (CTR, conversion, engagement) only from
an ``experiment=`` the user ran; without one those fields are ``None``. Without held-out ``(data,
labels)`` the ranking is read from the ensemble's out-of-fold predictions of the training rows
(``measured_on`` says which); ``cold_start=`` then gives one flag per training row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import positive
from modalbag.plugins.reports._common import (
    boolean_rows,
    modality_name,
    require_task,
    rows_expected,
    scored_rows,
    switch,
)


@attrs.frozen(kw_only=True)
class RecommendationOptions:
    k: int = attrs.field(default=10, validator=positive, metadata={
        "help": "Length of each user's recommendation list: the k of precision, recall and NDCG@k, coverage "
                "and diversity."})
    online_validation: bool | None = attrs.field(default=None, metadata={
        "help": "Score the held-out rows in arrival order, window by window (None: the training config's "
                "online_validation)."})
    online_windows: int = attrs.field(default=5, validator=positive, metadata={
        "help": "Consecutive windows of held-out rows that online_validation scores."})
    cold_start_testing: bool | None = attrs.field(default=None, metadata={
        "help": "Without cold-start rows, simulate them: every row scored with behavioral_modality hidden "
                "(None: the training config's cold_start_testing)."})
    behavioral_modality: str | None = attrs.field(default=None, metadata={
        "help": "The modality of user behaviour: rows missing it are the cold-start users unless cold_start= "
                "is passed, and the ranking is also scored without it (None: neither)."})


def _group(experiment: Mapping[str, Any], name: str) -> dict[str, Any]:
    from modalbag.errors import DataError

    group = experiment.get(name) if isinstance(experiment, Mapping) else None
    if not isinstance(group, Mapping):
        raise DataError(f"experiment must be {{'control': {{...}}, 'treatment': {{...}}}} with impressions, clicks "
                        f"and optionally conversions and engagement (per-user values); {name!r} is missing")
    for key in ("impressions", "clicks", "conversions"):
        value = group.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise DataError(f"experiment[{name!r}][{key!r}] must be a count >= 0, got {value!r}")
    if not group.get("impressions"):
        raise DataError(f"experiment[{name!r}]['impressions'] must be a count > 0")
    return dict(group)


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of x1/n1 against x2/n2."""
    from scipy.stats import norm

    pooled = (x1 + x2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x2 / n2 - x1 / n1) / se
    return float(2 * norm.sf(abs(z)))


def experiment_uplift(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """Relative uplift of treatment over control: CTR = clicks / impressions, conversion rate =
    conversions / impressions, engagement = mean per-user engagement; uplift = treatment / control - 1."""
    control, treatment = _group(experiment, "control"), _group(experiment, "treatment")
    out: dict[str, Any] = {}
    ctr_c = control["clicks"] / control["impressions"]
    ctr_t = treatment["clicks"] / treatment["impressions"]
    out["ctr_improvement"] = ctr_t / ctr_c - 1 if ctr_c else None
    out["ctr_p_value"] = two_proportion_p_value(control["clicks"], control["impressions"],
                                                treatment["clicks"], treatment["impressions"])
    if control.get("conversions") is not None and treatment.get("conversions") is not None:
        cvr_c = control["conversions"] / control["impressions"]
        cvr_t = treatment["conversions"] / treatment["impressions"]
        out["conversion_impact"] = cvr_t / cvr_c - 1 if cvr_c else None
        out["conversion_p_value"] = two_proportion_p_value(control["conversions"], control["impressions"],
                                                           treatment["conversions"], treatment["impressions"])
    else:
        out["conversion_impact"] = None
    if control.get("engagement") is not None and treatment.get("engagement") is not None:
        e_c = float(np.mean(np.asarray(control["engagement"], dtype=np.float64)))
        e_t = float(np.mean(np.asarray(treatment["engagement"], dtype=np.float64)))
        out["engagement_score"] = e_t / e_c - 1 if e_c else None
    else:
        out["engagement_score"] = None
    return out


class RecommendationReport:
    def __init__(self, options: RecommendationOptions | None):
        self.options = options or RecommendationOptions()

    def generate(self, model: Any, data: Any, labels: Any, *, cold_start: Any = None, item_features: Any = None,
                 experiment: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from modalbag.errors import DataError
        from modalbag.reports import metrics as rm
        from modalbag.reports.robustness import scorer_for

        require_task(model, "recommendation", ["multilabel"])
        k = self.options.k
        notes: dict[str, str] = {}
        scorer = scorer_for(model, data, labels, "accuracy")
        behavioral = modality_name(self.options.behavioral_modality, scorer.dataset.specs, "behavioral_modality")
        y = scorer.targets
        scores = scorer.output()
        n_items = y.shape[1]
        if k > n_items:
            notes["k"] = f"k={k} exceeds the {n_items} items: lists hold every item"

        def ranking(rows: np.ndarray, out: np.ndarray) -> dict[str, Any]:
            yr, sr = y[rows], out[rows]
            return {f"precision_at_{k}": rm.precision_at_k(yr, sr, k), f"recall_at_{k}": rm.recall_at_k(yr, sr, k),
                    f"ndcg_at_{k}": rm.ndcg_at_k(yr, sr, k), "map": rm.mean_average_precision(yr, sr)}

        every = np.arange(scorer.n)
        headline = ranking(every, scores)
        lists = rm.top_k(scores, min(k, n_items))
        if item_features is not None:
            vectors = np.asarray(item_features, dtype=np.float64)
            if vectors.ndim != 2 or vectors.shape[0] != n_items:
                raise DataError(f"item_features must be (n_items={n_items}, features), got shape {vectors.shape}")
            notes["diversity_score"] = "cosine distance between the listed items' item_features"
        else:
            vectors = y.T.astype(np.float64)
            notes["diversity_score"] = ("cosine distance between listed items' co-occurrence in the scored labels "
                                        "(pass item_features= for content-based diversity)")
        diversity = rm.intra_list_diversity(lists, vectors)

        cold_rows, source = None, None
        if cold_start is not None:
            flags = scored_rows(scorer, model, boolean_rows("cold_start", cold_start, rows_expected(scorer, model)))
            cold_rows, source = np.flatnonzero(flags), "cold_start flags"
        elif behavioral is not None:
            cold_rows = np.flatnonzero(~scorer.dataset.masks[behavioral])
            source = f"rows missing {behavioral!r}"
        cold, cold_accuracy = None, None
        cold_scores = scores
        simulate = switch(model, self.options.cold_start_testing, "cold_start_testing")
        if simulate and (cold_rows is None or not len(cold_rows)) and behavioral is not None:
            # no user is cold here: make every one cold by hiding what they did, as a new user would be
            cold_rows, source = every, f"simulated: every row with {behavioral!r} hidden"
            cold_scores = scorer.output(scorer.without([behavioral]))
        if cold_rows is not None and len(cold_rows):
            cold = {"rows": source, "n_users": len(cold_rows)} | ranking(cold_rows, cold_scores)
            cold_accuracy = float(np.mean((cold_scores[cold_rows] >= 0.5) == (y[cold_rows] > 0)))
        else:
            notes["cold_start_accuracy"] = ("no cold-start rows: pass cold_start= flags or behavioral_modality= "
                                            "with rows that lack it" if cold_rows is None
                                            else f"none of the held-out rows are cold ({source})")
        behaviour_removed = None
        if behavioral is not None:
            behaviour_removed = ranking(every, scorer.output(scorer.without([behavioral])))

        ndcg_key = f"ndcg_at_{k}"
        contributions = {}
        for m in scorer.modalities:
            without = rm.ndcg_at_k(y, scorer.output(scorer.without([m])), k)
            full = headline[ndcg_key]
            contributions[m] = None if full is None or without is None else full - without

        online = None
        if switch(model, self.options.online_validation, "online_validation"):
            parts = [p for p in np.array_split(every, min(self.options.online_windows, scorer.n)) if len(p)]
            online = [{"window": i, "start": int(p[0]), "end": int(p[-1])} | ranking(p, scores)
                      for i, p in enumerate(parts)]
            notes["online_validation"] = ("the held-out rows in the order given, as arriving traffic; the model "
                                          "is the one trained, not refitted per window")
        else:
            notes["online_validation"] = "not computed: pass online_validation=True"
        business = {"ctr_improvement": None, "conversion_impact": None, "engagement_score": None}
        if experiment is not None:
            business = experiment_uplift(experiment)
            for key in ("conversion_impact", "engagement_score"):
                if business[key] is None:
                    notes[key] = "the experiment data lacks this group's counts or values (or control is 0)"
        else:
            for key in business:
                notes[key] = "business uplift needs an experiment: pass experiment={'control': ..., 'treatment': ...}"
        return {
            "measured_on": scorer.source,
            "n_users": scorer.n, "n_items": n_items, "k": k,
            **headline,
            "coverage": rm.catalog_coverage(scores, k), "diversity_score": diversity,
            "cold_start_accuracy": cold_accuracy, "cold_start": cold,
            "behavior_removed": behaviour_removed, "online_validation": online,
            "modality_contributions": contributions, "modality_contribution_metric": f"NDCG@{k} lost without it",
            **business,
            "notes": notes,
        }


@hookimpl
def modalbag_register_reports(register: Register) -> None:
    register("recommendation", RecommendationReport, options=RecommendationOptions,
             summary="precision/recall/NDCG@k, MAP, coverage, diversity, cold start, modality contributions")
