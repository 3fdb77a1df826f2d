"""The ``lightgbm`` trainer: gradient-boosted trees through LightGBM's native API.

Needs ``pip install modalbag[lightgbm]``; without it the trainer is listed, never selected
automatically, and naming it fails before training with that command.

Objectives: ``binary`` (two classes), ``multiclass`` (more), ``regression`` (L2). LightGBM boosts one
output per model, so multilabel tasks and several regression targets train one booster per column,
each stopping early on its own. Missing modalities are NaN, which LightGBM routes natively;
``class_weights`` become sample weights. With one booster, each boosting round is one `EpochRecord`
(training and validation log loss or L2 measured by LightGBM) passed to the validators and sinks as
it happens; with several, one record holds the losses of the final models. Training stops after
``early_stopping_patience`` rounds without a better validation loss and predicts with the best
round. The model saves as LightGBM's text format (one ``model_<j>.txt`` per booster).

Options (``None``: what learner selection chose for the strategy): ``n_estimators`` (boosting
rounds), ``num_leaves``, ``gbm_learning_rate``, ``min_child_samples``, ``subsample``,
``colsample_bytree``, ``reg_lambda``, and ``lightgbm_params``: native parameters passed as they
are, last, so they win. Search space for ``hpo_trials``: see `LightGBMLearner.SEARCH_SPACE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least, non_negative
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._tabular import (
    ROUNDS_RULE,
    FloatRange,
    IntRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    library_proposal,
    optional_positive,
    unit_interval,
)

ARCHITECTURES = {
    "speed": {"n_estimators": 200, "num_leaves": 15, "learning_rate": 0.2},
    "balanced": {"n_estimators": 500, "num_leaves": 31, "learning_rate": 0.1},
    "accuracy": {"n_estimators": 1500, "num_leaves": 31, "learning_rate": 0.03},
}


@attrs.frozen(kw_only=True)
class LightGBMOptions(TabularOptions):
    n_estimators: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Boosting rounds at most (early stopping may use fewer). None: 200, 500 or 1500 for the "
                "speed, balanced or accuracy strategy, " + ROUNDS_RULE + "."})
    num_leaves: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Leaves per tree at most. None: 15, 31 or 31 for the speed, balanced or accuracy strategy."})
    gbm_learning_rate: float | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Shrinkage of each round's tree. None: 0.2, 0.1 or 0.03 for the speed, balanced or "
                "accuracy strategy."})
    min_child_samples: int = attrs.field(default=20, validator=integer_at_least(1), metadata={
        "help": "Training rows a leaf must hold at least."})
    subsample: float = attrs.field(default=1.0, validator=unit_interval, metadata={
        "help": "Share of the training rows drawn afresh for each round's tree, in (0, 1] (1: every row)."})
    colsample_bytree: float = attrs.field(default=1.0, validator=unit_interval, metadata={
        "help": "Share of the feature columns each tree may use, in (0, 1] (1: every column)."})
    reg_lambda: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "L2 penalty on leaf values (0: none)."})
    lightgbm_params: dict[str, Any] = attrs.field(factory=dict, converter=dict, metadata={
        "help": "Native LightGBM parameters, passed as they are after the options above, so they override them."})


class LightGBMLearner(TabularLearner):
    """One bag's LightGBM booster (one per output column for multilabel and multi-target tasks)."""

    trainer = "lightgbm"
    library = "lightgbm"
    extra = "lightgbm"
    importance_type = "total_gain"
    SEARCH_SPACE = {
        "num_leaves": IntRange(4, 128, log=True),
        "learning_rate": FloatRange(0.01, 0.3, log=True),
        "min_child_samples": IntRange(2, 50, log=True),
        "colsample_bytree": FloatRange(0.5, 1.0),
        "reg_lambda": FloatRange(1e-3, 10.0, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return LightGBMOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal | None:
        return library_proposal("lightgbm", profile, strategy, (2.2, 2.1, 1.9), ARCHITECTURES,
                                "gradient-boosted trees (LightGBM)")

    @property
    def _columns(self) -> int:
        """Boosters trained: one, or one per output column."""
        return 1 if self.task_type == "classification" else int(self.n_outputs or 1)

    def _params(self, seed: int) -> dict[str, Any]:
        arch = ARCHITECTURES["balanced"] | dict(self.spec.architecture)
        o = self.options
        if self.task_type == "classification" and self.n_outputs == 2:
            objective = {"objective": "binary", "metric": "binary_logloss"}
        elif self.task_type == "classification":
            objective = {"objective": "multiclass", "num_class": self.n_outputs, "metric": "multi_logloss"}
        elif self.task_type == "multilabel":
            objective = {"objective": "binary", "metric": "binary_logloss"}
        else:
            objective = {"objective": "regression", "metric": "l2"}
        params = objective | {
            "n_estimators": self._rounds(o.n_estimators, arch["n_estimators"]),
            "num_leaves": o.num_leaves or arch["num_leaves"],
            "learning_rate": o.gbm_learning_rate or arch["learning_rate"],
            "min_child_samples": o.min_child_samples, "reg_lambda": o.reg_lambda,
            "subsample": o.subsample, "subsample_freq": 1 if o.subsample < 1 else 0,
            "colsample_bytree": o.colsample_bytree,
            "seed": seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
        }
        if self.threads:
            params["num_threads"] = self.threads
        return params | o.lightgbm_params

    def _learning_rate(self, params: dict[str, Any]) -> float | None:
        return params.get("learning_rate")

    def _records_per_round(self) -> bool:
        return self._columns == 1

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> Any:
        lgb = self._lib()
        params = dict(params)
        rounds = int(params.pop("n_estimators"))
        patience = self._patience if val is not None and self._patience > 0 else 0
        boosters = []
        for j in range(self._columns):
            y = _column(train.y, j, self.task_type)
            dtrain = lgb.Dataset(train.x, label=y, weight=train.w, params={"verbose": -1})
            valid_sets, names = ([dtrain], ["train"]) if recorder is not None and self._columns == 1 else ([], [])
            if val is not None:
                y_val = _column(val.y, j, self.task_type)
                valid_sets.append(lgb.Dataset(val.x, label=y_val, weight=val.w, reference=dtrain))
                names.append("validation")
            callbacks = [lgb.early_stopping(patience, first_metric_only=True, verbose=False)] if patience else []
            if recorder is not None and self._columns == 1:
                callbacks.append(_record_rounds(lgb, recorder))
                recorder.start()
            boosters.append(lgb.train(params, dtrain, rounds, valid_sets=valid_sets or None,
                                      valid_names=names or None, callbacks=callbacks))
        if recorder is not None:
            self.info = {"rounds_trained": [b.current_iteration() for b in boosters],
                         "rounds_kept": [_best(b) for b in boosters]}
        return boosters

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        columns = [np.asarray(b.predict(x, num_iteration=_best(b)), dtype=np.float64) for b in model]
        if self.task_type == "classification":
            out = columns[0]
            return np.stack([1.0 - out, out], axis=1) if out.ndim == 1 else out
        return np.stack(columns, axis=1)

    def _raw_importance(self) -> np.ndarray:
        return np.sum([b.feature_importance(importance_type="gain", iteration=_best(b)) for b in self.model], axis=0)

    def _save_model(self, directory: Path) -> list[str]:
        files = []
        for j, booster in enumerate(self.model):
            name = f"model_{j}.txt"
            booster.save_model(str(directory / name), num_iteration=_best(booster))
            files.append(name)
        return files

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        lgb = self._lib()
        return [lgb.Booster(model_file=str(directory / name)) for name in files]


def _column(y: np.ndarray, j: int, task_type: str) -> np.ndarray:
    """Booster ``j``'s labels: the class ids, or output column ``j`` as a contiguous vector."""
    return y if task_type == "classification" else np.ascontiguousarray(y[:, j])


def _best(booster: Any) -> int:
    """Rounds to predict with: the best round after early stopping, else every round."""
    best = getattr(booster, "best_iteration", 0) or 0
    return best if best > 0 else booster.current_iteration()


def _record_rounds(lgb: Any, recorder: RoundRecorder) -> Any:
    """A LightGBM callback that hands each round's measured losses to the recorder.

    It runs before LightGBM's early stopping (order 30), so the round that triggers early stopping is
    recorded too; a validator's stop keeps the best round seen so far.
    """

    def record(env: Any) -> None:
        train = val = None
        for result in env.evaluation_result_list:
            if result[0] == "train":
                train = float(result[2])
            elif result[0] == "validation" and val is None:
                val = float(result[2])
        if recorder.round(env.iteration - env.begin_iteration + 1, train, val):
            raise lgb.callback.EarlyStopException(recorder.best_round - 1, env.evaluation_result_list)

    record.order = 25  # type: ignore[attr-defined]
    return record


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("lightgbm", LightGBMLearner, options=LightGBMOptions,
             summary="Gradient-boosted trees with LightGBM (pip install modalbag[lightgbm])")
