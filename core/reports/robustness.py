"""Scoring a trained ensemble when modalities go missing or get noisy: ablation and its building blocks.

Every number here comes from the ensemble's own predictions on the user's held-out data. A
learner's output on a row depends only on that learner's modalities, so `EnsembleScorer` runs
each learner once over the rows it can see and recombines those outputs for any pattern of
missing modalities, exactly as `Ensemble.predict` routes samples (a sample goes to the learners
whose modalities it has all of; weights are the ensemble's per-pattern weights; a sample no
learner can see gets the training prior). Enumerating many modality subsets therefore costs one
prediction pass, not one per subset. Changed *inputs* (noise) need a real prediction pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.dataset import MultimodalDataset, encode_labels, prediction_inputs
from modalbag.ensemble.ensemble import Ensemble
from modalbag.errors import ConfigError, DataError, NotFittedError
from modalbag.kernel.run import TaskInfo
from modalbag.training.metrics import task_metrics


class TrainedModel(Protocol):
    """What the robustness tools read from a trained `modalbag.MultiModalEnsembleModel`."""

    task_type: str
    task: TaskInfo | None
    training_config: TrainingConfig | None
    ensemble: Ensemble | None
    dataset: MultimodalDataset


#: Default score per task, each higher-is-better.
DEFAULT_METRIC = {"classification": "accuracy", "multilabel": "f1", "regression": "r2"}
#: Metrics `modalbag.training.metrics.task_metrics` returns where *lower* is better.
LOWER_IS_BETTER = frozenset({"log_loss", "mse", "mae"})
_METRICS = {"classification": ("accuracy", "f1", "log_loss"), "multilabel": ("accuracy", "f1", "log_loss"),
            "regression": ("mse", "mae", "r2")}


#: What a figure was measured on (the reports' ``measured_on``).
HELD_OUT = "held-out data"
OUT_OF_FOLD = "out-of-fold predictions of the training rows"
#: Why a changed-input figure (noise, adversarial) has no out-of-fold value.
NO_CHANGED_INPUTS = ("not measured on out-of-fold predictions: changed inputs need a prediction by a model that never "
                     "trained on the row, and the fold models are not kept; pass held-out (data, labels)")


def resolve_metric(task_type: str, metric: str | None) -> str:
    """The metric name to score with (the task's default when ``None``); unknown names fail clearly."""
    if metric is None:
        return DEFAULT_METRIC[task_type]
    if metric not in _METRICS[task_type]:
        raise ConfigError(f"metric {metric!r} is not computed for {task_type} tasks; "
                          f"choose one of {', '.join(_METRICS[task_type])}")
    return metric


def encode_targets(model: TrainedModel, labels: Any, n_samples: int) -> np.ndarray:
    """Held-out labels in the encoding the ensemble predicts (class indices, 0/1 matrix, values)."""
    if model.task is None or model.training_config is None:
        raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
    y = np.asarray(labels)
    if len(y) != n_samples:
        raise DataError(f"labels have {len(y)} rows but the data has {n_samples} samples; "
                        f"give one label per sample, in the same order")
    if model.task_type == "classification":
        known = {c: i for i, c in enumerate(np.asarray(model.task.classes).tolist())}
        try:
            return np.array([known[v] for v in y.tolist()], dtype=np.int64)
        except (KeyError, TypeError) as exc:
            raise DataError(f"label {exc.args[0]!r} was not seen in training; classes: {list(known)}") from exc
    encoded, _ = encode_labels(y, model.task_type, model.training_config.num_classes)
    return encoded


def _combine(ensemble: Ensemble, outputs: Mapping[str, np.ndarray], eligible: Mapping[str, np.ndarray],
             n: int) -> np.ndarray:
    """Per-pattern weighted average of learner outputs; the prior where no learner is eligible."""
    return ensemble.combine(outputs, eligible, n)[0]


class EnsembleScorer:
    """One evaluation set, scored under any availability pattern or with changed inputs.

    ``score`` is the chosen metric (`resolve_metric`); `loss` turns it into "score lost" so that
    higher-is-better and lower-is-better metrics read the same way.
    """

    def __init__(self, model: TrainedModel, data: Mapping[str, Any], labels: Any,
                 metric: str | None = None):
        if model.ensemble is None:
            raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
        self.model = model
        self.ensemble: Ensemble = model.ensemble
        self.task_type = model.task_type
        self.dataset: MultimodalDataset = prediction_inputs(data, model.dataset.specs)
        self.n = self.dataset.n_samples
        self.targets = encode_targets(model, labels, self.n)
        self.metric = resolve_metric(self.task_type, metric)
        self.higher_is_better = self.metric not in LOWER_IS_BETTER
        self.modalities: list[str] = list(self.dataset.specs)
        self._outputs: dict[str, np.ndarray] | None = None

    source = HELD_OUT
    perturbable = True
    rows = None  # every row of the held-out data

    # -- predictions --------------------------------------------------------------------------

    def learner_outputs(self) -> dict[str, np.ndarray]:
        """Each learner's output on every row that has all its modalities (zeros elsewhere); cached."""
        if self._outputs is None:
            width = self.ensemble.task.n_outputs
            self._outputs = {}
            for lid, record in self.ensemble.learners.items():
                ok = self.eligible(record.spec.modalities, self.dataset.masks)
                full = np.zeros((self.n, width))
                if ok.any():
                    rows = np.flatnonzero(ok)
                    full[rows] = record.model.predict_output(
                        {m: self.dataset.arrays[m][rows] for m in record.spec.modalities})
                self._outputs[lid] = full
        return self._outputs

    def eligible(self, modalities: Iterable[str], masks: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.all([masks[m] for m in modalities], axis=0)

    def output(self, masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Ensemble output when only ``masks`` (a subset of the data's own presence) are present."""
        masks = self.restrict(masks)
        outputs = self.learner_outputs()
        eligible = {lid: self.eligible(r.spec.modalities, masks) for lid, r in self.ensemble.learners.items()}
        return _combine(self.ensemble, outputs, eligible, self.n)

    def fallback(self, masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Rows no learner can see under ``masks``: they get the training prior."""
        masks = self.restrict(masks)
        seen = np.zeros(self.n, dtype=bool)
        for record in self.ensemble.learners.values():
            seen |= self.eligible(record.spec.modalities, masks)
        return ~seen

    def restrict(self, masks: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """``masks`` and-ed with the data's own presence (a modality cannot appear where it was missing)."""
        own = self.dataset.masks
        if masks is None:
            return {m: own[m].copy() for m in self.modalities}
        return {m: own[m] & np.asarray(masks.get(m, own[m]), dtype=bool) for m in self.modalities}

    def without(self, modalities: Iterable[str]) -> dict[str, np.ndarray]:
        """Masks with ``modalities`` missing from every sample."""
        gone = set(modalities)
        return {m: (np.zeros(self.n, bool) if m in gone else self.dataset.masks[m].copy()) for m in self.modalities}

    def only(self, modalities: Iterable[str]) -> dict[str, np.ndarray]:
        """Masks where only ``modalities`` are present (where the data has them)."""
        keep = set(modalities)
        return self.without(m for m in self.modalities if m not in keep)

    def output_with(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None
                    ) -> np.ndarray:
        """Ensemble output after replacing the values of some modalities (for example with noise).

        Only learners that read a replaced modality predict again; the others' cached outputs are
        reused, which gives the same result as a full `Ensemble.predict` on the changed data.
        """
        changed = set(arrays)
        unknown = changed - set(self.modalities)
        if unknown:
            raise DataError(f"unknown modalities {sorted(unknown)}; the ensemble was trained on {self.modalities}")
        base = self.learner_outputs()
        outputs = {}
        for lid, record in self.ensemble.learners.items():
            mods = record.spec.modalities
            if not changed & set(mods):
                outputs[lid] = base[lid]
                continue
            full = np.zeros_like(base[lid])
            rows = np.flatnonzero(self.eligible(mods, self.dataset.masks))
            if len(rows):
                inputs = {m: np.asarray(arrays[m] if m in changed else self.dataset.arrays[m], np.float32)[rows]
                          for m in mods}
                full[rows] = record.model.predict_output(inputs)
            outputs[lid] = full
        masks = self.restrict(masks)
        eligible = {lid: self.eligible(r.spec.modalities, masks) for lid, r in self.ensemble.learners.items()}
        return _combine(self.ensemble, outputs, eligible, self.n)

    def learner_output(self, learner_id: str, masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """One learner alone: its output where it sees every modality it needs, the prior elsewhere."""
        record = self.ensemble.learners[learner_id]
        masks = self.restrict(masks)
        ok = self.eligible(record.spec.modalities, masks)
        out = np.tile(self.ensemble.task.prior, (self.n, 1)).astype(np.float64)
        out[ok] = self.learner_outputs()[learner_id][ok]
        return out

    # -- perturbations ------------------------------------------------------------------------

    def noised(self, modality: str, level: float, rng: np.random.Generator) -> np.ndarray:
        """``modality``'s values plus Gaussian noise of ``level`` times each feature's standard deviation.

        x' = x + level * sd_j * e, e ~ N(0, 1), with sd_j the standard deviation of feature j over
        the rows that have the modality; rows without it are left as they are (missing stays missing).
        """
        x = self.dataset.arrays[modality]
        present = self.dataset.masks[modality]
        out = x.astype(np.float64, copy=True)
        if present.any():
            sd = x[present].std(axis=0)
            out[present] += level * sd * rng.standard_normal(out[present].shape)
        return out.astype(np.float32)

    def random_missing(self, rate: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Masks where each present (sample, modality) pair is dropped independently with probability ``rate``.

        The expected share of a sample's modalities that go missing is ``rate``; a sample that loses
        all of them gets the training prior, as it would in deployment.
        """
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"a missing rate must be in [0, 1], got {rate!r}")
        return {m: self.dataset.masks[m] & (rng.random(self.n) >= rate) for m in self.modalities}

    # -- scores -------------------------------------------------------------------------------

    def score_output(self, output: np.ndarray, rows: np.ndarray | None = None) -> float:
        """The metric of ``output`` against the targets (on ``rows`` only when given)."""
        y, out = (self.targets, output) if rows is None else (self.targets[rows], output[rows])
        return float(task_metrics(self.task_type, y, out)[self.metric])

    def score(self, masks: Mapping[str, np.ndarray] | None = None) -> float:
        return self.score_output(self.output(masks))

    def loss(self, reference: float, score: float) -> float:
        """Score lost going from ``reference`` to ``score`` (positive = worse, for any metric)."""
        return reference - score if self.higher_is_better else score - reference

    def worse(self, a: float, b: float) -> bool:
        """Is score ``a`` worse than score ``b``?"""
        return a < b if self.higher_is_better else a > b


class OutOfFoldScorer:
    """`EnsembleScorer`'s reading of the training rows, without held-out data.

    Every output is the ensemble's combination of *out-of-fold* learner outputs (`Ensemble.out_of_fold`:
    cross-fitted folds, or out-of-bag rows of bootstrap bags), so no learner predicts a row it trained
    on; the combination itself was fitted on these rows, so the figures lean optimistic. The rows are
    those the full ensemble has evidence for, as in `modalbag.reports.headline`. With modalities
    removed (`without`, `only`), the learners that need none of them are combined the same way; a
    row none of them has evidence for gets the training prior. Changed inputs (`output_with`,
    noise) cannot be scored: ``perturbable`` is False and `NO_CHANGED_INPUTS` says why.
    """

    source = OUT_OF_FOLD
    perturbable = False

    def __init__(self, model: TrainedModel, metric: str | None = None):
        if model.ensemble is None or model.task is None:
            raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
        self.model = model
        self.ensemble: Ensemble = model.ensemble
        self.task_type = model.task_type
        self.metric = resolve_metric(self.task_type, metric)
        self.higher_is_better = self.metric not in LOWER_IS_BETTER
        self.modalities: list[str] = list(model.dataset.specs)
        self.rows, self._full = self.ensemble.out_of_fold(list(self.ensemble.learners))
        if not len(self.rows):
            raise DataError("no training row has out-of-fold outputs from every learner, so nothing can be scored "
                            "without held-out data: pass (data, labels) of samples the ensemble did not train on")
        self.n = len(self.rows)
        self.targets = np.asarray(self.ensemble.targets)[self.rows]
        training = model.dataset
        self.dataset = MultimodalDataset({m: training.arrays[m] for m in self.modalities},
                                         {m: np.asarray(training.masks[m])[self.rows] for m in self.modalities},
                                         dict(training.specs))
        self.dataset.arrays = _RowView(training.arrays, self.rows)  # rows read when asked for, not copied

    def inputs(self) -> dict[str, np.ndarray]:
        """The scored training rows as prediction inputs (missing values as NaN), for timing predictions."""
        out = {}
        for m in self.modalities:
            values = np.asarray(self.dataset.arrays[m], dtype=np.float32).copy()
            values[~self.dataset.masks[m]] = np.nan
            out[m] = values
        return out

    def eligible(self, modalities: Iterable[str], masks: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.all([masks[m] for m in modalities], axis=0)

    def restrict(self, masks: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        own = self.dataset.masks
        if masks is None:
            return {m: own[m].copy() for m in self.modalities}
        return {m: own[m] & np.asarray(masks.get(m, own[m]), dtype=bool) for m in self.modalities}

    def without(self, modalities: Iterable[str]) -> dict[str, np.ndarray]:
        gone = set(modalities)
        return {m: (np.zeros(self.n, bool) if m in gone else self.dataset.masks[m].copy()) for m in self.modalities}

    def only(self, modalities: Iterable[str]) -> dict[str, np.ndarray]:
        keep = set(modalities)
        return self.without(m for m in self.modalities if m not in keep)

    def output(self, masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The out-of-fold ensemble output with the modalities ``masks`` removes removed from every row.

        Only whole modalities can be removed (as `without` and `only` do): out-of-fold evidence exists
        per learner, not per changed row.
        """
        if masks is None:
            return self._full.copy()
        own = self.dataset.masks
        masks = self.restrict(masks)
        removed = {m for m in self.modalities if own[m].any() and not masks[m].any()}
        if any(not np.array_equal(masks[m], own[m]) for m in self.modalities if m not in removed):
            raise DataError("out-of-fold scores can remove whole modalities only (without(), only()); pass held-out "
                            "data to score other patterns of missing values")
        if not removed:
            return self._full.copy()
        usable = [lid for lid, r in self.ensemble.learners.items() if not removed & set(r.spec.modalities)]
        out = np.tile(self.ensemble.task.prior, (self.n, 1)).astype(np.float64)
        if usable:
            rows, found = self.ensemble.out_of_fold(usable)
            at = np.searchsorted(self.rows, rows)
            inside = (at < self.n) & (self.rows[np.minimum(at, self.n - 1)] == rows)
            out[at[inside]] = found[inside]
        return out

    def fallback(self, masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Scored rows that no learner seeing none of the removed modalities has out-of-fold evidence
        for: `output` gives them the training prior."""
        own = self.dataset.masks
        masks = self.restrict(masks)
        removed = {m for m in self.modalities if own[m].any() and not masks[m].any()}
        usable = [lid for lid, r in self.ensemble.learners.items() if not removed & set(r.spec.modalities)]
        missing = np.ones(self.n, dtype=bool)
        if usable:
            rows, _ = self.ensemble.out_of_fold(usable)
            missing[np.isin(self.rows, rows)] = False
        return missing

    def score_output(self, output: np.ndarray, rows: np.ndarray | None = None) -> float:
        y, out = (self.targets, output) if rows is None else (self.targets[rows], output[rows])
        return float(task_metrics(self.task_type, y, out)[self.metric])

    def score(self, masks: Mapping[str, np.ndarray] | None = None) -> float:
        return self.score_output(self.output(masks))

    def loss(self, reference: float, score: float) -> float:
        return reference - score if self.higher_is_better else score - reference

    def worse(self, a: float, b: float) -> bool:
        return a < b if self.higher_is_better else a > b

    def output_with(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None
                    ) -> np.ndarray:
        raise DataError(NO_CHANGED_INPUTS)


class _RowView(dict):
    """``{modality: array}`` of some rows of the training arrays, each read on first use."""

    def __init__(self, arrays: Mapping[str, np.ndarray], rows: np.ndarray):
        super().__init__()
        self._arrays, self._rows = arrays, rows

    def __missing__(self, name: str) -> np.ndarray:
        self[name] = value = np.asarray(self._arrays[name][self._rows])
        return value


def scorer_for(model: TrainedModel, data: Mapping[str, Any] | None, labels: Any, metric: str | None = None
               ) -> EnsembleScorer | OutOfFoldScorer:
    """`EnsembleScorer` on held-out ``(data, labels)``; without them (both None), `OutOfFoldScorer`.

    Each has ``source``: what its figures were measured on (`HELD_OUT` or `OUT_OF_FOLD`).
    """
    if data is None and labels is None:
        return OutOfFoldScorer(model, metric)
    if data is None or labels is None:
        raise DataError("give both held-out data and labels, or neither to score the ensemble's out-of-fold "
                        "predictions of the training rows")
    return EnsembleScorer(model, data, labels, metric)


def modality_ablation(model: TrainedModel, data: Mapping[str, Any], labels: Any, *,
                      metric: str | None = None) -> dict[str, dict[str, float]]:
    """Per modality: the ensemble's score with every modality, without that one, and the drop.

    ``{modality: {"score_all": s, "score_without": s_m, "drop": d}}`` on ``(data, labels)``, where
    ``s_m`` is the score when modality ``m`` is missing from every sample (the ensemble routes each
    sample to the learners that do not need ``m``) and ``d = s - s_m`` for higher-is-better metrics
    (``s_m - s`` for log_loss / mse / mae), so a positive drop always means the modality helped.
    ``metric`` defaults to accuracy (classification), micro F1 (multilabel) or R² (regression); see
    `resolve_metric`. A modality absent from ``data`` altogether has a drop of 0.
    """
    scorer = EnsembleScorer(model, data, labels, metric)
    full = scorer.score()
    out = {}
    for m in scorer.modalities:
        without = scorer.score(scorer.without([m]))
        out[m] = {"score_all": full, "score_without": without, "drop": scorer.loss(full, without)}
    return out


__all__ = ["DEFAULT_METRIC", "HELD_OUT", "LOWER_IS_BETTER", "NO_CHANGED_INPUTS", "OUT_OF_FOLD", "EnsembleScorer",
           "OutOfFoldScorer", "encode_targets", "modality_ablation", "resolve_metric", "scorer_for"]
