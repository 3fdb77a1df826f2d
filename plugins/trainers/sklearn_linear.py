"""The ``sklearn_linear`` trainer: L2-regularised logistic regression or ridge, with scikit-learn.

Features are standardised with the training rows' mean and standard deviation; a missing modality's
columns are imputed with that mean (zero after standardising), and in a bag of several modalities
one presence column per modality (1 present, 0 missing) lets the model tell imputed from observed.
Classification fits ``LogisticRegression`` (multinomial for more than two classes, a class absent
from the bag's rows gets probability 0), multilabel one ``LogisticRegression`` per label (a label
constant in the bag's rows is predicted as that constant), regression ``Ridge`` (every target at
once). ``class_weights`` become sample weights. scikit-learn fits; prediction is the same linear
algebra on the stored arrays, so a saved model (``model.npz``: arrays only, no pickle) predicts
exactly what the fitted one did. Importance is the magnitude of each standardised feature's
coefficients, summed over classes or targets. One `EpochRecord` holds the training and validation
losses.

Options: ``linear_alpha`` (L2 strength: ridge's ``alpha``, logistic regression's ``1 / C``) and
``max_iter``. Search space for ``hpo_trials``: ``linear_alpha`` from 1e-4 to 100 (log).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least, positive
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._tabular import (
    FloatRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    tabular_score,
)


@attrs.frozen(kw_only=True)
class LinearOptions(TabularOptions):
    linear_alpha: float = attrs.field(default=1.0, validator=positive, metadata={
        "help": "L2 regularisation strength: ridge's alpha, logistic regression's 1 / C (larger: stronger)."})
    max_iter: int = attrs.field(default=1000, validator=integer_at_least(1), metadata={
        "help": "Solver iterations at most per logistic regression fit (ridge does not use it)."})


@attrs.frozen
class LinearModel:
    """Standardisation, presence columns and coefficients: everything prediction needs.

    ``link``: ``constant`` (``fixed`` is the output), ``binary`` (one logit: ``outputs[1]`` against
    ``outputs[0]``), ``softmax`` (a logit per class in ``outputs``), ``sigmoid`` (a logit per label in
    ``outputs``; the other labels take ``fixed``) or ``identity`` (regression).
    """

    link: str
    mean: np.ndarray
    scale: np.ndarray
    presence: np.ndarray  # first column of each modality block whose presence is a feature
    coef: np.ndarray
    intercept: np.ndarray
    outputs: np.ndarray  # the output column each logit feeds
    fixed: np.ndarray  # (n_outputs,) output where no logit feeds

    def design(self, x: np.ndarray) -> np.ndarray:
        return design_matrix(x, self.mean, self.scale, self.presence)

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.tile(self.fixed, (len(x), 1))
        if self.link == "constant":
            return out
        logits = self.design(x) @ self.coef.T + self.intercept
        if self.link == "identity":
            return logits
        if self.link == "binary":
            p = _sigmoid(logits[:, 0])
            out[:, self.outputs[0]], out[:, self.outputs[1]] = 1.0 - p, p
        elif self.link == "softmax":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[:, self.outputs] = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            out[:, self.outputs] = _sigmoid(logits)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in attrs.fields(type(self)) if f.name != "link"}


def standardization(x: np.ndarray, layout: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, scale, presence)`` from training rows ``x``: each column's mean and standard deviation
    over its observed (non-NaN) values (scale 1 for a constant or all-NaN column), and the first column
    of each modality block when the bag has several modalities (one presence column each)."""
    # in float64 throughout: numpy's nanstd squares the deviations in the input's dtype, and a float32
    # feature of magnitude 1e20 squares to infinity (a scale of inf would zero the feature out)
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of an absent modality
        mean = np.nan_to_num(np.nanmean(x, axis=0))
        std = np.nan_to_num(np.nanstd(x, axis=0), posinf=0.0)
    scale = np.where(std > 1e-12, std, 1.0)
    starts = np.cumsum([0] + [b.width for b in layout.blocks])[:-1]
    presence = starts if len(starts) > 1 else np.empty(0, dtype=np.int64)
    return mean, scale, presence


def design_matrix(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """``z = (x - mean) / scale`` with a missing value imputed by the mean (0 after standardising), then
    one presence column (1 observed, 0 missing) per modality block starting at each ``presence`` column."""
    z = (x.astype(np.float64) - mean) / scale
    present = [~np.isnan(x[:, start]) for start in presence]
    z = np.nan_to_num(z, nan=0.0)
    return np.column_stack([z, *present]) if present else z


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


class LinearLearner(TabularLearner):
    """One bag's linear model; see the module docstring."""

    trainer = "sklearn_linear"
    library = "sklearn"
    extra = None  # scikit-learn is a dependency of modalbag itself
    importance_type = "coefficient_magnitude"
    MODEL_FILE = "model.npz"
    SEARCH_SPACE = {"linear_alpha": FloatRange(1e-4, 100.0, log=True)}

    @classmethod
    def options_class(cls) -> type:
        return LinearOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (1.6, 1.1, 0.9), mixed=0.9, embeddings=0.7, raw=0.3)
        model = "ridge" if profile.task_type == "regression" else "logistic regression"
        return LearnerProposal(score, {}, f"{model} (scikit-learn)")

    def _params(self, seed: int) -> dict[str, Any]:
        return {"linear_alpha": self.options.linear_alpha, "max_iter": self.options.max_iter}

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> LinearModel:
        from sklearn.exceptions import ConvergenceWarning

        x = train.x
        mean, scale, presence = standardization(x, self.layout)
        shell = LinearModel("constant", mean, scale, presence, np.empty((0, 0)), np.empty(0),
                            np.empty(0, dtype=np.int64), np.zeros(self.n_outputs))
        z = shell.design(x)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = self._fit_linear(shell, z, train, params)
        if recorder is not None:
            self.info = {"link": model.link,
                         "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}
        return model

    def _fit_linear(self, shell: LinearModel, z: np.ndarray, train: Matrix, params: dict[str, Any]) -> LinearModel:
        from sklearn.linear_model import LogisticRegression, Ridge

        alpha, max_iter = params["linear_alpha"], params["max_iter"]
        if self.task_type == "regression":
            ridge = Ridge(alpha=alpha).fit(z, train.y)
            return attrs.evolve(shell, link="identity", coef=np.atleast_2d(ridge.coef_),
                                intercept=np.atleast_1d(ridge.intercept_), outputs=np.arange(self.n_outputs))
        if self.task_type == "classification":
            classes = np.unique(train.y)
            if len(classes) == 1:
                return attrs.evolve(shell, fixed=np.eye(self.n_outputs)[classes[0]])
            lr = LogisticRegression(C=1.0 / alpha, max_iter=max_iter).fit(z, train.y, sample_weight=train.w)
            link = "binary" if len(classes) == 2 else "softmax"
            return attrs.evolve(shell, link=link, coef=lr.coef_, intercept=lr.intercept_,
                                outputs=lr.classes_.astype(np.int64))
        rows, intercepts, outputs = [], [], []
        fixed = np.zeros(self.n_outputs)
        for j in range(self.n_outputs):
            label = train.y[:, j]
            if np.all(label == label[0]):
                fixed[j] = label[0]
                continue
            lr = LogisticRegression(C=1.0 / alpha, max_iter=max_iter).fit(z, label)
            rows.append(lr.coef_[0])
            intercepts.append(lr.intercept_[0])
            outputs.append(j)
        if not outputs:
            return attrs.evolve(shell, fixed=fixed)
        return attrs.evolve(shell, link="sigmoid", coef=np.array(rows), intercept=np.array(intercepts),
                            outputs=np.array(outputs, dtype=np.int64), fixed=fixed)

    def _predict(self, model: LinearModel, x: np.ndarray) -> np.ndarray:
        return model.predict(x)

    def _raw_importance(self) -> np.ndarray:
        raw = np.zeros(self.layout.n_features)
        if self.model.coef.size:
            raw += np.abs(self.model.coef[:, : self.layout.n_features]).sum(axis=0)
        return raw

    def _save_model(self, directory: Path) -> list[str]:
        np.savez(directory / self.MODEL_FILE, **self.model.arrays())
        return [self.MODEL_FILE]

    def _load_model(self, directory: Path, files: list[str]) -> LinearModel:
        with np.load(directory / files[0], allow_pickle=False) as saved:
            return LinearModel(self.info["link"], **{name: saved[name] for name in saved.files})


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("sklearn_linear", LinearLearner, options=LinearOptions,
             summary="Logistic regression or ridge with scikit-learn")
