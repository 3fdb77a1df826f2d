"""The ``catboost`` trainer: ordered gradient boosting on oblivious trees, with CatBoost.

Needs ``pip install modalbag[catboost]``; without it the trainer is listed, never selected
automatically, and naming it fails before training with that command.

Loss functions: ``Logloss`` (two classes), ``MultiClass`` (more; ``class_names`` fixes every class
even when a bag's rows lack one), ``MultiLogloss`` (multilabel), ``RMSE`` / ``MultiRMSE`` (one or
several targets): one model in every case. Missing modalities are NaN (CatBoost's ``Min`` mode);
``class_weights`` become sample weights. Each boosting round is one `EpochRecord` with the
training and validation loss CatBoost measured (RMSE turned into MSE), passed to the validators and
sinks as it happens. Training stops after ``early_stopping_patience`` rounds without a better
validation loss and keeps the best round's trees (``use_best_model``). What CatBoost would print
goes to the ``modalbag.plugins.trainers.catboost`` logger instead. The model saves as ``.cbm``.

Options (``None``: what learner selection chose for the strategy): ``n_estimators`` (iterations),
``depth``, ``gbm_learning_rate``, ``l2_leaf_reg``, and ``catboost_params``: native parameters passed
as they are, last, so they win. Search space for ``hpo_trials``: see `CatBoostLearner.SEARCH_SPACE`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.logs import get_logger
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
)

log = get_logger("modalbag.plugins.trainers.catboost")

ARCHITECTURES = {
    "speed": {"n_estimators": 200, "depth": 4, "learning_rate": 0.2},
    "balanced": {"n_estimators": 500, "depth": 6, "learning_rate": 0.1},
    "accuracy": {"n_estimators": 1500, "depth": 6, "learning_rate": 0.03},
}


@attrs.frozen(kw_only=True)
class CatBoostOptions(TabularOptions):
    n_estimators: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Boosting rounds at most (CatBoost's iterations; early stopping may use fewer). "
                "None: 200, 500 or 1500 for the speed, balanced or accuracy strategy, " + ROUNDS_RULE + "."})
    depth: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Depth of each (oblivious) tree. None: 4, 6 or 6 for the speed, balanced or accuracy strategy."})
    gbm_learning_rate: float | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Shrinkage of each round's tree. None: 0.2, 0.1 or 0.03 for the speed, balanced or "
                "accuracy strategy."})
    l2_leaf_reg: float = attrs.field(default=3.0, validator=non_negative, metadata={
        "help": "L2 penalty on leaf values (CatBoost's l2_leaf_reg)."})
    catboost_params: dict[str, Any] = attrs.field(factory=dict, converter=dict, metadata={
        "help": "Native CatBoost parameters, passed as they are after the options above, so they override them."})


class CatBoostLearner(TabularLearner):
    """One bag's CatBoost model; see the module docstring."""

    trainer = "catboost"
    library = "catboost"
    extra = "catboost"
    importance_type = "prediction_values_change"
    MODEL_FILE = "model.cbm"
    SEARCH_SPACE = {
        "depth": IntRange(3, 10),
        "learning_rate": FloatRange(0.01, 0.3, log=True),
        "l2_leaf_reg": FloatRange(0.1, 30.0, log=True),
        "random_strength": FloatRange(0.1, 10.0, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return CatBoostOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal | None:
        return library_proposal("catboost", profile, strategy, (1.7, 2.0, 2.1), ARCHITECTURES,
                                "ordered gradient boosting (CatBoost)")

    def _params(self, seed: int) -> dict[str, Any]:
        arch = ARCHITECTURES["balanced"] | dict(self.spec.architecture)
        o = self.options
        n = self.n_outputs
        if self.task_type == "classification":
            loss = {"loss_function": "Logloss" if n == 2 else "MultiClass", "class_names": list(range(n))}
        elif self.task_type == "multilabel":
            loss = {"loss_function": "MultiLogloss"}
        else:
            loss = {"loss_function": "RMSE" if n == 1 else "MultiRMSE"}
        return loss | {
            "iterations": self._rounds(o.n_estimators, arch["n_estimators"]),
            "depth": o.depth or arch["depth"],
            "learning_rate": o.gbm_learning_rate or arch["learning_rate"],
            "l2_leaf_reg": o.l2_leaf_reg,
            "random_seed": seed, "thread_count": self.threads or -1,
            "logging_level": "Silent", "allow_writing_files": False,
        } | o.catboost_params

    def _learning_rate(self, params: dict[str, Any]) -> float | None:
        return params.get("learning_rate")

    def _records_per_round(self) -> bool:
        return True

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> Any:
        catboost = self._lib()
        model = catboost.CatBoost(params)
        eval_set = catboost.Pool(val.x, val.y, weight=val.w) if val is not None else None
        patience = self._patience if val is not None and self._patience > 0 else None
        callbacks = None
        if recorder is not None:
            callbacks = [_RecordRounds(recorder, self.n_outputs if params["loss_function"] == "MultiRMSE" else 1)]
            recorder.start()
        messages = io.StringIO()
        model.fit(catboost.Pool(train.x, train.y, weight=train.w), eval_set=eval_set,
                  early_stopping_rounds=patience, use_best_model=val is not None, callbacks=callbacks,
                  log_cout=messages, log_cerr=messages)
        for line in filter(None, messages.getvalue().splitlines()):
            log.warning("catboost.message", learner=self.spec.learner_id, message=line)
        if recorder is not None:
            self.info = {"rounds_kept": int(model.tree_count_),
                         "best_iteration": model.get_best_iteration()}
        return model

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        if self.task_type == "regression":
            out = model.predict(x, prediction_type="RawFormulaVal")
        else:
            out = model.predict(x, prediction_type="Probability")
        return np.asarray(out, dtype=np.float64).reshape(len(x), -1)

    def _raw_importance(self) -> np.ndarray:
        return np.asarray(self.model.get_feature_importance(), dtype=np.float64)

    def _save_model(self, directory: Path) -> list[str]:
        self.model.save_model(str(directory / self.MODEL_FILE), format="cbm")
        return [self.MODEL_FILE]

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        catboost = self._lib()
        return catboost.CatBoost().load_model(str(directory / files[0]), format="cbm")


class _RecordRounds:
    """A CatBoost callback that hands each round's measured losses to the recorder.

    CatBoost's RMSE becomes MSE (squared); MultiRMSE sums squared errors over the ``targets``
    columns, so its square is divided by their number to give the mean squared error.
    """

    def __init__(self, recorder: RoundRecorder, targets: int):
        self.recorder, self.targets = recorder, targets

    def after_iteration(self, info: Any) -> bool:
        metrics = info.metrics
        train = self._latest(metrics.get("learn"))
        val = self._latest(metrics.get("validation"))
        return not self.recorder.round(int(info.iteration), train, val)  # CatBoost: True continues

    def _latest(self, history: Any) -> float | None:
        if not history:
            return None
        name, values = next(iter(history.items()))
        value = float(values[-1])
        if name in ("RMSE", "MultiRMSE"):
            return value * value / self.targets
        return value


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("catboost", CatBoostLearner, options=CatBoostOptions,
             summary="Ordered gradient boosting with CatBoost (pip install modalbag[catboost])")
