"""The ``random_forest`` trainer: scikit-learn's random forests, or extremely randomised trees.

``RandomForestClassifier`` / ``RandomForestRegressor`` (``ExtraTrees*`` with ``extra_trees=True``),
one multi-output forest for multilabel and multi-target tasks. Missing modalities are NaN, which
scikit-learn's trees route natively (random forests since scikit-learn 1.4, extra trees since 1.6);
``class_weights`` become sample weights. A forest has no rounds: one `EpochRecord` holds the loss
on the training rows and the loss and metrics on the validation rows. Importance is the mean
decrease in impurity. The model saves in skops format (scikit-learn's secure persistence: a zip of
JSON and arrays, no pickle), which needs ``pip install modalbag[skops]``.

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
from modalbag.errors import MissingExtraError
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._tabular import (
    Choice,
    IntRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    import_library,
    library_available,
    optional_positive,
    tabular_score,
)

ARCHITECTURES = {"speed": {"n_estimators": 100}, "balanced": {"n_estimators": 200}, "accuracy": {"n_estimators": 500}}

#: The only type a saved forest may hold beyond what skops trusts by default.
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)


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


class RandomForestLearner(TabularLearner):
    """One bag's forest; see the module docstring."""

    trainer = "random_forest"
    library = "sklearn"
    extra = None  # scikit-learn is a dependency of modalbag itself
    importance_type = "mean_decrease_in_impurity"
    MODEL_FILE = "model.skops"
    SEARCH_SPACE = {
        "max_depth": Choice((None, 4, 8, 16)),
        "max_features": Choice(("sqrt", 0.5, 1.0)),
        "min_samples_leaf": IntRange(1, 20, log=True),
    }

    @classmethod
    def options_class(cls) -> type:
        return RandomForestOptions

    @classmethod
    def check_available(cls) -> None:
        """scikit-learn trains it, but only skops stores it without pickle: a forest that could train and
        then not be saved would fail the run at its end, so without skops it is not a candidate."""
        super().check_available()
        if not library_available("skops"):
            raise MissingExtraError(cls.trainer, "skops", "skops")

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
               recorder: RoundRecorder | None) -> Any:
        y = train.y.astype(np.int64) if self.task_type == "multilabel" else train.y
        if self.task_type == "regression" and y.shape[1] == 1:
            y = y[:, 0]
        return self._estimator(params).fit(train.x, y, sample_weight=train.w)

    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        n = len(x)
        if self.task_type == "regression":
            return np.asarray(model.predict(x), dtype=np.float64).reshape(n, -1)
        proba = model.predict_proba(x)
        if self.task_type == "classification":
            out = np.zeros((n, self.n_outputs))
            out[:, model.classes_.astype(np.int64)] = proba
            return out
        out = np.zeros((n, self.n_outputs))
        for j, (classes, p) in enumerate(zip(model.classes_, proba, strict=True)):
            positive = np.flatnonzero(classes == 1)
            if len(positive):
                out[:, j] = p[:, positive[0]]
        return out

    def _raw_importance(self) -> np.ndarray:
        return np.asarray(self.model.feature_importances_, dtype=np.float64)

    def _save_model(self, directory: Path) -> list[str]:
        sio = import_library("skops.io", self.trainer, "skops")
        sio.dump(self.model, directory / self.MODEL_FILE)
        return [self.MODEL_FILE]

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        sio = import_library("skops.io", self.trainer, "skops")
        path = directory / files[0]
        untrusted = set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES)
        if untrusted:
            raise ValueError(f"{path} holds types a forest never contains: {sorted(untrusted)}; refusing to load it")
        return sio.load(path, trusted=list(TRUSTED_TYPES))


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("random_forest", RandomForestLearner, options=RandomForestOptions,
             summary="Random forest or extra trees with scikit-learn")
