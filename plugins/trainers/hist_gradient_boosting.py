"""The ``hist_gradient_boosting`` trainer: scikit-learn's histogram gradient boosting, saved as arrays.

``HistGradientBoostingClassifier`` (log loss: one tree per round for two classes, one per class and
round for more) or ``HistGradientBoostingRegressor`` (squared error), one model per target for
several regression targets and one binary classifier per label for multilabel (a label constant in
the bag's rows is predicted as that constant). Bins: ``min(255, training rows)``, which bins every
distinct value alone whenever 255 would, so the trees are the same, built with smaller histograms. Missing modalities stay NaN: every split learns which
side missing values take, so nothing is imputed. ``class_weights`` become sample weights.

**Early stopping** on the validation rows the engine holds out: scikit-learn scores the log loss (or
squared error) on them after every round and stops after ``early_stopping_patience`` rounds without
improvement (0, or a bag without validation rows: every round runs); the model then keeps the best
round's trees, as the other GBM trainers do. scikit-learn's boosting has no per-round callback, so
one `EpochRecord` holds the training and validation losses of the kept model and validators see it
after training; the rounds trained and kept are in ``describe()``.

**Saved as arrays** (``model.npz``, no pickle): each tree's nodes as flat arrays (split feature,
threshold, which side NaN takes, children, leaf values, split gains), the root of each tree and the
output column it adds to, and the baseline. Prediction walks every tree in numpy:

    raw_k(x) = baseline_k + sum over trees t of column k: value(leaf_t(x))

where at each split ``x_f <= threshold`` (NaN: the learned side) goes left; then ``sigmoid(raw)`` for
two classes and labels, ``softmax(raw)`` over the classes for more, ``raw`` for regression. The trees
are read from the fitted estimator (its ``_predictors``, a list of per-round tree predictors whose
``nodes`` are a numpy record array), and every fit checks that the arrays reproduce scikit-learn's
own raw predictions on training rows, so a scikit-learn that changed those internals fails loudly
instead of predicting wrongly. Importance is the total split gain per feature.

Options (``None``: what learner selection chose for the strategy): ``n_estimators`` (boosting rounds
at most, scikit-learn's ``max_iter``), ``gbm_learning_rate``, ``max_leaf_nodes``,
``l2_regularization``. The names are shared with the other GBM trainers, so one setting steers all of
them. Search space for ``hpo_trials``: see `HistGradientBoostingLearner.SEARCH_SPACE`.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least, non_negative
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._classical import ArraysFile, fit_threads, limited_threads
from modalbag.plugins.trainers._tabular import (
    ROUNDS_RULE,
    FloatRange,
    IntRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    optional_positive,
    tabular_score,
)
from modalbag.plugins.trainers._trees import Nodes, concatenate

ARCHITECTURES = {
    "speed": {"n_estimators": 100, "learning_rate": 0.2},
    "balanced": {"n_estimators": 300, "learning_rate": 0.1},
    "accuracy": {"n_estimators": 1000, "learning_rate": 0.05},
}

def fit_cost(profile: BagProfile, strategy: str) -> float:
    """Estimated seconds of one fit on one core (see `LearnerProposal.cost`): a tree per class and
    round (one for two classes), each costing a fixed part, a pass over the rows and a histogram per
    column; fitted to early-stopped fits of 100-4000 rows, 4-64 columns, 2-10 classes (within 2x)."""
    n, d = profile.n_rows, profile.n_features
    per_round = profile.num_classes if profile.task_type == "classification" and profile.num_classes > 2 else 1
    trees = ARCHITECTURES[strategy]["n_estimators"] * per_round
    return 5e-3 + trees * (6e-5 + 2.5e-7 * n + 3e-9 * n * d)


#: Training rows on which each fit checks the arrays against scikit-learn's own predictions.
CHECK_ROWS = 200


@attrs.frozen(kw_only=True)
class HistGradientBoostingOptions(TabularOptions):
    n_estimators: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Boosting rounds at most (scikit-learn's max_iter; early stopping may use fewer). "
                "None: 100, 300 or 1000 for the speed, balanced or accuracy strategy, " + ROUNDS_RULE + "."})
    gbm_learning_rate: float | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Shrinkage of each round's trees. None: 0.2, 0.1 or 0.05 for the speed, balanced or "
                "accuracy strategy."})
    max_leaf_nodes: int = attrs.field(default=31, validator=integer_at_least(2), metadata={
        "help": "Leaves per tree at most."})
    l2_regularization: float = attrs.field(default=0.0, validator=non_negative, metadata={
        "help": "L2 penalty on leaf values."})


@attrs.frozen
class TreeModel:
    """Flat node arrays of every tree and how the trees' sums become outputs.

    ``link``: ``constant`` (``fixed`` is the output), ``binary`` (one raw column: ``outputs[1]``
    against ``outputs[0]``), ``softmax`` (a raw column per class in ``outputs``), ``sigmoid`` (a raw
    column per label in ``outputs``; the other labels take ``fixed``) or ``identity`` (regression).
    """

    link: str
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    gain: np.ndarray
    roots: np.ndarray  # first node of each tree, in the order scikit-learn adds them
    tree_column: np.ndarray  # the raw column each tree adds to
    baseline: np.ndarray  # (raw columns,)
    outputs: np.ndarray
    fixed: np.ndarray

    def raw(self, x: np.ndarray) -> np.ndarray:
        """``baseline + the trees' leaf values``, summed tree by tree in training order (n, raw columns)."""
        out = np.tile(self.baseline, (len(x), 1))
        nodes = Nodes(self.feature, self.threshold, self.missing_left, self.left, self.right, self.is_leaf, self.roots)
        for rows, leaves in nodes.leaves(x):
            leaf_values = self.value[leaves]
            block = out[rows]
            for t in range(len(self.roots)):
                block[:, self.tree_column[t]] += leaf_values[:, t]
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        out = np.tile(self.fixed, (len(x), 1))
        if self.link == "constant":
            return out
        raw = self.raw(x)
        if self.link == "identity":
            return raw
        if self.link == "binary":
            p = expit(raw[:, 0])
            out[:, self.outputs[1]] = p
            out[:, self.outputs[0]] = 1 - p
        elif self.link == "softmax":
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            out[:, self.outputs] = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            out[:, self.outputs] = expit(raw)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in attrs.fields(type(self))}

    @classmethod
    def from_arrays(cls, saved: Any) -> TreeModel:
        return cls(str(saved["link"]), *(saved[f.name] for f in attrs.fields(cls)[1:]))


def trees_of(estimators: list[Any], rounds: list[int]) -> dict[str, np.ndarray]:
    """The node arrays of the first ``rounds[m]`` rounds of each fitted estimator ``m``; estimator
    ``m``'s ``k``-th tree of a round adds to raw column ``first_column(m) + k``."""
    trees, columns, baseline = [], [], []
    for est, kept in zip(estimators, rounds, strict=True):
        first_column = len(baseline)
        baseline.extend(np.asarray(est._baseline_prediction, dtype=np.float64).ravel())
        for predictors in est._predictors[:kept]:
            for k, predictor in enumerate(predictors):
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise ValueError("a tree splits on a categorical feature; modalbag passes none")
                trees.append({"feature": nodes["feature_idx"], "threshold": nodes["num_threshold"],
                              "missing_left": nodes["missing_go_to_left"], "left": nodes["left"],
                              "right": nodes["right"], "is_leaf": nodes["is_leaf"], "value": nodes["value"],
                              "gain": np.where(nodes["is_leaf"], 0.0, nodes["gain"])})
                columns.append(first_column + k)
    values = {key: (np.concatenate([np.asarray(t[key], dtype=np.float64) for t in trees]) if trees else np.empty(0))
              for key in ("value", "gain")}
    return concatenate(trees).arrays() | values | {"tree_column": np.array(columns, dtype=np.int64),
                                                    "baseline": np.array(baseline, dtype=np.float64)}


class HistGradientBoostingLearner(ArraysFile, TabularLearner):
    """One bag's histogram gradient boosting; see the module docstring."""

    trainer = "hist_gradient_boosting"
    library = "sklearn"
    extra = None  # scikit-learn is a dependency of modalbag itself
    importance_type = "total_gain"
    MODEL_CLASS = TreeModel
    SEARCH_SPACE = {
        "learning_rate": FloatRange(0.01, 0.3, log=True),
        "max_leaf_nodes": IntRange(7, 127, log=True),
        "l2_regularization": FloatRange(1e-4, 10.0, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return HistGradientBoostingOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (0.95, 0.95, 0.95), mixed=0.85, embeddings=0.5, raw=0.35)
        return LearnerProposal(score, dict(ARCHITECTURES[strategy]),
                               "histogram gradient boosting (scikit-learn)", cost=fit_cost(profile, strategy))

    def _params(self, seed: int) -> dict[str, Any]:
        arch = ARCHITECTURES["balanced"] | dict(self.spec.architecture)
        o = self.options
        return {"max_iter": self._rounds(o.n_estimators, arch["n_estimators"]),
                "learning_rate": o.gbm_learning_rate or arch["learning_rate"],
                "max_leaf_nodes": o.max_leaf_nodes, "l2_regularization": o.l2_regularization,
                "random_state": seed}

    def _learning_rate(self, params: dict[str, Any]) -> float | None:
        return params["learning_rate"]

    def _estimator(self, params: dict[str, Any], classifier: bool, stopping: bool) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classifier else HistGradientBoostingRegressor
        stop = {"early_stopping": True, "n_iter_no_change": self._patience, "scoring": "loss",
                "validation_fraction": None} if stopping else {"early_stopping": False}
        return cls(**params, **stop)

    def _fit_one(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                 val: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None, classifier: bool) -> tuple[Any, int]:
        """A fitted estimator and the rounds to keep (the best on the validation rows when it stopped early)."""
        stopping = val is not None and len(val[0]) > 0 and self._patience > 0 and _takes_validation_rows()
        # at most one bin per training row: every distinct value keeps its own bin either way, so the trees
        # are those of scikit-learn's 255 bins, grown with smaller histograms (faster on small, wide bags)
        est = self._estimator(params | {"max_bins": int(min(255, len(x)))}, classifier, stopping)
        if stopping:
            est.fit(x, y, sample_weight=w, X_val=val[0], y_val=val[1], sample_weight_val=val[2])
        else:
            est.fit(x, y, sample_weight=w)
        kept = est.n_iter_
        if stopping:
            kept = int(np.argmax(est.validation_score_[1:])) + 1  # [0] is the baseline alone
        return est, kept

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> TreeModel:
        with limited_threads(fit_threads(self, train.x)):
            return self._fit_trees(params, train, val, recorder)

    def _fit_trees(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
                   recorder: RoundRecorder | None) -> TreeModel:
        x = np.asarray(train.x, dtype=np.float64)
        vx = None if val is None else np.asarray(val.x, dtype=np.float64)
        fixed = np.zeros(self.n_outputs)
        estimators, rounds, outputs = [], [], []
        link = "constant"
        if self.task_type == "classification":
            classes = np.unique(train.y)
            if len(classes) == 1:
                fixed = np.eye(self.n_outputs)[classes[0]]
            else:
                held = None
                if val is not None:
                    seen = np.isin(val.y, classes)  # a class the training rows lack cannot be scored
                    held = (vx[seen], val.y[seen], None if val.w is None else val.w[seen])
                est, kept = self._fit_one(params, x, train.y, train.w, held, classifier=True)
                estimators, rounds = [est], [kept]
                outputs = list(est.classes_.astype(np.int64))
                link = "binary" if len(classes) == 2 else "softmax"
        else:
            y = np.asarray(train.y).reshape(len(x), -1)
            vy = None if val is None else np.asarray(val.y).reshape(len(val.x), -1)
            for j in range(y.shape[1]):
                target = y[:, j]
                if self.task_type == "multilabel":
                    target = target.astype(np.int64)
                    if np.all(target == target[0]):
                        fixed[j] = target[0]
                        continue
                held = None if val is None else (vx, vy[:, j].astype(target.dtype), None)
                est, kept = self._fit_one(params, x, target, None, held, classifier=self.task_type == "multilabel")
                estimators.append(est)
                rounds.append(kept)
                outputs.append(j)
            if estimators:
                link = "sigmoid" if self.task_type == "multilabel" else "identity"
        model = TreeModel(link, **trees_of(estimators, rounds), outputs=np.array(outputs, dtype=np.int64), fixed=fixed)
        _check_against_estimators(model, estimators, rounds, x[:CHECK_ROWS])
        if recorder is not None:
            self.info = {"link": link, "rounds_trained": [int(e.n_iter_) for e in estimators], "rounds_kept": rounds}
        return model

    def _predict(self, model: TreeModel, x: np.ndarray) -> np.ndarray:
        return model.predict(x)

    def _raw_importance(self) -> np.ndarray:
        raw = np.zeros(self.layout.n_features)
        split = ~self.model.is_leaf
        np.add.at(raw, self.model.feature[split], self.model.gain[split])
        return raw



def _takes_validation_rows() -> bool:
    """Whether this scikit-learn's ``fit`` accepts ``X_val`` (it does since 1.6)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return "X_val" in inspect.signature(HistGradientBoostingRegressor.fit).parameters


def _check_against_estimators(model: TreeModel, estimators: list[Any], rounds: list[int], x: np.ndarray) -> None:
    """Raise if the arrays do not reproduce each estimator's raw predictions after its kept rounds."""
    raw = model.raw(x)
    column = 0
    for est, kept in zip(estimators, rounds, strict=True):
        stages = est.staged_decision_function(x) if hasattr(est, "classes_") else est.staged_predict(x)
        for _ in range(kept - 1):
            next(stages)
        expected = np.asarray(next(stages), dtype=np.float64).reshape(len(x), -1)
        width = expected.shape[1]
        if not np.allclose(raw[:, column:column + width], expected, rtol=1e-9, atol=1e-9):
            import sklearn

            raise RuntimeError(f"scikit-learn {sklearn.__version__} stores HistGradientBoosting trees in a way this "
                               "modalbag does not read correctly; please report it")
        column += width


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("hist_gradient_boosting", HistGradientBoostingLearner, options=HistGradientBoostingOptions,
             summary="Histogram gradient boosting with scikit-learn, native NaN handling, saved as arrays")
