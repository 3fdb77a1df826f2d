"""A warm-started L2 logistic regularisation path in numpy, for small problems: the ``logistic``
trainer's internal folds and the ensemble's stacked combination.

The ``logistic`` trainer chooses ``C`` by an internal k-fold: every fold walks a grid of strengths,
and a measured selection cross-validates the trainer itself, so one run fits hundreds of these small
models. scikit-learn's ``LogisticRegression`` spends most of such a fit validating its inputs; this
module solves the same problem directly, for as long as its Hessian is small.

The objective is scikit-learn's (same optimum, so the ``C`` chosen here is the one its final fit uses):

    C * sum_i w_i * loss_i(B) + 0.5 * ||coefficients||^2        (the intercepts are not penalised)

with ``loss_i`` the binary log loss of ``sigmoid(x_i . b + b_0)`` for two classes (one coefficient
vector), the multinomial log loss of ``softmax(x_i B + b_0)`` for more (one vector per class). It is
minimised by Newton's method with a backtracking line search, each ``C`` starting from the previous
solution (strong to weak regularisation, where each step is a small change). The Hessian of the
multinomial loss is singular along the intercepts' common shift, which changes no probability; a
tiny ridge there makes every Newton system solvable without moving the optimum's predictions.
"""

from __future__ import annotations

import numpy as np

#: Newton iterations at most per strength; a strictly convex, smooth objective converges in far fewer.
MAX_NEWTON_STEPS = 50
#: Stop when the Newton decrement (the predicted decrease of the objective) falls below this.
DECREMENT_TOL = 1e-10


def _softmax(raw: np.ndarray) -> np.ndarray:
    raw = raw - raw.max(axis=1, keepdims=True)
    e = np.exp(raw)
    return e / e.sum(axis=1, keepdims=True)


def _binary_objective(xb: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray, c: float) -> float:
    raw = xb @ beta
    # log(1 + exp(raw)) - y * raw, computed without overflow
    loss = np.logaddexp(0.0, raw) - y * raw
    return float(c * (w @ loss) + 0.5 * beta[:-1] @ beta[:-1])


def _multinomial_objective(xb: np.ndarray, onehot: np.ndarray, w: np.ndarray, coef: np.ndarray, c: float) -> float:
    raw = xb @ coef
    top = raw.max(axis=1, keepdims=True)
    lse = (top[:, 0] + np.log(np.exp(raw - top).sum(axis=1)))
    loss = lse - (raw * onehot).sum(axis=1)
    return float(c * (w @ loss) + 0.5 * np.sum(coef[:-1] ** 2))


def _newton(objective, gradient_hessian, params: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    value = objective(params)
    for _ in range(MAX_NEWTON_STEPS):
        grad, hess = gradient_hessian(params)
        try:
            step = np.linalg.solve(hess, grad.ravel())
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess, grad.ravel(), rcond=None)[0]
        decrement = float(grad.ravel() @ step)
        if decrement / 2 <= DECREMENT_TOL * max(1.0, abs(value)):
            break
        step = step.reshape(params.shape)
        t = 1.0
        while True:  # Armijo backtracking: the full Newton step nearly always passes
            candidate = params - t * step
            new = objective(candidate)
            if new <= value - 0.25 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        params, value = candidate, new
    return params


def fit_path(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, grid: np.ndarray) -> list[np.ndarray]:
    """The solution at each ``C`` of ``grid`` (ascending), each ``(n_features + 1, n_params)`` with the
    intercept last: one column for two classes (the positive class's ``sigmoid``), one per class for
    more. ``y`` holds labels 0..K-1, every one present."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    weights = np.ones(n) if w is None else np.asarray(w, dtype=float)
    n_classes = int(y.max()) + 1
    penalty = np.ones(d + 1)
    penalty[-1] = 0.0
    out = []
    if n_classes == 2:
        target = (y == 1).astype(float)
        params = np.zeros(d + 1)
        for c in grid:
            c = float(c)

            def gradient_hessian(beta: np.ndarray, c: float = c) -> tuple[np.ndarray, np.ndarray]:
                p = 1.0 / (1.0 + np.exp(-(xb @ beta)))
                grad = c * (xb.T @ (weights * (p - target))) + penalty * beta
                hess = c * (xb.T * (weights * p * (1 - p))) @ xb + np.diag(penalty + 1e-12)
                return grad, hess

            params = _newton(lambda b, c=c: _binary_objective(xb, target, weights, b, c), gradient_hessian, params)
            out.append(params[:, None].copy())
        return out
    onehot = np.eye(n_classes)[y]
    params = np.zeros((d + 1, n_classes))
    ridge = np.repeat(penalty, n_classes)  # row-major (feature, class) order, as params.ravel()
    ridge[ridge == 0] = 1e-8  # the intercepts' common shift: see the module docstring
    for c in grid:
        c = float(c)

        def gradient_hessian(coef: np.ndarray, c: float = c) -> tuple[np.ndarray, np.ndarray]:
            p = _softmax(xb @ coef)
            grad = c * (xb.T @ (weights[:, None] * (p - onehot))) + penalty[:, None] * coef
            # H[(a,k),(b,l)] = c * sum_i w_i x_ia x_ib p_ik (delta_kl - p_il)
            outer = (xb[:, :, None] * p[:, None, :]).reshape(n, -1) * np.sqrt(weights)[:, None]
            hess = -(outer.T @ outer)
            hess = hess.reshape(d + 1, n_classes, d + 1, n_classes)
            for k in range(n_classes):
                hess[:, k, :, k] += (xb * (weights * p[:, k])[:, None]).T @ xb
            hess = c * hess.reshape((d + 1) * n_classes, -1) + np.diag(ridge)
            return grad, hess

        params = _newton(lambda b, c=c: _multinomial_objective(xb, onehot, weights, b, c), gradient_hessian, params)
        out.append(params.copy())
    return out


def probabilities(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Class probabilities (n, K) of `fit_path`'s solution ``params`` on rows ``x``."""
    raw = x @ params[:-1] + params[-1]
    if params.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.column_stack([1.0 - p, p])
    return _softmax(raw)
