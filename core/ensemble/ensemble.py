"""Combining learners into predictions, whatever modalities a sample has.

Each sample is routed to the learners whose modalities it has (never zero-filled). Learners over
the same modality subset form one *expert* (their outputs averaged). Each expert has out-of-fold
outputs on the training rows: cross-fitted when its subset was measured (`modalbag.engine.portfolio`) or
its bags are fold bags (each learner predicting its held-out fold), else its learners' out-of-bag
predictions. Per availability pattern met at prediction time, the
experts that pattern can use are combined by the rule `modalbag.ensemble.combination.choose_combination`
picks on their out-of-fold rows (weighted mean, weighted product of calibrated experts, or
stacking), fitted once and cached. A sample with no usable modality gets the training prior and is
flagged.

Beyond `EXACT_PATTERN_MAX_MODALITIES` modalities, patterns are too many to fit one by one (12
modalities missing at random give thousands in one call, at tens of milliseconds each): every
pattern but the all-learners one then uses the shared combination over all experts, trained with
modality dropout and restricted to the pattern's experts
(`modalbag.ensemble.combination.fit_shared`). Which way a pattern is combined depends on the
ensemble alone, never on the other rows of a call, so a sample's prediction is the same whatever it
is predicted with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.data.dataset import MultimodalDataset, complete_rows
from modalbag.ensemble.combination import (
    Combination,
    _log_softmax,
    calibrated_log_probabilities,
    choose_combination,
    diversity_penalty,
    fit_shared,
    fit_temperature,
    mean_losses,
    task_loss,
    true_class,
    weighted_mean,
)
from modalbag.kernel.records import TrainedLearner
from modalbag.kernel.run import TaskInfo

_MAX_WEIGHTING_ROWS = 5000
#: Up to this many modalities, every availability pattern gets its own fitted combination (at most
#: 2**5 - 1 = 31 of them); beyond, all but the all-learners pattern use the shared one.
EXACT_PATTERN_MAX_MODALITIES = 5


@attrs.frozen
class PredictionResult:
    """Predictions with how they were made: which rows fell back to the prior, how many learners."""

    output: np.ndarray  # probabilities (n, C) or values (n, k)
    predictions: np.ndarray  # class values, 0/1 label matrix, or values
    fallback: np.ndarray  # True where no learner could see the sample (prior used)
    n_learners: np.ndarray  # learners that contributed to each sample


@attrs.define
class _OOB:
    rows: np.ndarray
    output: np.ndarray


def expert_name(modalities: Sequence[str]) -> str:
    return "+".join(sorted(modalities))


@attrs.define(eq=False)
class Ensemble:
    """Trained learners plus the out-of-fold evidence that combines them (see the module docstring)."""

    task: TaskInfo
    learners: dict[str, TrainedLearner]
    targets: np.ndarray = attrs.field(repr=False)
    #: Per learner: out-of-fold outputs of its expert (cross-fitted) or its own out-of-bag ones.
    oob: dict[str, _OOB] = attrs.field(factory=dict, repr=False)
    seed: int = 0
    combinations: dict[frozenset[str], Combination] = attrs.field(factory=dict, repr=False)
    #: Learners whose evidence is their subset's cross-fit (every row of the subset, out of fold).
    cross_fitted: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)
    _expert_oof: dict[str, tuple[_OOB, float]] = attrs.field(factory=dict, repr=False, init=False)
    #: The shared combination (`shared_combination`), fitted with the ensemble beyond
    #: `EXACT_PATTERN_MAX_MODALITIES` modalities; None until needed otherwise.
    shared: Combination | None = attrs.field(default=None, repr=False, kw_only=True)
    #: ``ensemble_diversity_weight``: the error-correlation term of the mean rule's greedy selection.
    diversity_weight: float = attrs.field(default=0.0, kw_only=True)
    #: ``domain_adaptation``: each training row's importance weight p(target|x)/p(source|x) (mean 1),
    #: with which the combinations are fitted; None: every row counts the same.
    row_weights: np.ndarray | None = attrs.field(default=None, repr=False, eq=False, kw_only=True)
    _restricted: dict[frozenset[str], Combination] = attrs.field(factory=dict, repr=False, init=False)

    @classmethod
    def fit(cls, learners: Mapping[str, TrainedLearner], dataset: MultimodalDataset, targets: np.ndarray,
            task: TaskInfo, bags: Mapping[int, object], random_state: int = 0,
            cross_fits: Mapping[tuple[str, ...], Any] | None = None, diversity_weight: float = 0.0,
            row_weights: np.ndarray | None = None) -> Ensemble:
        """Each trained learner's out-of-fold evidence: its subset's cross-fit where there is one,
        else its out-of-bag predictions (at most a few thousand rows). ``row_weights``: the training
        rows' importance weights (``domain_adaptation``), used wherever a combination is fitted."""
        ok = {lid: r for lid, r in learners.items() if r.ok}
        cross_fits = cross_fits or {}
        rng = np.random.default_rng(random_state)
        oob, cross_fitted = {}, set()
        for lid, record in ok.items():
            found = cross_fits.get(tuple(record.spec.modalities))
            bag = bags[record.spec.bag_id]
            if found is not None and found.winner == record.spec.trainer and bag.fold is None:
                oob[lid] = _OOB(found.rows, np.asarray(found.output, dtype=np.float64))
                cross_fitted.add(lid)
                continue
            rows = complete_rows(bag.oob_rows, dataset.masks, record.spec.modalities)
            if bag.fold is not None:  # its held-out fold: the fold bags of a subset cross-fit it together
                cross_fitted.add(lid)
            elif len(rows) > _MAX_WEIGHTING_ROWS:
                rows = np.sort(rng.choice(rows, _MAX_WEIGHTING_ROWS, replace=False))
            if len(rows):
                inputs = {m: dataset.arrays[m][rows] for m in record.spec.modalities}
                oob[lid] = _OOB(rows, np.asarray(record.model.predict_output(inputs), dtype=np.float64))
        ensemble = cls(task, ok, targets, oob, random_state, cross_fitted=cross_fitted,
                       diversity_weight=diversity_weight, row_weights=row_weights)
        if len(ensemble.modalities) > EXACT_PATTERN_MAX_MODALITIES:
            ensemble.shared_combination()  # part of training: prediction calls never pay for it
        return ensemble

    # -- experts and their evidence -------------------------------------------------------------

    def experts_of(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """The learners ``ids`` grouped by modality subset, experts in name order; where some of them
        have only out-of-bag evidence, each learner is its own expert (named by its id)."""
        if not self.cross_fitted.issuperset(ids):
            return {lid: [lid] for lid in sorted(ids)}
        groups: dict[str, list[str]] = {}
        for lid in ids:
            groups.setdefault(expert_name(self.learners[lid].spec.modalities), []).append(lid)
        return {name: sorted(groups[name]) for name in sorted(groups)}

    def expert_evidence(self, name: str, members: Sequence[str]) -> tuple[_OOB, float]:
        """An expert's out-of-fold outputs (each row averaged over the members that have it) and its
        temperature (1 outside classification), cached."""
        if name not in self._expert_oof:
            parts = [self.oob[lid] for lid in members if lid in self.oob]
            if not parts:
                evidence = _OOB(np.empty(0, dtype=np.int64), np.empty((0, self.task.n_outputs)))
            else:
                rows = np.unique(np.concatenate([p.rows for p in parts]))
                total = np.zeros((len(rows), parts[0].output.shape[1]))
                count = np.zeros(len(rows))
                for part in parts:
                    pos = np.searchsorted(rows, part.rows)
                    total[pos] += part.output
                    count[pos] += 1
                evidence = _OOB(rows, total / count[:, None])
            temperature = 1.0
            if self.task.task_type == "classification" and len(evidence.rows) >= 10:
                temperature = fit_temperature(evidence.output, self.targets[evidence.rows])
            self._expert_oof[name] = (evidence, temperature)
        return self._expert_oof[name]

    def combination_for(self, available: Sequence[str]) -> Combination:
        """The combination over the learners in ``available``: fitted for that set and cached, or the
        shared combination restricted to it (see the module docstring)."""
        key = frozenset(available)
        if key in self.combinations:
            return self.combinations[key]
        if self.pattern_fitted(key):
            self.combinations[key] = self._choose(sorted(key))
            return self.combinations[key]
        if key not in self._restricted:
            self._restricted[key] = self.shared_combination().restricted(list(self.experts_of(sorted(key))))
        return self._restricted[key]

    def forget_pattern_combinations(self) -> None:
        """Drop every pattern's combination (not the shared one, fitted with the ensemble); each is
        fitted again, identically (same evidence, same seed), when next needed. For benchmarks of a
        first prediction call."""
        self.combinations.clear()
        self._restricted.clear()

    @property
    def modalities(self) -> list[str]:
        return sorted({m for record in self.learners.values() for m in record.spec.modalities})

    def pattern_fitted(self, available: frozenset[str]) -> bool:
        """Whether the pattern ``available`` gets a combination of its own (else the shared one's)."""
        return len(self.modalities) <= EXACT_PATTERN_MAX_MODALITIES or available == frozenset(self.learners)

    def shared_combination(self) -> Combination:
        """`fit_shared` over every expert of the ensemble, on (at most `_MAX_WEIGHTING_ROWS` of) the
        rows any of them has out-of-fold outputs for; fitted once, seeded by the ensemble."""
        if self.shared is None:
            experts = self.experts_of(sorted(self.learners))
            evidence = [self.expert_evidence(name, members) for name, members in experts.items()]
            rows = np.unique(np.concatenate([e.rows for e, _ in evidence] + [np.empty(0, dtype=np.int64)]))
            if len(rows) > _MAX_WEIGHTING_ROWS:
                rows = np.sort(np.random.default_rng(self.seed).choice(rows, _MAX_WEIGHTING_ROWS, replace=False))
            outputs = np.zeros((len(experts), len(rows), self.task.n_outputs))
            has = np.zeros((len(experts), len(rows)), dtype=bool)
            for i, (e, _) in enumerate(evidence):
                at = np.searchsorted(rows, e.rows)
                inside = (at < len(rows)) & (rows[np.minimum(at, len(rows) - 1)] == e.rows)
                outputs[i, at[inside]] = e.output[inside]
                has[i, at[inside]] = True
            members = [self.learners[experts[name][0]].spec.modalities for name in experts]
            self.shared = fit_shared(list(experts), outputs, has, self.targets[rows], self.task.task_type,
                                      np.array([t for _, t in evidence]), np.asarray(self.task.prior, dtype=float),
                                      members, self.seed, sample_weight=self._weights_of(rows))
        return self.shared

    def _weights_of(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.row_weights is None else np.asarray(self.row_weights, dtype=np.float64)[rows]

    def _choose(self, ids: list[str]) -> Combination:
        if not self.cross_fitted.issuperset(ids):  # partial out-of-bag coverage: the weighted mean
            weights = self._greedy_out_of_bag(ids)
            return Combination(tuple(ids), "mean", np.array([weights.get(lid, 0.0) for lid in ids]))
        experts = self.experts_of(ids)
        names = list(experts)
        evidence = [self.expert_evidence(name, experts[name]) for name in names]
        temperatures = np.array([t for _, t in evidence])
        usable = [i for i, (e, _) in enumerate(evidence) if len(e.rows)]
        rows = (np.array(sorted(set.intersection(*(set(evidence[i][0].rows.tolist()) for i in usable))), dtype=np.int64)
                if usable else np.empty(0, dtype=np.int64))
        if len(usable) < len(names) or len(rows) == 0:  # no common evidence: equal weights
            weights = np.full(len(names), 1.0 / len(names))
            return Combination(tuple(names), "mean", weights, temperatures=temperatures
                               if self.task.task_type == "classification" else np.empty(0))
        outputs = np.stack([e.output[np.searchsorted(e.rows, rows)] for e, _ in evidence])
        return choose_combination(names, outputs, self.targets[rows], self.task.task_type, temperatures, self.seed,
                                  diversity=self.diversity_weight, sample_weight=self._weights_of(rows))

    def _out_of_bag(self, learner_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each row combines the weighted learners that have it out of bag, renormalised over those."""
        used = {lid: w for lid, w in self.weights_for(learner_ids).items() if lid in self.oob and w > 0}
        if not used:
            return np.empty(0, dtype=np.int64), np.empty((0, self.task.n_outputs))
        rows = np.unique(np.concatenate([self.oob[lid].rows for lid in used]))
        total = np.zeros((len(rows), self.task.n_outputs))
        mass = np.zeros(len(rows))
        for lid, w in used.items():
            pos = np.searchsorted(rows, self.oob[lid].rows)
            total[pos] += w * self.oob[lid].output
            mass[pos] += w
        return rows, total / mass[:, None]

    def _greedy_out_of_bag(self, ids: list[str], rounds: int = 40) -> dict[str, float]:
        """Greedy selection over learners whose out-of-bag rows differ: where none of the selected
        learners has a row out of bag, the plain average of those that do stands in, so candidate
        selections are compared on the same rows."""
        with_oob = [lid for lid in ids if lid in self.oob]
        if len(with_oob) <= 1:
            chosen = with_oob or ids
            return {lid: 1.0 / len(chosen) for lid in chosen}
        rows = np.unique(np.concatenate([self.oob[lid].rows for lid in with_oob]))
        width = self.oob[with_oob[0]].output.shape[1]
        preds = np.zeros((len(with_oob), len(rows), width))
        covered = np.zeros((len(with_oob), len(rows)), dtype=bool)
        for i, lid in enumerate(with_oob):
            pos = np.searchsorted(rows, self.oob[lid].rows)
            preds[i, pos], covered[i, pos] = self.oob[lid].output, True
        y = self.targets[rows]
        row_weights = self._weights_of(rows)
        fallback = (preds * covered[..., None]).sum(0) / covered.sum(0)[:, None]
        task_type = self.task.task_type
        if task_type == "classification":  # a log loss reads the true class's probability alone
            preds, fallback = true_class(preds, y), true_class(fallback, y)
        preds = preds * (covered if preds.ndim == 2 else covered[..., None])

        def losses(total: np.ndarray, count: np.ndarray) -> np.ndarray:
            """Loss of each stacked (total, count): the mean of the selection where it covers a row."""
            if task_type != "classification":
                count = count[..., None]
            out = np.where(count > 0, total / np.maximum(count, 1), fallback)
            return mean_losses(task_type, y, out, row_weights)

        cover = covered.astype(float)
        penalty = diversity_penalty(self._covered_error_correlation(preds, covered, y)
                                    if self.diversity_weight else None, self.diversity_weight)
        single = losses(preds, cover)
        own = [float(weighted_mean(task_loss(task_type, y[covered[i]], self.oob[lid].output[
                   np.searchsorted(self.oob[lid].rows, rows[covered[i]])]),
                   None if row_weights is None else row_weights[covered[i]])) for i, lid in enumerate(with_oob)]
        first = int(np.argmin(own))  # the best learner on its own out-of-bag rows
        counts = np.zeros(len(with_oob))
        counts[first] = 1
        total, count = preds[first].copy(), cover[first].copy()
        best_loss, best_counts = float(single[first] + penalty(counts)), counts.copy()
        for _ in range(rounds - 1):
            trials = counts[None, :] + np.eye(len(with_oob))
            trial = losses(total[None] + preds, count[None] + cover) + penalty(trials)  # every candidate at once
            pick = int(np.argmin(trial))
            counts[pick] += 1
            total += preds[pick]
            count += cover[pick]
            if trial[pick] < best_loss - 1e-12:
                best_loss, best_counts = float(trial[pick]), counts.copy()
        weights = best_counts / best_counts.sum()
        return {lid: float(w) for lid, w in zip(with_oob, weights, strict=True) if w > 0}

    def _covered_error_correlation(self, preds: np.ndarray, covered: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(E, E) correlation of the learners' out-of-bag errors, each pair over the rows both cover
        (0 below 10 such rows). ``preds`` holds true-class probabilities (E, n) for classification."""
        if self.task.task_type == "classification":
            errors = 1.0 - preds
        else:
            errors = ((preds - y.reshape(len(y), -1)[None]) ** 2).mean(axis=-1)
        w = covered.astype(float)
        both = w @ w.T
        sum_a = (w * errors) @ w.T  # sum of a's errors over the rows both cover
        sum_b = sum_a.T
        sq_a = (w * errors ** 2) @ w.T
        sq_b = sq_a.T
        cross = (w * errors) @ (w * errors).T
        n = np.maximum(both, 1.0)
        cov = cross / n - (sum_a / n) * (sum_b / n)
        var_a = np.maximum(sq_a / n - (sum_a / n) ** 2, 0.0)
        var_b = np.maximum(sq_b / n - (sum_b / n) ** 2, 0.0)
        denom = np.sqrt(var_a * var_b)
        return np.where((both >= 10) & (denom > 0), cov / np.where(denom > 0, denom, 1.0), 0.0)

    def weights_for(self, available: Sequence[str]) -> dict[str, float]:
        """Each learner's share of the combination over ``available`` (an expert's weight split evenly
        over its learners; for stacking, the experts' shares of the coefficients' magnitude)."""
        combination = self.combination_for(available)
        experts = self.experts_of(sorted(set(available)))
        if combination.rule == "stacking":
            n_classes = self.task.n_outputs
            mass = np.abs(combination.stack_coef).reshape(n_classes, len(experts), n_classes).sum(axis=(0, 2))
        else:
            mass = np.asarray(combination.weights, dtype=np.float64)
        mass = mass / mass.sum() if mass.sum() > 0 else np.full(len(experts), 1.0 / len(experts))
        return {lid: float(m) / len(members) for m, members in zip(mass, experts.values(), strict=True)
                for lid in members if m > 0}

    def out_of_fold(self, learner_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The combination over ``learner_ids`` applied to its experts' out-of-fold outputs: (rows, output),
        on the rows every expert has evidence for. The learners never saw these rows; the combination
        rule was fitted on them, so with stacking the figure leans optimistic."""
        if not learner_ids:
            return np.empty(0, dtype=np.int64), np.empty((0, self.task.n_outputs))
        if not self.cross_fitted.issuperset(learner_ids):
            return self._out_of_bag(learner_ids)
        combination = self.combination_for(learner_ids)
        experts = self.experts_of(sorted(set(learner_ids)))
        evidence = [self.expert_evidence(name, members)[0] for name, members in experts.items()]
        if any(len(e.rows) == 0 for e in evidence):
            return np.empty(0, dtype=np.int64), np.empty((0, self.task.n_outputs))
        rows = np.array(sorted(set.intersection(*(set(e.rows.tolist()) for e in evidence))), dtype=np.int64)
        if not len(rows):
            return rows, np.empty((0, self.task.n_outputs))
        outputs = np.stack([e.output[np.searchsorted(e.rows, rows)] for e in evidence])
        return rows, combination.predict(outputs, self.task.task_type)

    # -- prediction -----------------------------------------------------------------------------

    def predict(self, dataset: MultimodalDataset) -> PredictionResult:
        """Route every sample to the learners that can see it and combine their outputs."""
        n = dataset.n_samples
        width = self.task.n_outputs
        outputs: dict[str, np.ndarray] = {}
        eligible: dict[str, np.ndarray] = {}
        for lid, record in self.learners.items():
            ok = np.all([dataset.masks[m] for m in record.spec.modalities], axis=0)
            eligible[lid] = ok
            if ok.any():
                rows = np.flatnonzero(ok)
                full = np.zeros((n, width))
                full[rows] = record.model.predict_output({m: dataset.arrays[m][rows] for m in record.spec.modalities})
                outputs[lid] = full
        combined, n_learners = self.combine(outputs, eligible, n)
        return PredictionResult(combined, self._decode(combined), n_learners == 0, n_learners)

    def combine(self, outputs: Mapping[str, np.ndarray], eligible: Mapping[str, np.ndarray],
                n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each sample's combination of the experts eligible for it (the rule of its availability
        pattern), the class prior where none is; and how many learners it used."""
        ids = list(self.learners)
        availability = np.stack([eligible[lid] for lid in ids], axis=1) if ids else np.zeros((n, 0), bool)
        combined = np.tile(self.task.prior, (n, 1)).astype(np.float64)
        n_learners = np.zeros(n, dtype=np.int64)
        patterns, inverse = availability_patterns(availability)
        shared_rows = []
        for p, pattern in enumerate(patterns):
            if not pattern.any():
                continue
            rows = np.flatnonzero(inverse == p)
            available = [lid for lid, on in zip(ids, pattern, strict=True) if on]
            key = frozenset(available)
            if key not in self.combinations and not self.pattern_fitted(key):
                shared_rows.append(rows)
                continue
            combination = self.combination_for(available)
            experts = self.experts_of(available)
            stacked = np.stack([np.mean([outputs[lid][rows] for lid in experts[name]], axis=0)
                                for name in combination.experts])
            combined[rows] = combination.predict(stacked, self.task.task_type)
            n_learners[rows] = len(self.weights_for(available))  # those that contribute
        if shared_rows:
            rows = np.sort(np.concatenate(shared_rows))
            combined[rows], n_learners[rows] = self._combine_shared(outputs, eligible, rows)
        return combined, n_learners

    def _combine_shared(self, outputs: Mapping[str, np.ndarray], eligible: Mapping[str, np.ndarray],
                        rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shared combination on ``rows`` whatever their patterns, in one vectorised pass: what
        `Combination.restricted` gives pattern by pattern (a missing expert's term is its fill)."""
        shared = self.shared_combination()
        experts = self.experts_of(sorted(self.learners))
        n_learners = np.zeros(len(rows), dtype=np.int64)
        sees = np.stack([eligible[experts[name][0]][rows] for name in shared.experts])  # (E, n)
        weights = np.asarray(shared.weights, dtype=np.float64)
        for name, w, on in zip(shared.experts, weights, sees, strict=True):
            n_learners += on * (len(experts[name]) if w > 0 else 0)
        if shared.rule == "product":
            z = np.tile(shared.bias, (len(rows), 1))
            for name, w, t, on in zip(shared.experts, weights, shared.temperatures, sees, strict=True):
                if w == 0 or not on.any():
                    z += w * shared.fill
                    continue
                mean = np.mean([outputs[lid][rows] for lid in experts[name]], axis=0)
                z += w * np.where(on[:, None], calibrated_log_probabilities(mean, t), shared.fill)
            return np.exp(_log_softmax(z)), n_learners
        mass = weights[:, None] * sees  # (E, n)
        none = mass.sum(axis=0) == 0
        mass[:, none] = sees[:, none]  # no weighted expert sees the row: the ones that do, equally
        total = np.zeros((len(rows), self.task.n_outputs))
        for name, m in zip(shared.experts, mass, strict=True):
            if m.any():
                mean = np.mean([outputs[lid][rows] for lid in experts[name]], axis=0)
                out = mean
                if self.task.task_type == "classification" and len(shared.temperatures):
                    out = np.exp(calibrated_log_probabilities(mean, shared.temperatures[shared.experts.index(name)]))
                total += m[:, None] * out
        n_learners[none] = sum(sees[i, none] * len(experts[name]) for i, name in enumerate(shared.experts))
        return total / mass.sum(axis=0)[:, None], n_learners

    def _decode(self, output: np.ndarray) -> np.ndarray:
        if self.task.task_type == "classification":
            labels = output.argmax(axis=1)
            return self.task.classes[labels] if self.task.classes is not None else labels
        if self.task.task_type == "multilabel":
            return (output >= 0.5).astype(np.int64)
        return output[:, 0] if output.shape[1] == 1 else output


def availability_patterns(availability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``availability`` (n, learners) and each row's pattern index, as
    ``np.unique(..., axis=0, return_inverse=True)`` gives them, in linear time for the common cases:
    one pattern for every row (every modality present), or each row packed into one integer (up to 64
    learners) before a 1-D unique; a row-wise sort only beyond."""
    n, width = availability.shape
    if n == 0 or width == 0 or bool((availability == availability[0]).all()):
        return availability[:1].copy(), np.zeros(n, dtype=np.int64)
    if width <= 64:
        codes = (availability.astype(np.uint64) << np.arange(width, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
        unique, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        patterns = availability[first]
        order = np.lexsort(patterns.T[::-1])  # the row-wise order np.unique(axis=0) returns
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return patterns[order], rank[inverse.reshape(-1)]
    patterns, inverse = np.unique(availability, axis=0, return_inverse=True)
    return patterns, inverse.reshape(-1)


__all__ = ["Ensemble", "PredictionResult", "availability_patterns", "expert_name"]
