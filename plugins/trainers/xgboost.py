"""The ``xgboost`` trainer: gradient-boosted trees through XGBoost's native API.

Needs ``pip install modalbag[xgboost]``; without it the trainer is listed, never selected
automatically, and naming it fails before training with that command.

Objectives: ``binary:logistic`` for two classes and for multilabel (one output per label),
``multi:softprob`` for more classes, ``reg:squarederror`` for one or several targets. Trees grow with
the ``hist`` method on a ``QuantileDMatrix``; missing modalities are NaN, which XGBoost routes
natively; ``class_weights`` become sample weights. Each boosting round is one `EpochRecord` with the
training and validation loss XGBoost measured (log loss, or RMSE squared to MSE), passed to the
validators and sinks as it happens. Training stops after ``early_stopping_patience`` rounds without
a better validation loss and keeps the best round's trees. The model saves as XGBoost JSON.

Options (``None``: what learner selection chose for the strategy): ``n_estimators`` (boosting
rounds), ``max_depth``, ``gbm_learning_rate``, ``subsample``, ``colsample_bytree``,
``min_child_weight``, ``reg_lambda``, and ``xgboost_params``: native parameters passed as they are,
last, so they win. Search space for ``hpo_trials``: see `XGBoostLearner.SEARCH_SPACE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative
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
    "speed": {"n_estimators": 200, "max_depth": 4, "learning_rate": 0.2},
    "balanced": {"n_estimators": 500, "max_depth": 6, "learning_rate": 0.1},
    "accuracy": {"n_estimators": 1500, "max_depth": 6, "learning_rate": 0.03},
}


@attrs.frozen(kw_only=True)
class XGBoostOptions(TabularOptions):
    n_estimators: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Boosting rounds at most (early stopping may use fewer). None: 200, 500 or 1500 for the "
                "speed, balanced or accuracy strategy, " + ROUNDS_RULE + "."})
    max_depth: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Depth of each tree at most. None: 4, 6 or 6 for the speed, balanced or accuracy strategy."})
    gbm_learning_rate: float | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Shrinkage of each round's tree (XGBoost's eta). None: 0.2, 0.1 or 0.03 for the speed, "
                "balanced or accuracy strategy."})
    subsample: float = attrs.field(default=1.0, validator=unit_interval, metadata={
        "help": "Share of the training rows sampled for each tree, in (0, 1] (1: every row)."})
    colsample_bytree: float = attrs.field(default=1.0, validator=unit_interval, metadata={
        "help": "Share of the feature columns sampled for each tree, in (0, 1] (1: every column)."})
    min_child_weight: float = attrs.field(default=1.0, validator=non_negative, metadata={
        "help": "Smallest sum of instance weights (hessian) a child node must have for a split to be kept."})
    reg_lambda: float = attrs.field(default=1.0, validator=non_negative, metadata={
        "help": "L2 penalty on leaf weights (0: none)."})
    xgboost_params: dict[str, Any] = attrs.field(factory=dict, converter=dict, metadata={
        "help": "Native XGBoost parameters, passed as they are after the options above, so they override them."})


class XGBoostLearner(TabularLearner):
    """One bag's XGBoost booster; see the module docstring."""

    trainer = "xgboost"
    library = "xgboost"
    extra = "xgboost"
    importance_type = "total_gain"
    MODEL_FILE = "model.json"
    SEARCH_SPACE = {
        "max_depth": IntRange(2, 10),
        "learning_rate": FloatRange(0.01, 0.3, log=True),
        "subsample": FloatRange(0.5, 1.0),
        "colsample_bytree": FloatRange(0.5, 1.0),
        "min_child_weight": FloatRange(0.5, 20.0, log=True),
        "reg_lambda": FloatRange(1e-3, 10.0, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return XGBoostOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal | None:
        return library_proposal("xgboost", profile, strategy, (2.1, 2.2, 2.0), ARCHITECTURES,
                                "gradient-boosted trees (XGBoost)")

    def _params(self, seed: int) -> dict[str, Any]:
        arch = ARCHITECTURES["balanced"] | dict(self.spec.architecture)
        o = self.options
        if self.task_type == "classification" and self.n_outputs == 2:
            objective = {"objective": "binary:logistic", "eval_metric": "logloss"}
        elif self.task_type == "classification":
            objective = {"objective": "multi:softprob", "num_class": self.n_outputs, "eval_metric": "mlogloss"}
        elif self.task_type == "multilabel":
            objective = {"objective": "binary:logistic", "eval_metric": "logloss"}
        else:
            objective = {"objective": "reg:squarederror", "eval_metric": "rmse"}
        params = objective | {
            "tree_method": "hist",
            "n_estimators": self._rounds(o.n_estimators, arch["n_estimators"]),
            "max_depth": o.max_depth or arch["max_depth"],
            "learning_rate": o.gbm_learning_rate or arch["learning_rate"],
            "subsample": o.subsample, "colsample_bytree": o.colsample_bytree,
            "min_child_weight": o.min_child_weight, "reg_lambda": o.reg_lambda,
            "seed": seed, "verbosity": 0,
        }
        if self.threads:
            params["nthread"] = self.threads
        return params | o.xgboost_params

    def _learning_rate(self, params: dict[str, Any]) -> float | None:
        return params.get("learning_rate", params.get("eta"))

    def _records_per_round(self) -> bool:
        return True

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> Any:
        xgb = self._lib()
        params = dict(params)
        rounds = int(params.pop("n_estimators"))
        dtrain = xgb.QuantileDMatrix(train.x, label=train.y, weight=train.w, nthread=params.get("nthread"))
        evals = [(dtrain, "train")] if recorder is not None else []
        if val is not None:
            dval = xgb.QuantileDMatrix(val.x, label=val.y, weight=val.w, ref=dtrain, nthread=params.get("nthread"))
            evals.append((dval, "validation"))
        patience = self._patience if val is not None and self._patience > 0 else None
        callbacks = [_record_rounds(xgb, recorder)] if recorder is not None else None
        booster = xgb.train(params, dtrain, rounds, evals=evals, early_stopping_rounds=patience,
                            callbacks=callbacks, verbose_eval=False)
        trained = booster.num_boosted_rounds()
        best = booster.attr("best_iteration")  # set by early stopping once it has seen a round
        if patience is not None and best is not None:
            booster = booster[: int(best) + 1]  # keep the best round's trees
        if recorder is not None:
            self.info = {"rounds_trained": trained, "rounds_kept": booster.num_boosted_rounds()}
        return booster

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        out = np.asarray(model.inplace_predict(x), dtype=np.float64)
        if self.task_type == "classification" and self.n_outputs == 2:
            return np.stack([1.0 - out, out], axis=1)
        return out.reshape(len(x), -1)

    def _raw_importance(self) -> np.ndarray:
        scores = self.model.get_score(importance_type="total_gain")
        raw = np.zeros(self.layout.n_features)
        for name, value in scores.items():
            raw[int(name[1:])] = value  # XGBoost names columns f0, f1, ...
        return raw

    def _save_model(self, directory: Path) -> list[str]:
        self.model.save_model(str(directory / self.MODEL_FILE))
        return [self.MODEL_FILE]

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        xgb = self._lib()
        booster = xgb.Booster()
        booster.load_model(str(directory / files[0]))
        return booster


def _record_rounds(xgb: Any, recorder: RoundRecorder) -> Any:
    """An XGBoost callback that hands each round's measured losses to the recorder."""

    class RecordRounds(xgb.callback.TrainingCallback):
        def before_training(self, model: Any) -> Any:
            recorder.start()
            return model

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return recorder.round(epoch + 1, _latest(evals_log["train"]), _latest(evals_log.get("validation")))

    return RecordRounds()


def _latest(history: Any) -> float | None:
    """The last value of the last metric (the one early stopping watches); RMSE squared to MSE."""
    if not history:
        return None
    name, values = list(history.items())[-1]
    value = float(values[-1])
    return value * value if name == "rmse" else value


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("xgboost", XGBoostLearner, options=XGBoostOptions,
             summary="Gradient-boosted trees with XGBoost (pip install modalbag[xgboost])")
