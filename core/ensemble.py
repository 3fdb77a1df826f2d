"""Combining learners into predictions, whatever modalities a sample has.

Each sample is routed to the learners whose modalities it has (never zero-filled). Their weights
come from greedy ensemble selection with replacement (Caruana et al., 2004) on out-of-bag
predictions, run separately for each availability pattern met at prediction time over just the
learners that pattern can use, and cached. Greedy selection starts from the best single learner
on out-of-bag data, so the weights it returns never score worse there than that learner.

Out-of-bag rows differ between learners; where none of the selected learners has a sample out of
bag, the plain average of the learners that do stands in, so candidate selections are compared on
the same rows. A sample with no usable modality gets the training prior and is flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from modalbag.data import MultimodalDataset
from modalbag.engine import TaskInfo, complete_rows
from modalbag.records import TrainedLearner

_MAX_WEIGHTING_ROWS = 5000


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


@attrs.define(eq=False)
class Ensemble:
    """Trained learners plus the out-of-bag evidence that weighs them."""

    task: TaskInfo
    learners: dict[str, TrainedLearner]
    targets: np.ndarray = attrs.field(repr=False)
    oob: dict[str, _OOB] = attrs.field(factory=dict, repr=False)
    rounds: int = 40
    _weights: dict[frozenset[str], dict[str, float]] = attrs.field(factory=dict, repr=False)

    @classmethod
    def fit(cls, learners: Mapping[str, TrainedLearner], dataset: MultimodalDataset, targets: np.ndarray,
            task: TaskInfo, bags: Mapping[int, object], random_state: int = 0) -> Ensemble:
        """Collect each trained learner's out-of-bag predictions (at most a few thousand rows)."""
        ok = {lid: r for lid, r in learners.items() if r.ok}
        rng = np.random.default_rng(random_state)
        oob = {}
        for lid, record in ok.items():
            rows = complete_rows(bags[record.spec.bag_id].oob_rows, dataset.masks, record.spec.modalities)
            if len(rows) > _MAX_WEIGHTING_ROWS:
                rows = np.sort(rng.choice(rows, _MAX_WEIGHTING_ROWS, replace=False))
            if len(rows):
                inputs = {m: dataset.arrays[m][rows] for m in record.spec.modalities}
                oob[lid] = _OOB(rows, np.asarray(record.model.predict_output(inputs), dtype=np.float64))
        return cls(task, ok, targets, oob)

    # -- weighting ------------------------------------------------------------------------------

    def weights_for(self, available: Sequence[str]) -> dict[str, float]:
        """Weights over the learners in ``available`` (summing to 1), cached per set."""
        key = frozenset(available)
        if key not in self._weights:
            self._weights[key] = self._greedy(sorted(key))
        return self._weights[key]

    def _loss(self, y: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Per-row loss: log loss, binary log loss averaged over labels, or squared error."""
        eps = 1e-7
        if self.task.task_type == "classification":
            return -np.log(np.clip(out[np.arange(len(y)), y], eps, 1.0))
        if self.task.task_type == "multilabel":
            p = np.clip(out, eps, 1 - eps)
            return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
        return ((out - y.reshape(len(y), -1)) ** 2).mean(axis=1)

    def _greedy(self, ids: list[str]) -> dict[str, float]:
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
        fallback = (preds * covered[..., None]).sum(0) / covered.sum(0)[:, None]

        def loss_of(total: np.ndarray, count: np.ndarray) -> float:
            has = count > 0
            out = np.where(has[:, None], total / np.maximum(count, 1)[:, None], fallback)
            return float(self._loss(y, out).mean())

        single = [loss_of(preds[i] * covered[i][:, None], covered[i].astype(float)) for i in range(len(with_oob))]
        own = [float(self._loss(y[covered[i]], preds[i][covered[i]]).mean()) for i in range(len(with_oob))]
        first = int(np.argmin(own))  # the best learner on its own out-of-bag rows
        counts = np.zeros(len(with_oob))
        counts[first] = 1
        total = preds[first] * covered[first][:, None]
        count = covered[first].astype(float)
        best_loss, best_counts = single[first], counts.copy()
        for _ in range(self.rounds - 1):
            trial = [loss_of(total + preds[i] * covered[i][:, None], count + covered[i]) for i in range(len(with_oob))]
            pick = int(np.argmin(trial))
            counts[pick] += 1
            total = total + preds[pick] * covered[pick][:, None]
            count = count + covered[pick]
            if trial[pick] < best_loss - 1e-12:
                best_loss, best_counts = trial[pick], counts.copy()
        weights = best_counts / best_counts.sum()
        return {lid: float(w) for lid, w in zip(with_oob, weights, strict=True) if w > 0}

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
        """Each sample's weighted average of the outputs of the learners eligible for it (the weights
        of its availability pattern), the class prior where none is; and how many learners it used."""
        ids = list(self.learners)
        availability = np.stack([eligible[lid] for lid in ids], axis=1) if ids else np.zeros((n, 0), bool)
        combined = np.tile(self.task.prior, (n, 1)).astype(np.float64)
        n_learners = np.zeros(n, dtype=np.int64)
        patterns, inverse = np.unique(availability, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        for p, pattern in enumerate(patterns):
            if not pattern.any():
                continue
            rows = np.flatnonzero(inverse == p)
            weights = self.weights_for([lid for lid, on in zip(ids, pattern, strict=True) if on])
            combined[rows] = sum(w * outputs[lid][rows] for lid, w in weights.items())
            n_learners[rows] = len(weights)
        return combined, n_learners

    def _decode(self, output: np.ndarray) -> np.ndarray:
        if self.task.task_type == "classification":
            labels = output.argmax(axis=1)
            return self.task.classes[labels] if self.task.classes is not None else labels
        if self.task.task_type == "multilabel":
            return (output >= 0.5).astype(np.int64)
        return output[:, 0] if output.shape[1] == 1 else output


__all__ = ["Ensemble", "PredictionResult"]
