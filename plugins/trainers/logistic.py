"""The ``logistic`` trainer: logistic regression (ridge for regression) with its strength chosen by
cross-validation, with scikit-learn.

The design is ``sklearn_linear``'s (standardised columns, a missing modality imputed with the
training mean, one presence column per modality in a bag of several), and so is the saved model and
its prediction: a `LinearModel` (``model.npz``: arrays only, no pickle) that predicts the linear
algebra on the stored coefficients. What differs is the L2 strength: instead of one fixed
``linear_alpha`` the trainer tries ``logistic_cs`` values of ``C`` log-spaced over [1e-3, 1e3] and keeps
the one with the best held-out log loss over an internal stratified k-fold of the training rows
(a warm-started regularisation path per fold, scored in numpy, then refitted on every row with it). Regression does the same with
``RidgeCV`` over ``alpha = 1 / C`` scored by mean squared error (shuffled folds), multilabel with one
``LogisticRegressionCV`` per label (a label constant in the bag's rows is predicted as that constant).
The folds never split identical rows (a bag is a bootstrap; see ``_classical``) and number
``min(logistic_folds, distinct rows of the rarest class)``; with fewer than 2 possible, ``C = 1`` is
used and ``describe()`` says ``cross_validated: false``. The chosen ``C`` (or ``alpha``) per output is
in ``describe()``. ``class_weights`` become sample weights. Importance is the magnitude of each standardised feature's
coefficients, summed over classes or targets. One `EpochRecord` holds the training and validation
losses.

Options: ``logistic_cs``, ``logistic_folds``, ``max_iter``. No search space for ``hpo_trials``: the
strength is already chosen by cross-validation (a search is skipped with a note).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import integer_at_least
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._classical import fit_threads, inner_folds, limited_threads
from modalbag.training.logistic_path import fit_path, probabilities
from modalbag.plugins.trainers._tabular import Matrix, RoundRecorder, TabularOptions, tabular_score
from modalbag.plugins.trainers.sklearn_linear import LinearLearner, LinearModel

#: The strengths tried span C in [10**LOW, 10**HIGH].
LOW, HIGH = -3.0, 3.0


@attrs.frozen(kw_only=True)
class LogisticOptions(TabularOptions):
    logistic_cs: int = attrs.field(default=7, validator=integer_at_least(2), metadata={
        "help": "Regularisation strengths tried: C log-spaced over [1e-3, 1e3] (ridge: alpha = 1 / C); the "
                "best held-out loss wins."})
    logistic_folds: int = attrs.field(default=3, validator=integer_at_least(2), metadata={
        "help": "Folds of the internal cross-validation that chooses C (fewer when the rarest class has "
                "fewer distinct rows)."})
    max_iter: int = attrs.field(default=1000, validator=integer_at_least(1), metadata={
        "help": "Solver iterations at most per logistic regression fit."})


#: Up to this many parameters ((features + 1) x (classes, or 1 for two)) the exact-Hessian Newton
#: solver is used (`modalbag.training.logistic_path` in the internal folds, scikit-learn's ``newton-cholesky`` for the
#: final fit): a few steps converge, 1.5-5x faster than L-BFGS per path on such problems. Beyond, the
#: Hessian's cost (rows x parameters squared) loses to L-BFGS: 3x slower at 330 parameters (32 features,
#: 10 classes), 9x at 650 (measured on the digits data, 800 rows).
NEWTON_MAX_PARAMETERS = 150


def solver_for(x: np.ndarray, y: np.ndarray) -> str:
    """``newton-cholesky`` for small problems (the objective is strictly convex: same solution), else ``lbfgs``."""
    n_classes = len(np.unique(y))
    parameters = (x.shape[1] + 1) * (1 if n_classes <= 2 else n_classes)
    return "newton-cholesky" if parameters <= NEWTON_MAX_PARAMETERS else "lbfgs"


def row_space(x: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis ``(r, d)`` of the span of ``x``'s rows where columns outnumber rows, else None.

    An L2-penalised logistic regression's coefficients lie in that span (at the optimum they are a
    weighted sum of the rows: the penalty's gradient must cancel the loss's), and the penalty is the
    same in an orthonormal basis, so fitting on ``x @ basis.T`` (``r <= n`` columns) and mapping the
    coefficients back by ``@ basis`` is the same optimum. On 300 rows of 2,800 embedding columns
    L-BFGS then works in 300 dimensions, not 2,800.

    The basis comes from the eigenvectors of the rows' Gram matrix (``x x^T = U S^2 U^T``, basis
    ``S^-1 U^T x``): 5-10x faster than an SVD or QR of ``x``. Directions along which the rows extend
    less than `ROW_SPACE_TOL` of the largest are dropped, so the optimum is the full problem's to
    about that relative precision.
    """
    n, d = x.shape
    if d <= n:
        return None
    eigenvalues, vectors = np.linalg.eigh(x @ x.T)
    keep = eigenvalues > eigenvalues[-1] * ROW_SPACE_TOL**2 if eigenvalues[-1] > 0 else np.zeros(n, dtype=bool)
    if not keep.any():
        return None
    return (vectors[:, keep] / np.sqrt(eigenvalues[keep])).T @ x


#: `row_space` keeps the directions whose singular value is above this fraction of the largest.
ROW_SPACE_TOL = 1e-6


def held_out_log_losses(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, x_test: np.ndarray,
                        y_test: np.ndarray, grid: np.ndarray, max_iter: int) -> np.ndarray:
    """Mean held-out log loss of a logistic regression at each ``C`` of ``grid`` (ascending).

    The fits walk the grid from strong to weak regularisation, each starting from the last one's
    solution (a regularisation path), and the loss is computed here in numpy. Up to
    `NEWTON_MAX_PARAMETERS` the path is solved by `modalbag.training.logistic_path` (same objective; on two-class bags of tens of
    features 4-10x faster than scikit-learn, most of whose small fits is input validation); beyond, by
    one warm-started scikit-learn L-BFGS solver.
    """
    classes = np.unique(y)
    if len(classes) < 2:  # a constant fold predicts its one class
        return np.full(len(grid), -np.log(1e-15) * np.mean(y_test != classes[0]))
    basis = row_space(x)
    if basis is not None:
        x, x_test = x @ basis.T, x_test @ basis.T
    col = np.minimum(np.searchsorted(classes, y_test), len(classes) - 1)
    known = classes[col] == y_test  # a class the training rows lack gets probability 0
    rows = np.arange(len(y_test))

    def loss(proba: np.ndarray) -> float:
        return float(-np.log(np.clip(np.where(known, proba[rows, col], 0.0), 1e-15, 1.0)).mean())

    if solver_for(x, y) == "newton-cholesky":
        return np.array([loss(probabilities(x_test, params))
                         for params in fit_path(x, np.searchsorted(classes, y), w, grid)])
    return _sklearn_path(x, y, w, x_test, grid, max_iter, loss)


#: The L-BFGS path stops once the held-out loss has risen this many strengths in a row past its best:
#: the weakly regularised end is where fits take the most iterations (separable rows), and past the
#: optimum the loss only grows. The strengths not fitted take the last loss measured.
PATH_PATIENCE = 2


def _sklearn_path(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, x_test: np.ndarray, grid: np.ndarray,
                  max_iter: int, loss: Callable[[np.ndarray], float]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=float(grid[0]), max_iter=max_iter, warm_start=True, solver="lbfgs")
    out: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a weakly regularised fit on separable rows may not converge
        for c in grid:
            model.set_params(C=float(c))
            model.fit(x, y, sample_weight=w)
            out.append(loss(model.predict_proba(x_test)))
            best = int(np.argmin(out))
            if len(out) - 1 - best >= PATH_PATIENCE and all(a < b for a, b in zip(out[best:], out[best + 1:])):
                break
    return np.array(out + [out[-1]] * (len(grid) - len(out)))


@attrs.frozen
class PathSolution:
    """A `fit_path` solution in the shape of a fitted ``LogisticRegression`` (what `_fit_linear` reads)."""

    coef_: np.ndarray
    intercept_: np.ndarray
    classes_: np.ndarray

    @classmethod
    def of(cls, params: np.ndarray, classes: np.ndarray) -> PathSolution:
        return cls(np.ascontiguousarray(params[:-1].T), params[-1].copy(), classes)


class LogisticLearner(LinearLearner):
    """One bag's cross-validated logistic regression or ridge; see the module docstring."""

    trainer = "logistic"
    SEARCH_SPACE: dict[str, Any] = {}

    @classmethod
    def options_class(cls) -> type:
        return LogisticOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (0.95, 0.9, 0.85), mixed=0.85, embeddings=0.65, raw=0.25)
        model = "ridge, alpha" if profile.task_type == "regression" else "logistic regression, C"
        # a regularisation path per inner fold, linear in rows x columns x classes (fitted within 2x)
        cost = 0.01 + 5e-8 * profile.n_rows * profile.n_features * max(profile.num_classes, 1)
        return LearnerProposal(score, {}, f"{model} chosen by cross-validation (scikit-learn)", cost=cost)

    def _params(self, seed: int) -> dict[str, Any]:
        o = self.options
        return {"Cs": o.logistic_cs, "folds": o.logistic_folds, "max_iter": o.max_iter, "random_state": seed}

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> LinearModel:
        self._chosen: list[float | None] = []
        self._no_folds = False
        with limited_threads(fit_threads(self, train.x)):
            model = super()._train(params, train, val, recorder)
        if recorder is not None:
            key = "alpha" if self.task_type == "regression" else "C"
            self.info |= {key: self._chosen, "cross_validated": not self._no_folds}
        return model

    def _grid(self, params: dict[str, Any]) -> np.ndarray:
        return np.logspace(LOW, HIGH, int(params["Cs"]))

    def _logistic(self, z: np.ndarray, y: np.ndarray, w: np.ndarray | None, params: dict[str, Any]) -> Any:
        from sklearn.linear_model import LogisticRegression

        folds = inner_folds(z, y, int(params["folds"]), int(params["random_state"]))
        if not folds:
            self._no_folds = True
            self._chosen.append(1.0)
            return LogisticRegression(C=1.0, max_iter=params["max_iter"], solver=solver_for(z, y)).fit(
                z, y, sample_weight=w)
        grid = self._grid(params)
        losses = np.zeros(len(grid))
        for train, test in folds:
            losses += held_out_log_losses(z[train], y[train], None if w is None else w[train], z[test], y[test],
                                          grid, params["max_iter"]) * len(test)
        at = int(np.argmin(losses))
        best = float(grid[at])
        self._chosen.append(best)
        basis = row_space(z)
        reduced = z if basis is None else z @ basis.T
        if solver_for(reduced, y) == "newton-cholesky":  # the path up to ``best`` on every row: same optimum, 5x faster
            classes = np.unique(y)
            found = PathSolution.of(fit_path(reduced, np.searchsorted(classes, y), w, grid[: at + 1])[-1], classes)
        else:
            fitted = LogisticRegression(C=best, max_iter=params["max_iter"], solver=solver_for(reduced, y)).fit(
                reduced, y, sample_weight=w)
            found = PathSolution(fitted.coef_, fitted.intercept_, fitted.classes_)
        return found if basis is None else attrs.evolve(found, coef_=found.coef_ @ basis)

    def _fit_linear(self, shell: LinearModel, z: np.ndarray, train: Matrix, params: dict[str, Any]) -> LinearModel:
        from sklearn.linear_model import Ridge, RidgeCV

        if self.task_type == "regression":
            folds = inner_folds(z, None, int(params["folds"]), int(params["random_state"]))
            if folds:
                ridge = RidgeCV(alphas=1.0 / self._grid(params), cv=folds,
                                scoring="neg_mean_squared_error").fit(z, train.y)
                self._chosen.append(float(ridge.alpha_))
            else:
                self._no_folds = True
                ridge = Ridge(alpha=1.0).fit(z, train.y)
                self._chosen.append(1.0)
            return attrs.evolve(shell, link="identity", coef=np.atleast_2d(ridge.coef_),
                                intercept=np.atleast_1d(ridge.intercept_), outputs=np.arange(self.n_outputs))
        if self.task_type == "classification":
            classes = np.unique(train.y)
            if len(classes) == 1:
                return attrs.evolve(shell, fixed=np.eye(self.n_outputs)[classes[0]])
            lr = self._logistic(z, train.y, train.w, params)
            link = "binary" if len(classes) == 2 else "softmax"
            return attrs.evolve(shell, link=link, coef=lr.coef_, intercept=lr.intercept_,
                                outputs=lr.classes_.astype(np.int64))
        rows, intercepts, outputs = [], [], []
        fixed = np.zeros(self.n_outputs)
        for j in range(self.n_outputs):
            label = train.y[:, j].astype(np.int64)
            if np.all(label == label[0]):
                fixed[j] = label[0]
                self._chosen.append(None)
                continue
            lr = self._logistic(z, label, None, params)
            rows.append(lr.coef_[0])
            intercepts.append(lr.intercept_[0])
            outputs.append(j)
        if not outputs:
            return attrs.evolve(shell, fixed=fixed)
        return attrs.evolve(shell, link="sigmoid", coef=np.array(rows), intercept=np.array(intercepts),
                            outputs=np.array(outputs, dtype=np.int64), fixed=fixed)


@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("logistic", LogisticLearner, options=LogisticOptions,
             summary="Logistic regression or ridge, strength chosen by cross-validation (scikit-learn)")
