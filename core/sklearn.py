"""modalbag as scikit-learn estimators: `MultiModalClassifier` and `MultiModalRegressor`.

``X`` is one table (a pandas DataFrame or a 2-D array) whose column groups are the modalities::

    clf = MultiModalClassifier(modalities={"text": "emb_*", "meta": ["age", "income"]},
                               training={"epochs": 5})
    cross_val_score(clf, df, y, cv=5)

A group is a list of column names (DataFrame) or positions (array), or a ``"prefix*"`` pattern
over a DataFrame's column names; ``(columns, type)`` gives the modality type (``"tabular"`` by
default). A row whose values in a group are all NaN does not have that modality: the ensemble
predicts it from the modalities it has. Without ``modalities`` all columns are one modality.

The estimators follow scikit-learn's contract: parameters are stored as given and only read in
``fit`` (so `clone`, `GridSearchCV` and `Pipeline` work), fitted state ends in ``_``
(``model_`` is the trained `MultiModalEnsembleModel`), ``random_state`` seeds the bags and training.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from modalbag.api.model import MultiModalEnsembleModel, create_model_from_arrays
from modalbag.data.frames import check_numeric, column_names, is_dataframe, resolve_column_groups

#: What a quick estimator trains unless told otherwise: the fast classical trainers, chosen per
#: modality subset by measurement (the neural trainer is one ``trainers=[..., "neural"]`` away).
DEFAULT_TRAINERS = ("logistic", "svm", "knn", "hist_gradient_boosting")


class _MultiModalEstimator(BaseEstimator):
    _task_type = "classification"

    def __init__(self, modalities: Mapping[str, Any] | None = None, *, n_bags: int = 10,
                 dropout_strategy: str = "adaptive", trainers: Sequence[str] | None = DEFAULT_TRAINERS,
                 optimization_strategy: str = "balanced", training: Mapping[str, Any] | None = None,
                 random_state: int = 0):
        self.modalities = modalities
        self.n_bags = n_bags
        self.dropout_strategy = dropout_strategy
        self.trainers = trainers
        self.optimization_strategy = optimization_strategy
        self.training = training
        self.random_state = random_state

    # -- input ------------------------------------------------------------------------------------

    def _split(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        """The modalities of a validated ``X``: a row all NaN in a group lacks that modality; a NaN
        among observed values of a group is filled with that column's training mean."""
        out = {}
        for name, (positions, _) in self.modality_columns_.items():
            block = matrix[:, positions].copy()
            nan = np.isnan(block)
            partial = nan & ~nan.all(axis=1, keepdims=True)
            if partial.any():
                block[partial] = np.broadcast_to(self.column_means_[positions], block.shape)[partial]
            out[name] = block
        return out

    def _validated(self, X: Any, *, fitting: bool, y: Any = None) -> Any:
        """``X`` (and ``y``) checked the way scikit-learn estimators check them (NaN allowed)."""
        from sklearn.utils.validation import validate_data

        if is_dataframe(X):  # name the columns a conversion to float would fail on, and the fix
            names = column_names(X) or []
            groups = resolve_column_groups(self.modalities, names, len(names))
            grouped = {name: [X.columns[p] for p in positions.tolist()] for name, (positions, _) in groups.items()}
            used = {p for positions, _ in groups.values() for p in positions.tolist()}
            check_numeric(X, grouped, rest=[c for i, c in enumerate(X.columns) if i not in used])
        if fitting:
            return validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64,
                                 y_numeric=self._task_type == "regression",
                                 multi_output=self._task_type == "regression")
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)

    # -- fitting ----------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> _MultiModalEstimator:
        names = column_names(X)
        matrix, y = self._validated(X, fitting=True, y=y)
        self._check_targets(y)
        self.modality_columns_ = resolve_column_groups(self.modalities, names, matrix.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its mean is 0 below
            self.column_means_ = np.nan_to_num(np.nanmean(matrix, axis=0))
        arrays = self._split(matrix)
        typed = {name: (arrays[name], kind) for name, (_, kind) in self.modality_columns_.items()}
        model = create_model_from_arrays(typed, y, task_type=self._task_type)
        model.create_ensemble(n_bags=self.n_bags, dropout_strategy=self.dropout_strategy,
                              random_state=self.random_state)
        model.select_base_learners(optimization_strategy=self.optimization_strategy, instantiate=False,
                                   trainers=list(self.trainers) if self.trainers else None)
        options = {"random_state": self.random_state, **dict(self.training or {})}
        model.train_ensemble(**options)
        self.model_: MultiModalEnsembleModel = model
        return self

    def _check_targets(self, y: np.ndarray) -> None:
        """Nothing to refuse beyond what `validate_data` did (a classifier checks its labels)."""

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict(self._split(self._validated(X, fitting=False)))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN across a modality's columns means that modality is missing
        tags.non_deterministic = False
        return tags


class MultiModalClassifier(ClassifierMixin, _MultiModalEstimator):
    """A modality-dropout bagging ensemble as a scikit-learn classifier (see the module docstring)."""

    _task_type = "classification"

    def fit(self, X: Any, y: Any) -> MultiModalClassifier:
        super().fit(X, y)
        self.classes_ = np.asarray(self.model_.classes_)
        return self

    def _check_targets(self, y: np.ndarray) -> None:
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; y holds 1 class")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self._split(self._validated(X, fitting=False)))


class MultiModalRegressor(RegressorMixin, _MultiModalEstimator):
    """A modality-dropout bagging ensemble as a scikit-learn regressor (see the module docstring)."""

    _task_type = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # a 2-D y trains one output per column
        return tags

    def predict(self, X: Any) -> np.ndarray:
        out = super().predict(X)
        return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out


__all__ = ["DEFAULT_TRAINERS", "MultiModalClassifier", "MultiModalRegressor"]
