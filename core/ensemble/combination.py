"""How the experts available to a sample are combined: calibration and three combination rules.

An *expert* is one modality subset's learners (their outputs averaged); each has out-of-fold
outputs on the training rows from cross-fitting (`modalbag.engine.portfolio`), so every rule below is
fitted on predictions of rows the expert did not train on. For classification, each expert is first
calibrated by temperature scaling (one parameter, fitted on its out-of-fold rows), then per
availability pattern one of three rules is chosen by cross-validated log loss over those rows:

- ``mean``: a weighted mean of the experts' probabilities, weights from greedy ensemble selection
  with replacement (Caruana et al., 2004). Robust when experts see the same evidence.
- ``product``: a weighted product of experts, ``softmax(sum_e w_e log p_e + b)``, with ``w >= 0`` and a
  per-class bias ``b`` fitted by L-BFGS. Independent views multiply their evidence (the product rule
  of classifier combination, Kittler et al., 1998); the weights shrink redundant or weak experts and
  ``b`` corrects the prior counted once per expert.
- ``stacking``: multinomial logistic regression on the experts' concatenated log-probabilities,
  L2-regularised; tried only with at least `STACKING_ROWS_PER_FEATURE` rows per feature.

Regression and multilabel use ``mean`` (with squared error or binary log loss as the loss).

**One combination for many patterns.** Fitting a rule per pattern costs tens of milliseconds, and
with many modalities missing at random a prediction call meets thousands of patterns. `fit_shared`
fits one weighted product over *all* experts, trained with expert dropout: its rows are the
experts' out-of-fold rows repeated with modalities dropped at random (each kept with probability
1/2), a dropped or evidence-less expert standing in with the class prior's log-probabilities (what
an expert that sees nothing should say). A pattern's combination is then that product restricted
to its experts (`Combination.restricted`): the missing experts' constant terms fold into the bias,
so it is exactly the shared model with the prior in their place, derived in microseconds. For
regression and multilabel the shared combination is a mean with weights inversely proportional to
each expert's own loss, renormalised over the experts a pattern has.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.training.logistic_path import fit_path

RULES = ("mean", "product", "stacking")
#: The stacker is solved by Newton's method (`modalbag.training.logistic_path`) up to this many parameters
#: ((experts x classes + 1) x classes), by scikit-learn's L-BFGS beyond, where the Hessian grows too large.
STACKING_NEWTON_MAX_PARAMETERS = 600
#: Copies of the evidence rows, each with modalities dropped at random, that `fit_shared` trains on.
SHARED_REPLICAS = 3
STACKING_ROWS_PER_FEATURE = 4
STACKING_MIN_ROWS = 100
_EPS = 1e-6
_ROUNDS = 40


def task_loss(task_type: str, y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-row loss: log loss, binary log loss averaged over labels, or squared error."""
    if task_type == "classification":
        return -np.log(np.clip(out[np.arange(len(y)), y], 1e-7, 1.0))
    if task_type == "multilabel":
        p = np.clip(out, 1e-7, 1 - 1e-7)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
    return ((out - y.reshape(len(y), -1)) ** 2).mean(axis=1)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def log_probabilities(p: np.ndarray) -> np.ndarray:
    """Log of probabilities clipped away from 0 (an expert's hard zero must not veto a class)."""
    return np.log(np.clip(p, _EPS, 1.0))


def fit_temperature(p: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the log loss of ``softmax(log p / T)`` on (p, y), in [0.05, 20]."""
    from scipy.optimize import minimize_scalar

    logp = log_probabilities(p)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-_log_softmax(logp / np.exp(log_t))[rows, y].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(found.x)) if nll(found.x) < nll(0.0) else 1.0


def calibrated_log_probabilities(p: np.ndarray, temperature: float) -> np.ndarray:
    return _log_softmax(log_probabilities(p) / temperature)


# -- the rules ------------------------------------------------------------------------------------


def mean_losses(task_type: str, y: np.ndarray, out: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """`task_loss` averaged over rows, for a stack of outputs (..., n, k) at once; for classification
    ``out`` is the true class's probabilities alone (..., n), see `true_class`. ``sample_weight`` (n,):
    a weighted mean over rows (the importance weights of ``domain_adaptation``)."""
    if task_type == "classification":
        per_row = -np.log(np.clip(out, 1e-7, 1.0))
    elif task_type == "multilabel":
        p = np.clip(out, 1e-7, 1 - 1e-7)
        per_row = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=-1)
    else:
        per_row = ((out - y.reshape(len(y), -1)) ** 2).mean(axis=-1)
    return weighted_mean(per_row, sample_weight)


def weighted_mean(per_row: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """The mean over the last axis (rows), weighted by ``sample_weight`` when given."""
    if sample_weight is None:
        return per_row.mean(axis=-1)
    return per_row @ sample_weight / sample_weight.sum()


def true_class(out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The probability each row gives its true class, for a stack of outputs (..., n, k) -> (..., n):
    all a log loss reads, so greedy selection scores every candidate on (E, n) instead of (E, n, k)."""
    return np.take_along_axis(out, np.broadcast_to(y[:, None], out.shape[:-1] + (1,)), axis=-1)[..., 0]


def error_correlation(values: np.ndarray, y: np.ndarray, task_type: str) -> np.ndarray:
    """(E, E) correlation of the experts' per-row errors (1 - the true class's probability for
    classification, else the squared error); 0 where an expert's error does not vary."""
    errors = 1.0 - values if task_type == "classification" else ((values - y.reshape(len(y), -1)) ** 2).mean(axis=-1)
    centred = errors - errors.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred ** 2).sum(axis=1))
    safe = np.where(norms > 0, norms, 1.0)
    corr = (centred @ centred.T) / np.outer(safe, safe)
    corr[norms == 0] = 0.0
    corr[:, norms == 0] = 0.0
    return corr


def diversity_penalty(corr: np.ndarray | None, diversity: float) -> Callable[[np.ndarray], np.ndarray]:
    """The diversity term of a selection, as a function of its counts (..., E): ``diversity`` times
    the mean error correlation ``corr`` (E, E) over every pair of its slots (two slots of one expert
    correlate fully; a single slot scores 1). Zero without ``corr``."""
    if corr is not None:
        corr = corr.copy()
        np.fill_diagonal(corr, 1.0)

    def penalty(counts: np.ndarray) -> np.ndarray:
        if corr is None:
            return np.zeros(counts.shape[:-1])
        pairs = np.einsum("...a,ab,...b->...", counts, corr, counts) - counts.sum(axis=-1)
        total = counts.sum(axis=-1) ** 2 - counts.sum(axis=-1)
        return diversity * np.where(total > 0, pairs / np.where(total > 0, total, 1.0), 1.0)

    return penalty


def greedy_weights(outputs: np.ndarray, y: np.ndarray, task_type: str, rounds: int = _ROUNDS,
                   diversity: float = 0.0, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Greedy ensemble selection with replacement over experts (E, n, k); weights sum to 1.

    Starts from the best single expert and keeps the best-scoring selection seen, so on these rows
    it never scores worse than that expert (without a diversity term). Every round scores all experts
    in one vectorised step. With ``diversity`` > 0 (``ensemble_diversity_weight``) a selection's score is its loss plus
    ``diversity`` times the mean correlation of the out-of-fold errors over every pair of its slots
    (an expert chosen twice fills two slots whose errors correlate fully, so a single expert scores
    the full ``diversity``): experts that err on the same rows are penalised, and one that errs
    elsewhere can win a place at a slightly higher loss.
    """
    n_experts = len(outputs)
    values = true_class(outputs, y) if task_type == "classification" else outputs
    penalty = diversity_penalty(error_correlation(values, y, task_type) if diversity else None, diversity)
    single = mean_losses(task_type, y, values, sample_weight)
    first = int(np.argmin(single))
    counts = np.zeros(n_experts)
    counts[first] = 1
    total = values[first].copy()
    best_loss, best_counts = float(single[first] + penalty(counts)), counts.copy()
    for _ in range(rounds - 1):
        trials = counts[None, :] + np.eye(n_experts)
        trial = mean_losses(task_type, y, (total[None] + values) / (counts.sum() + 1), sample_weight) + penalty(trials)
        pick = int(np.argmin(trial))
        counts[pick] += 1
        total += values[pick]
        if trial[pick] < best_loss - 1e-12:
            best_loss, best_counts = float(trial[pick]), counts.copy()
    return best_counts / best_counts.sum()


def pairwise_disagreement(outputs: np.ndarray) -> np.ndarray:
    """(E, E) share of rows on which two experts' predicted classes differ (outputs (E, n, k))."""
    labels = outputs.argmax(axis=-1)
    return (labels[:, None, :] != labels[None, :, :]).mean(axis=-1)


def fit_product(logp: np.ndarray, y: np.ndarray, l2: float = 1e-3,
                sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``w >= 0`` (E,) and bias ``b`` (C,) of ``softmax(sum_e w_e logp_e + b)`` by L-BFGS-B on
    the mean log loss (weighted by ``sample_weight``) plus ``l2 * |w|^2``; ``logp`` is (n, E, C).
    Starts from the plain product."""
    from scipy.optimize import minimize

    n, n_experts, n_classes = logp.shape
    onehot = np.eye(n_classes)[y]
    row = np.ones((n, 1)) if sample_weight is None else (sample_weight / sample_weight.mean())[:, None]
    by_expert = np.ascontiguousarray(logp.transpose(1, 0, 2)).reshape(n_experts, n * n_classes)  # once, not per step

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:n_experts], theta[n_experts:]
        z = (w @ by_expert).reshape(n, n_classes) + b
        log_q = _log_softmax(z)
        loss = float(-(row * log_q * onehot).sum() / n + l2 * (w @ w))
        g = row * (np.exp(log_q) - onehot) / n  # dL/dz
        grad_w = by_expert @ g.ravel() + 2 * l2 * w
        return loss, np.concatenate([grad_w, g.sum(axis=0)])

    start = np.concatenate([np.ones(n_experts), np.zeros(n_classes)])
    bounds = [(0.0, None)] * n_experts + [(None, None)] * n_classes
    found = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 200})
    return found.x[:n_experts].copy(), found.x[n_experts:].copy()


def fit_stacking(logp: np.ndarray, y: np.ndarray, n_classes: int, seed: int,
                 sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (C, E*C) and intercepts (C,) of an L2 logistic regression on the flattened log-probs."""
    from sklearn.linear_model import LogisticRegression

    x = logp.reshape(len(logp), -1)
    present = np.unique(y)
    coef, intercept = np.zeros((n_classes, x.shape[1])), np.full(n_classes, -30.0)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    parameters = (x.shape[1] + 1) * (1 if len(present) == 2 else len(present))
    if parameters <= STACKING_NEWTON_MAX_PARAMETERS:
        # Newton's method on the same objective: log-probability features span tens of units, which
        # leaves L-BFGS hundreds of iterations (1.4 s for 7 experts x 5 classes on 400 rows; here ms)
        params = fit_path(x, np.searchsorted(present, y), sample_weight, np.array([1.0]))[-1]
        model_coef, model_intercept = params[:-1].T, params[-1]
    else:
        with warnings.catch_warnings():  # an unconverged last digit of a stacker is no news for the user
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(x, y, sample_weight=sample_weight)
        model_coef, model_intercept = model.coef_, model.intercept_
    if len(present) == 2:  # one logit: class 1 against class 0
        coef[present[1]], intercept[present[1]] = model_coef[0], model_intercept[0]
        intercept[present[0]] = 0.0
    else:
        coef[present], intercept[present] = model_coef, model_intercept
    return coef, intercept


@attrs.frozen
class Combination:
    """One availability pattern's rule and fitted parameters, over its experts in a fixed order."""

    experts: tuple[str, ...]
    rule: str
    weights: np.ndarray = attrs.field(eq=False)  # mean: (E,) summing to 1; product: (E,) >= 0
    bias: np.ndarray = attrs.field(eq=False, factory=lambda: np.empty(0))  # product (C,)
    stack_coef: np.ndarray = attrs.field(eq=False, factory=lambda: np.empty((0, 0)))  # stacking (C, E*C)
    stack_intercept: np.ndarray = attrs.field(eq=False, factory=lambda: np.empty(0))
    temperatures: np.ndarray = attrs.field(eq=False, factory=lambda: np.empty(0))  # classification (E,)
    cv_loss: Mapping[str, float] = attrs.field(factory=dict)  # each rule tried: cross-validated loss
    n_rows: int = 0
    #: True for `fit_shared`'s combination over every expert and the patterns restricted from it.
    shared: bool = False
    #: The calibrated log-probabilities a missing expert stands in with (shared products: the prior's).
    fill: np.ndarray = attrs.field(eq=False, factory=lambda: np.empty(0))

    def restricted(self, experts: Sequence[str]) -> Combination:
        """This shared combination over ``experts`` only: a product with the others' terms
        (``weight * fill``) folded into the bias; a mean with the weights renormalised."""
        index = [self.experts.index(e) for e in experts]
        weights = self.weights[index]
        temperatures = self.temperatures[index] if len(self.temperatures) else self.temperatures
        if self.rule == "product":
            missing = np.setdiff1d(np.arange(len(self.experts)), index)
            bias = self.bias + self.weights[missing].sum() * self.fill
            return Combination(tuple(experts), "product", weights, bias, temperatures=temperatures,
                               n_rows=self.n_rows, shared=True, fill=self.fill)
        total = weights.sum()
        weights = weights / total if total > 0 else np.full(len(index), 1.0 / len(index))
        return Combination(tuple(experts), "mean", weights, temperatures=temperatures, n_rows=self.n_rows,
                           shared=True)

    def predict(self, outputs: np.ndarray, task_type: str) -> np.ndarray:
        """Combine the experts' outputs (E, n, k), in ``experts`` order."""
        if self.rule == "mean" or task_type != "classification":
            if task_type == "classification" and len(self.temperatures):
                outputs = np.exp(np.stack([calibrated_log_probabilities(o, t)
                                           for o, t in zip(outputs, self.temperatures, strict=True)]))
            return np.tensordot(self.weights, outputs, axes=1)
        logp = np.stack([calibrated_log_probabilities(o, t) for o, t in zip(outputs, self.temperatures, strict=True)],
                        axis=1)  # (n, E, C)
        if self.rule == "product":
            z = np.tensordot(logp, self.weights, axes=([1], [0])) + self.bias
        else:
            z = logp.reshape(len(logp), -1) @ self.stack_coef.T + self.stack_intercept
        return np.exp(_log_softmax(z))

    def to_dict(self) -> dict[str, Any]:
        return {"experts": list(self.experts), "rule": self.rule, "weights": self.weights.tolist(),
                "bias": self.bias.tolist(), "stack_coef": self.stack_coef.tolist(),
                "stack_intercept": self.stack_intercept.tolist(), "temperatures": self.temperatures.tolist(),
                "cv_loss": dict(self.cv_loss), "n_rows": self.n_rows, "shared": self.shared,
                "fill": self.fill.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Combination:
        def arr(key: str, ndim: int = 1) -> np.ndarray:
            value = np.asarray(data.get(key, []), dtype=np.float64)
            return value.reshape((0,) * ndim) if value.size == 0 else value

        return cls(tuple(data["experts"]), str(data["rule"]), arr("weights"), arr("bias"), arr("stack_coef", 2),
                   arr("stack_intercept"), arr("temperatures"),
                   {str(k): float(v) for k, v in (data.get("cv_loss") or {}).items()}, int(data.get("n_rows", 0)),
                   bool(data.get("shared", False)), arr("fill"))


def fit_shared(experts: Sequence[str], outputs: np.ndarray, evidence: np.ndarray, y: np.ndarray, task_type: str,
               temperatures: np.ndarray, prior: np.ndarray, modalities: Sequence[Sequence[str]], seed: int,
               replicas: int = SHARED_REPLICAS, sample_weight: np.ndarray | None = None) -> Combination:
    """One combination over all ``experts`` that any subset of them can use (module docstring).

    ``outputs`` (E, n, k) holds each expert's out-of-fold outputs on the rows ``y``, valid where
    ``evidence`` (E, n) is True; ``modalities[e]`` are expert e's modalities, dropped together.
    ``sample_weight`` (n,): each row's weight in the fit (``domain_adaptation``'s importance weights).
    """
    n_experts, n = evidence.shape
    if task_type != "classification":
        losses = np.array([float(weighted_mean(task_loss(task_type, y[evidence[e]], outputs[e][evidence[e]]),
                                               None if sample_weight is None else sample_weight[evidence[e]]))
                           if evidence[e].any() else np.inf for e in range(n_experts)])
        weights = np.where(np.isfinite(losses), 1.0 / np.maximum(losses, 1e-12), 0.0)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(n_experts, 1.0 / n_experts)
        return Combination(tuple(experts), "mean", weights, cv_loss={}, n_rows=int(n), shared=True)
    fill = log_probabilities(prior)
    logp = np.stack([calibrated_log_probabilities(o, t) for o, t in zip(outputs, temperatures, strict=True)], axis=1)
    names = sorted({m for ms in modalities for m in ms})
    member = np.array([[m in ms for m in names] for ms in modalities])  # (E, M)
    rng = np.random.default_rng(seed)
    blocks, targets, weights = [], [], []
    for r in range(replicas + 1):
        keep = np.ones((n, len(names)), dtype=bool) if r == 0 else rng.random((n, len(names))) < 0.5
        sees = evidence.T & ~(member[None, :, :] & ~keep[:, None, :]).any(axis=2)  # (n, E)
        rows = sees.any(axis=1)  # a row no expert sees teaches nothing
        blocks.append(np.where(sees[rows][:, :, None], logp[rows], fill))
        targets.append(y[rows])
        weights.append(np.ones(int(rows.sum())) if sample_weight is None else sample_weight[rows])
    w, b = fit_product(np.concatenate(blocks), np.concatenate(targets),
                       sample_weight=None if sample_weight is None else np.concatenate(weights))
    return Combination(tuple(experts), "product", w, b, temperatures=np.asarray(temperatures, dtype=np.float64),
                       cv_loss={}, n_rows=int(n), shared=True, fill=fill)


def _fit_rule(rule: str, outputs: np.ndarray, logp: np.ndarray | None, y: np.ndarray, task_type: str,
              n_classes: int, seed: int, diversity: float = 0.0,
              sample_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    if rule == "mean":
        probs = np.exp(logp).transpose(1, 0, 2) if logp is not None else outputs
        return {"weights": greedy_weights(probs, y, task_type, diversity=diversity, sample_weight=sample_weight)}
    if rule == "product":
        w, b = fit_product(logp, y, sample_weight=sample_weight)
        return {"weights": w, "bias": b}
    coef, intercept = fit_stacking(logp, y, n_classes, seed, sample_weight)
    return {"weights": np.empty(0), "stack_coef": coef, "stack_intercept": intercept}


def _folds(y: np.ndarray, task_type: str, seed: int, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if task_type == "classification":
        counts = np.bincount(y)
        smallest = counts[counts > 0].min()
        if smallest >= 2:
            splitter = StratifiedKFold(min(k, int(smallest)), shuffle=True, random_state=seed % 2**32)
            return list(splitter.split(np.zeros(len(y)), y))
    return list(KFold(min(k, len(y)), shuffle=True, random_state=seed % 2**32).split(np.zeros(len(y))))


def choose_combination(experts: Sequence[str], outputs: np.ndarray, y: np.ndarray, task_type: str,
                       temperatures: np.ndarray | None = None, seed: int = 0,
                       rules: Sequence[str] = RULES, diversity: float = 0.0,
                       sample_weight: np.ndarray | None = None) -> Combination:
    """Pick and fit the rule for one pattern from its experts' out-of-fold outputs (E, n, k) on rows y.

    Each candidate rule is scored by 5-fold cross-validated loss on these rows (the rule's own
    parameters are fitted on the other folds) and the best is refitted on all of them. ``diversity``
    (``ensemble_diversity_weight``) adds the error-correlation term to the mean rule's selection.
    ``sample_weight`` (n,) weighs the rows in every fit and score (``domain_adaptation``'s importance
    weights: the rows that look like the target domain count more).
    """
    n_experts, n = outputs.shape[:2]
    classification = task_type == "classification"
    if not classification:
        rules = ("mean",)
    n_classes = outputs.shape[2]
    if temperatures is None:
        temperatures = np.ones(n_experts)
    logp = (np.stack([calibrated_log_probabilities(o, t) for o, t in zip(outputs, temperatures, strict=True)], axis=1)
            if classification else None)
    candidates = [r for r in rules if r != "stacking"
                  or n >= max(STACKING_MIN_ROWS, STACKING_ROWS_PER_FEATURE * n_experts * n_classes)]
    if n_experts == 1 or n < 10:
        candidates = ["mean"]
    scores: dict[str, float] = {}
    if len(candidates) > 1:
        folds = _folds(y, task_type, seed)
        for rule in candidates:
            losses = np.empty(n)
            for train, test in folds:
                params = _fit_rule(rule, outputs[:, train], None if logp is None else logp[train], y[train],
                                   task_type, n_classes, seed, diversity,
                                   None if sample_weight is None else sample_weight[train])
                fold = Combination(tuple(experts), rule, temperatures=np.asarray(temperatures),
                                   **{"bias": np.empty(0), **params})
                losses[test] = task_loss(task_type, y[test], fold.predict(outputs[:, test], task_type))
            scores[rule] = float(weighted_mean(losses, sample_weight))
        chosen = min(candidates, key=lambda r: (scores[r], candidates.index(r)))
    else:
        chosen = candidates[0]
    params = _fit_rule(chosen, outputs, logp, y, task_type, n_classes, seed, diversity, sample_weight)
    return Combination(tuple(experts), chosen, temperatures=np.asarray(temperatures, dtype=np.float64)
                       if classification else np.empty(0), cv_loss=scores, n_rows=int(n),
                       **{"bias": np.empty(0), **params})


__all__ = ["RULES", "Combination", "calibrated_log_probabilities", "choose_combination", "fit_product", "fit_shared",
           "diversity_penalty", "error_correlation", "fit_stacking", "fit_temperature", "greedy_weights", "log_probabilities",
           "pairwise_disagreement", "task_loss", "weighted_mean"]
