"""The ``random_forest`` trainer: scikit-learn's random forests, or extremely randomised trees.

``RandomForestClassifier`` / ``RandomForestRegressor`` (``ExtraTrees*`` with ``extra_trees=True``),
one multi-output forest for multilabel and multi-target tasks. Missing modalities are NaN, which
scikit-learn's trees route natively (random forests since scikit-learn 1.4, extra trees since 1.6);
``class_weights`` become sample weights. A forest has no rounds: one `EpochRecord` holds the loss
on the training rows and the loss and metrics on the validation rows. Importance is the mean
decrease in impurity.

**Saved as arrays** (``model.npz``, no pickle, no extra library): every tree's nodes as flat arrays
(see `modalbag.plugins.trainers._trees`) and, per node, the tree's prediction there in the learner's
output columns: class fractions for classification, the probability of each label for multilabel,
the target means for regression. A forest predicts the mean over its trees of the leaf each row
reaches, as scikit-learn's forests do; every fit checks the arrays against scikit-learn's own
predictions on training rows. Runs saved by earlier versions in skops format (``model.skops``) still
load when skops is installed.

Options (``None``: what learner selection chose for the strategy): ``n_estimators`` (trees),
``max_depth`` (None: grow until pure), ``max_features`` (None: scikit-learn's default for the
task), ``min_samples_leaf``, ``extra_trees``. Search space for ``hpo_trials``: see
`RandomForestLearner.SEARCH_SPACE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._classical import ArraysFile
from modalbag.plugins.trainers._tabular import (
    Choice,
    IntRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    import_library,
    optional_positive,
    tabular_score,
)
from modalbag.plugins.trainers._trees import Nodes, concatenate

ARCHITECTURES = {"speed": {"n_estimators": 100}, "balanced": {"n_estimators": 200}, "accuracy": {"n_estimators": 500}}

#: The only type a skops-format forest (saved by modalbag 0.1's first releases) may hold beyond what
#: skops trusts by default.
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)

#: Training rows on which each fit checks the arrays against scikit-learn's own predictions.
CHECK_ROWS = 200


def _max_features(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    ok = (value is None or value in ("sqrt", "log2")
          or (isinstance(value, float) and 0 < value <= 1) or (type(value) is int and value >= 1))
    if not ok:
        raise ValueError(f"{attribute.name} must be 'sqrt', 'log2', a fraction in (0, 1], a count >= 1 or None, "
                         f"got {value!r}")


@attrs.frozen(kw_only=True)
class RandomForestOptions(TabularOptions):
    n_estimators: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Trees in the forest. None: 100, 200 or 500 for the speed, balanced or accuracy strategy."})
    max_depth: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Depth of each tree at most (None: no limit; nodes split until their leaves are pure)."})
    max_features: str | float | int | None = attrs.field(default=None, validator=_max_features, metadata={
        "help": "Features considered at each split: 'sqrt', 'log2', a fraction in (0, 1] or a count "
                "(None: scikit-learn's default, 'sqrt' for classification and every feature for regression)."})
    min_samples_leaf: int = attrs.field(default=1, validator=integer_at_least(1), metadata={
        "help": "Training rows a leaf must hold at least."})
    extra_trees: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool), metadata={
        "help": "Grow extremely randomised trees (scikit-learn's ExtraTrees: random split thresholds) "
                "instead of a random forest."})


@attrs.frozen
class ForestModel:
    """A fitted forest as arrays: ``nodes`` of every tree, ``value`` (nodes, outputs) each tree's
    prediction at each node, ``importance`` scikit-learn's mean decrease in impurity per feature."""

    nodes: Nodes
    value: np.ndarray
    importance: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.value.shape[1]))
        for rows, leaves in self.nodes.leaves(x, per_block=self.value.shape[1]):
            out[rows] = self.value[leaves].mean(axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return self.nodes.arrays() | {"value": self.value, "importance": self.importance}

    @classmethod
    def from_arrays(cls, saved: Any) -> ForestModel:
        nodes = Nodes(**{f.name: saved[f.name] for f in attrs.fields(Nodes)})
        return cls(nodes, saved["value"], saved["importance"])


class RandomForestLearner(ArraysFile, TabularLearner):
    """One bag's forest; see the module docstring."""

    trainer = "random_forest"
    library = "sklearn"
    extra = None  # scikit-learn is a dependency of modalbag itself
    importance_type = "mean_decrease_in_impurity"
    MODEL_CLASS = ForestModel
    SEARCH_SPACE = {
        "max_depth": Choice((None, 4, 8, 16)),
        "max_features": Choice(("sqrt", 0.5, 1.0)),
        "min_samples_leaf": IntRange(1, 20, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return RandomForestOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (1.2, 1.2, 1.2), mixed=0.9, embeddings=0.6, raw=0.4)
        return LearnerProposal(score, dict(ARCHITECTURES[strategy]), "random forest (scikit-learn)")

    def _params(self, seed: int) -> dict[str, Any]:
        arch = ARCHITECTURES["balanced"] | dict(self.spec.architecture)
        o = self.options
        params: dict[str, Any] = {"n_estimators": o.n_estimators or arch["n_estimators"], "max_depth": o.max_depth,
                                  "min_samples_leaf": o.min_samples_leaf, "random_state": seed,
                                  "n_jobs": self.threads}
        if o.max_features is not None:
            params["max_features"] = o.max_features
        return params

    def _estimator(self, params: dict[str, Any]) -> Any:
        from sklearn import ensemble

        kind = "ExtraTrees" if self.options.extra_trees else "RandomForest"
        role = "Regressor" if self.task_type == "regression" else "Classifier"
        return getattr(ensemble, kind + role)(**params)

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> ForestModel:
        y = train.y.astype(np.int64) if self.task_type == "multilabel" else train.y
        if self.task_type == "regression" and y.shape[1] == 1:
            y = y[:, 0]
        forest = self._estimator(params).fit(train.x, y, sample_weight=train.w)
        model = ForestModel(concatenate([_tree_nodes(tree.tree_) for tree in forest.estimators_]),
                            np.concatenate([self._node_outputs(forest, tree.tree_) for tree in forest.estimators_]),
                            np.asarray(forest.feature_importances_, dtype=np.float64))
        check = train.x[:CHECK_ROWS]
        if not np.allclose(model.predict(check), self._sklearn_outputs(forest, check), rtol=1e-9, atol=1e-9):
            import sklearn

            raise RuntimeError(f"scikit-learn {sklearn.__version__} stores forest trees in a way this modalbag "
                               "does not read correctly; please report it")
        return model

    def _node_outputs(self, forest: Any, tree: Any) -> np.ndarray:
        """One tree's prediction at each of its nodes, in the learner's output columns (nodes, outputs)."""
        value = np.asarray(tree.value, dtype=np.float64)  # (nodes, scikit-learn outputs, classes or 1)
        out = np.zeros((len(value), self.n_outputs))
        if self.task_type == "regression":
            return value[:, :, 0]
        if self.task_type == "classification":
            counts = value[:, 0, :len(forest.classes_)]
            out[:, forest.classes_.astype(np.int64)] = counts / _nonzero(counts.sum(axis=1, keepdims=True))
            return out
        for j, classes in enumerate(forest.classes_):
            counts = value[:, j, :len(classes)]
            positive = np.flatnonzero(classes == 1)
            if len(positive):
                out[:, j] = counts[:, positive[0]] / _nonzero(counts.sum(axis=1))
        return out

    def _sklearn_outputs(self, forest: Any, x: np.ndarray) -> np.ndarray:
        """scikit-learn's own predictions in the learner's output columns, which the arrays must equal."""
        n = len(x)
        if self.task_type == "regression":
            return np.asarray(forest.predict(x), dtype=np.float64).reshape(n, -1)
        proba = forest.predict_proba(x)
        out = np.zeros((n, self.n_outputs))
        if self.task_type == "classification":
            out[:, forest.classes_.astype(np.int64)] = proba
            return out
        for j, (classes, p) in enumerate(zip(forest.classes_, proba, strict=True)):
            positive = np.flatnonzero(classes == 1)
            if len(positive):
                out[:, j] = p[:, positive[0]]
        return out

    def _predict(self, model: ForestModel, x: np.ndarray) -> np.ndarray:
        return model.predict(x)

    def _raw_importance(self) -> np.ndarray:
        return np.asarray(self.model.importance, dtype=np.float64)

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        if files[0].endswith(".skops"):
            return _SkopsForest(self, _load_skops(directory / files[0], self.trainer))
        return super()._load_model(directory, files)


@attrs.frozen
class _SkopsForest:
    """A forest saved in skops format by an earlier modalbag, predicting like `ForestModel`."""

    learner: RandomForestLearner
    forest: Any

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.learner._sklearn_outputs(self.forest, x)

    @property
    def importance(self) -> np.ndarray:
        return self.forest.feature_importances_


def _load_skops(path: Path, trainer: str) -> Any:
    sio = import_library("skops.io", trainer, "skops")
    untrusted = set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ValueError(f"{path} holds types a forest never contains: {sorted(untrusted)}; refusing to load it")
    return sio.load(path, trusted=list(TRUSTED_TYPES))


def _tree_nodes(tree: Any) -> dict[str, np.ndarray]:
    """A fitted scikit-learn ``Tree``'s node arrays (a leaf's children are -1)."""
    left = np.asarray(tree.children_left, dtype=np.int64)
    missing = getattr(tree, "missing_go_to_left", None)  # absent before scikit-learn 1.3's NaN support
    return {"feature": tree.feature, "threshold": tree.threshold, "left": left, "right": tree.children_right,
            "is_leaf": left < 0,
            "missing_left": np.zeros(len(left), dtype=bool) if missing is None else np.asarray(missing, dtype=bool)}


def _nonzero(total: np.ndarray) -> np.ndarray:
    return np.where(total == 0, 1.0, total)


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("random_forest", RandomForestLearner, options=RandomForestOptions,
             summary="Random forest or extra trees with scikit-learn")
