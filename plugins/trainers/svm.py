"""The ``svm`` trainer: an RBF-kernel support vector machine with calibrated probabilities (scikit-learn).

Inputs are designed as ``sklearn_linear`` designs them: each column standardised with the training
rows' mean and standard deviation, a missing modality's columns imputed with that mean (0 after
standardising), and one presence column per modality in a bag of several. The kernel is
``k(x, s) = exp(-gamma * ||x - s||^2)``; ``gamma='scale'`` means ``1 / (n_columns * var(z))`` over the
whole design matrix ``z`` (scikit-learn's rule), resolved once per fit so every fold uses the same value.

**Classification.** ``SVC`` (libsvm, one-vs-one for several classes) gives pairwise decision values
``d_ij(x)`` (positive for class ``i``). Each class's score is the sum of its pairwise decisions,
``S_i = sum_j d_ij`` (for two classes ``S = (-d, d)``), and the probabilities are a softmax with one
temperature and a bias per class, fitted on *held-out* scores:

    p(c | x) = softmax_c(a * S(x) + b),   b_0 = 0,   a >= 0

For two classes this is exactly Platt scaling, ``p(1 | x) = sigmoid(2a * d(x) + b_1)``. The
held-out scores come from an internal stratified k-fold over the training rows (``k = min(5, rows of
the rarest class)``, identical rows kept on one side: `modalbag.plugins.trainers._classical`), each
fold's SVC scoring the rows it did not see; ``(a, b)`` minimise the (sample-weighted) log loss
against Platt's smoothed targets (the true class ``(N_c + 1) / (N_c + 2)``, the rest spread over
the other classes), so a separable training set cannot drive the temperature to zero and no
probability reaches exactly 0 or 1. The final SVC is fitted on all training rows. A class with a
single distinct row leaves no folds: then ``a = 1, b = 0`` and the learner's ``calibration`` says so.

**Cross-fit calibration.** When the portfolio measures the SVM by k-fold cross-fitting
(`modalbag.engine.portfolio`), each fold model already has held-out rows: the ones its siblings
were trained on are its own held-out fold. So the fold models are fitted with
``calibration='cross_fit'`` (one SVC each, no calibration folds) and calibrated *together*, ``(a, b)``
fitted once on all k folds' out-of-fold scores: a sixth of the SVC fits, and a calibration fitted on
every row instead of a fold's share. The ``(a, b)`` are recorded in the fold learners' architecture,
so refitting one (a resumed run) gives the same model.

Why not ``CalibratedClassifierCV(method='sigmoid')``: it calibrates each class one-vs-rest and
renormalises, which is not a distribution the fit saw, and it keeps its parameters in private
classes; the joint temperature-and-bias fit above is a proper multinomial calibration whose two
arrays are all prediction needs.

**Multilabel**: one calibrated binary SVC per label (a label constant in the bag's rows is predicted
as that constant). **Regression**: one ``SVR`` per target, on targets standardised with the training
rows' mean and standard deviation (so ``svm_epsilon`` is in standard deviations), mapped back.
``class_weights`` become sample weights.

Saving stores arrays only (``model.npz``, no pickle): the standardisation, ``gamma``, each machine's
support vectors, dual coefficients, intercepts and support counts, the calibration ``a`` and ``b``,
the regression target scaling. Prediction is numpy on those arrays (the kernel expanded as libsvm
expands it), equal to libsvm's decision values to rounding. Importance: permutation by modality
(see ``_classical``). One `EpochRecord` holds the training and validation losses.

Options: ``svm_c``, ``svm_gamma``, ``svm_epsilon``. Search space for ``hpo_trials``: ``C`` from 0.01
to 1000 and ``gamma`` from 1e-4 to 1 (both log).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, positive
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._classical import (
    ArraysFile,
    PermutationImportance,
    fit_threads,
    inner_folds,
    limited_threads,
    rbf_kernel,
)
from modalbag.plugins.trainers._tabular import (
    FloatRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    tabular_score,
)
from modalbag.plugins.trainers.sklearn_linear import design_matrix, standardization

#: Folds of the internal cross-validation the calibration is fitted on (fewer when a class is rarer).
CALIBRATION_FOLDS = 5
#: The learner's calibration note while it waits for the cross-fit's, and once it has it.
DEFERRED = "deferred to the cross-fit: no calibration folds (a = 1, b = 0 until its fold siblings are scored)"
CROSS_FITTED = ("softmax(a * S + b) fitted on the out-of-fold decision values of its cross-fit's fold models "
                "(modalbag.engine.portfolio)")


def _gamma(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    ok = value == "scale" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)
    if not ok:
        raise ValueError(f"{attribute.name} must be 'scale' or a number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class SVMOptions(TabularOptions):
    svm_c: float = attrs.field(default=1.0, validator=positive, metadata={
        "help": "SVM penalty C: larger fits the training rows more closely (less regularisation)."})
    svm_gamma: str | float = attrs.field(default="scale", validator=_gamma, metadata={
        "help": "RBF kernel width gamma in exp(-gamma * ||x - s||^2): 'scale' (1 / (columns * variance of "
                "the standardised design)) or a number > 0."})
    svm_epsilon: float = attrs.field(default=0.1, validator=non_negative, metadata={
        "help": "Regression only: SVR's epsilon-insensitive margin, in standard deviations of the target."})


@attrs.frozen
class Machine:
    """One fitted libsvm machine: support vectors, dual coefficients, intercepts, support counts."""

    support: np.ndarray  # (n_sv, d)
    dual: np.ndarray  # (n_classes - 1, n_sv) for SVC, (1, n_sv) for SVR
    intercept: np.ndarray  # (n_pairs,) for SVC, (1,) for SVR
    n_support: np.ndarray  # support vectors per class, in class order (SVC); (0,) for SVR

    @classmethod
    def from_estimator(cls, est: Any, regression: bool = False) -> Machine:
        n_support = np.empty(0, dtype=np.int64) if regression else np.asarray(est.n_support_, dtype=np.int64)
        return cls(np.asarray(est.support_vectors_, dtype=np.float64), np.atleast_2d(est.dual_coef_).astype(np.float64),
                   np.atleast_1d(est.intercept_).astype(np.float64), n_support)

    def decision(self, z: np.ndarray, gamma: float) -> np.ndarray:
        """Regression and two-class SVC: ``sum_s dual_s k(x, s) + intercept`` (n,)."""
        return rbf_kernel(z, self.support, gamma) @ self.dual[0] + self.intercept[0]

    def scores(self, z: np.ndarray, gamma: float) -> np.ndarray:
        """Each class's summed one-vs-one decision values ``S`` (n, n_classes)."""
        n_classes = len(self.n_support)
        if n_classes == 2:
            d = self.decision(z, gamma)
            return np.column_stack([-d, d])
        kernel = rbf_kernel(z, self.support, gamma)
        bounds = np.concatenate([[0], np.cumsum(self.n_support)])
        out = np.zeros((len(z), n_classes))
        pair = 0
        for i in range(n_classes):
            si = slice(bounds[i], bounds[i + 1])
            for j in range(i + 1, n_classes):
                sj = slice(bounds[j], bounds[j + 1])
                d = kernel[:, si] @ self.dual[j - 1, si] + kernel[:, sj] @ self.dual[i, sj] + self.intercept[pair]
                out[:, i] += d
                out[:, j] -= d
                pair += 1
        return out


def fit_cost(profile: BagProfile) -> float:
    """Estimated seconds of one fit as the portfolio's cross-fit runs it, on one core (see
    `LearnerProposal.cost`): a single SVC, its calibration deferred to the cross-fit, quadratic in the
    rows (one-vs-one machines grow with the classes); fitted to fits of 100-4000 rows, 4-64 columns,
    2-10 classes (within 2x). A fit that calibrates itself costs `CALIBRATION_FOLDS` more of them."""
    n, d = profile.n_rows, profile.n_features
    classes = profile.num_classes if profile.task_type == "classification" else 2
    return 1.5e-3 + 6.5e-11 * n * n * (d + 10) * (1 + max(classes - 2, 0) / 2)


@attrs.frozen
class SVMModel:
    """Everything prediction needs; ``kind`` is ``constant``, ``classification``, ``multilabel`` or
    ``regression``. ``outputs``: the class of each score column (classification) or the output column
    of each machine (multilabel, regression); ``fixed``: the output where no machine feeds."""

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    presence: np.ndarray
    gamma: float
    machines: tuple[Machine, ...]
    outputs: np.ndarray
    fixed: np.ndarray
    temperature: np.ndarray  # (machines,) calibration slope a
    bias: np.ndarray  # (machines, classes) calibration bias b (b[:, 0] = 0)
    y_mean: np.ndarray  # (machines,) regression target scaling
    y_scale: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.tile(self.fixed, (len(x), 1))
        if self.kind == "constant":
            return out
        z = design_matrix(x, self.mean, self.scale, self.presence)
        if self.kind == "regression":
            for m, machine in enumerate(self.machines):
                out[:, self.outputs[m]] = self.y_mean[m] + self.y_scale[m] * machine.decision(z, self.gamma)
            return out
        for m, machine in enumerate(self.machines):
            p = _softmax(self.temperature[m] * machine.scores(z, self.gamma) + self.bias[m, : len(machine.n_support)])
            if self.kind == "classification":
                out[:, self.outputs] = p
            else:
                out[:, self.outputs[m]] = p[:, 1]
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"kind": np.array(self.kind), "mean": self.mean, "scale": self.scale, "presence": self.presence,
               "gamma": np.array(self.gamma), "outputs": self.outputs, "fixed": self.fixed,
               "temperature": self.temperature, "bias": self.bias, "y_mean": self.y_mean, "y_scale": self.y_scale}
        for m, machine in enumerate(self.machines):
            out |= {f"{f.name}_{m}": getattr(machine, f.name) for f in attrs.fields(Machine)}
        return out

    @classmethod
    def from_arrays(cls, saved: Any) -> SVMModel:
        n_machines = sum(1 for name in saved.files if name.startswith("support_"))
        machines = tuple(Machine(*(saved[f"{f.name}_{m}"] for f in attrs.fields(Machine))) for m in range(n_machines))
        return cls(str(saved["kind"]), saved["mean"], saved["scale"], saved["presence"], float(saved["gamma"]),
                   machines, saved["outputs"], saved["fixed"], saved["temperature"], saved["bias"],
                   saved["y_mean"], saved["y_scale"])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def platt_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Platt's smoothed targets: the true class ``(N_c + 1) / (N_c + 2)``, the rest shared by the others."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    hit = (counts + 1.0) / (counts + 2.0)
    targets = np.tile(((1.0 - hit) / (n_classes - 1))[labels][:, None], (1, n_classes))
    targets[np.arange(len(labels)), labels] = hit[labels]
    return targets


def fit_calibration(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> tuple[float, np.ndarray]:
    """``(a, b)`` minimising the weighted log loss of ``softmax(a * scores + b)`` (``b_0 = 0``, ``a >= 0``)
    against `platt_targets`; L-BFGS-B from ``a = 1 / std(scores)``, ``b = 0``."""
    from scipy.optimize import minimize

    n, k = scores.shape
    targets = platt_targets(labels, k)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[0], np.concatenate([[0.0], theta[1:]])
        logits = a * scores + b
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        residual = (np.exp(log_p) - targets) * w[:, None]
        grad = np.concatenate([[np.sum(residual * scores)], residual.sum(axis=0)[1:]])
        return float(-np.sum(w[:, None] * targets * log_p)), grad

    spread = float(np.std(scores))
    start = np.concatenate([[1.0 / spread if spread > 1e-12 else 1.0], np.zeros(k - 1)])
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] + [(None, None)] * (k - 1))
    return float(result.x[0]), np.concatenate([[0.0], result.x[1:]])


def resolve_gamma(gamma: str | float, z: np.ndarray) -> float:
    """``'scale'``: ``1 / (n_columns * var(z))`` (1 when ``z`` is constant), else ``gamma`` itself."""
    if gamma != "scale":
        return float(gamma)
    variance = float(z.var())
    return 1.0 / (z.shape[1] * variance) if variance > 0 else 1.0


class SVMLearner(PermutationImportance, ArraysFile, TabularLearner):
    """One bag's support vector machine; see the module docstring."""

    trainer = "svm"
    library = "sklearn"
    extra = None  # scikit-learn is a dependency of modalbag itself
    MODEL_CLASS = SVMModel
    #: May leave its calibration to the portfolio's cross-fit (architecture ``calibration='cross_fit'``):
    #: k fold models calibrated once on their joint out-of-fold scores need no calibration folds each.
    CROSS_FIT_CALIBRATION = True
    deferred_calibration = False  # True between a deferred fit and `set_cross_fit_calibration`
    SEARCH_SPACE = {"C": FloatRange(1e-2, 1e3, log=True), "gamma": FloatRange(1e-4, 1.0, log=True)}

    @classmethod
    def options_class(cls) -> type:
        return SVMOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (0.75, 0.85, 0.85), mixed=0.8, embeddings=0.65, raw=0.25)
        model = "SVR" if profile.task_type == "regression" else "calibrated SVC"
        return LearnerProposal(score, {}, f"RBF-kernel {model} (scikit-learn)", cost=fit_cost(profile))

    def _params(self, seed: int) -> dict[str, Any]:
        o = self.options
        return {"C": o.svm_c, "gamma": o.svm_gamma, "epsilon": o.svm_epsilon, "random_state": seed}

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> SVMModel:
        with limited_threads(fit_threads(self, train.x)):
            return self._fit_svm(params, train, val, recorder)

    def fit_cross_fit_calibration(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        """The calibration ``{"a": a, "b": [...]}`` fitted on the out-of-fold ``outputs`` of this
        learner's fold siblings (fitted with ``calibration='cross_fit'``, so ``log outputs`` are the
        scores ``S`` up to a constant per row, which the softmax ignores) against ``targets``. Given
        as the architecture's ``calibration``, it makes a refit of a fold model identical."""
        classes = self.model.outputs
        scores = np.log(np.clip(outputs[:, classes], 1e-300, None))
        a, b = fit_calibration(scores, np.searchsorted(classes, targets), None)
        return {"a": a, "b": [float(v) for v in b]}

    def set_cross_fit_calibration(self, calibration: Mapping[str, Any]) -> None:
        self.model = attrs.evolve(self.model, temperature=np.array([float(calibration["a"])]),
                                  bias=np.asarray(calibration["b"], dtype=np.float64)[None, :])
        self.info["calibration"] = CROSS_FITTED
        self.deferred_calibration = False

    def _fit_svm(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
                 recorder: RoundRecorder | None) -> SVMModel:
        mean, scale, presence = standardization(train.x, self.layout)
        z = design_matrix(train.x, mean, scale, presence)
        gamma = resolve_gamma(params["gamma"], z)
        shell = SVMModel("constant", mean, scale, presence, gamma, (), np.empty(0, dtype=np.int64),
                         np.zeros(self.n_outputs), np.empty(0), np.empty((0, 0)), np.empty(0), np.empty(0))
        notes: list[str] = []
        if self.task_type == "regression":
            model = self._fit_regression(shell, z, train, params)
        elif self.task_type == "classification":  # the final fit takes the cross-fit's calibration, not a CV fold's
            given = self.spec.architecture.get("calibration") if recorder is not None else None
            model = self._fit_classification(shell, z, train, params, notes, given)
        else:
            model = self._fit_multilabel(shell, z, train, params, notes)
        if recorder is not None:
            calibration = None
            if model.kind in ("classification", "multilabel"):
                calibration = notes[0] if notes else "softmax(a * S + b) fitted on out-of-fold decision values"
            self.info = {"kind": model.kind, "gamma": gamma, "calibration": calibration,
                         "support_vectors": [len(m.support) for m in model.machines]}
            self._measure_importance(model, train, val, params["random_state"])
        return model

    def _svc(self, params: dict[str, Any], gamma: float) -> Any:
        from sklearn.svm import SVC

        return SVC(C=params["C"], kernel="rbf", gamma=gamma)

    def _calibrated(self, z: np.ndarray, labels: np.ndarray, w: np.ndarray | None, params: dict[str, Any],
                    gamma: float, notes: list[str], calibration: Any = None) -> tuple[Machine, float, np.ndarray]:
        """The SVC on every row and its calibration fitted on out-of-fold scores (``labels`` 0..K-1).
        ``calibration``: ``'cross_fit'`` defers it (``a = 1, b = 0`` until `set_cross_fit_calibration`),
        a ``{"a", "b"}`` mapping (a fold model's recorded cross-fit calibration) is used as given."""
        machine = Machine.from_estimator(self._svc(params, gamma).fit(z, labels, sample_weight=w))
        if calibration == "cross_fit":
            notes.append(DEFERRED)
            return machine, 1.0, np.zeros(len(machine.n_support))
        if isinstance(calibration, Mapping) and len(calibration.get("b", ())) == len(machine.n_support):
            notes.append(CROSS_FITTED)
            return machine, float(calibration["a"]), np.asarray(calibration["b"], dtype=np.float64)
        folds = inner_folds(z, labels, CALIBRATION_FOLDS, params["random_state"])
        if not folds:
            notes.append("none: a class has a single distinct row, so no held-out scores (a = 1, b = 0)")
            return machine, 1.0, np.zeros(len(machine.n_support))
        held_out = np.empty((len(z), len(machine.n_support)))
        for fit_rows, test_rows in folds:
            fold_w = None if w is None else w[fit_rows]
            fold = Machine.from_estimator(self._svc(params, gamma).fit(z[fit_rows], labels[fit_rows],
                                                                       sample_weight=fold_w))
            held_out[test_rows] = fold.scores(z[test_rows], gamma)
        a, b = fit_calibration(held_out, labels, w)
        return machine, a, b

    def _fit_classification(self, shell: SVMModel, z: np.ndarray, train: Matrix, params: dict[str, Any],
                            notes: list[str], calibration: Any = None) -> SVMModel:
        classes = np.unique(train.y)
        if len(classes) == 1:
            return attrs.evolve(shell, fixed=np.eye(self.n_outputs)[classes[0]])
        labels = np.searchsorted(classes, train.y)
        self.deferred_calibration = calibration == "cross_fit"
        machine, a, b = self._calibrated(z, labels, train.w, params, shell.gamma, notes, calibration)
        return attrs.evolve(shell, kind="classification", machines=(machine,), outputs=classes.astype(np.int64),
                            temperature=np.array([a]), bias=b[None, :])

    def _fit_multilabel(self, shell: SVMModel, z: np.ndarray, train: Matrix, params: dict[str, Any],
                        notes: list[str]) -> SVMModel:
        fixed = np.zeros(self.n_outputs)
        machines, outputs, temperature, bias = [], [], [], []
        for j in range(self.n_outputs):
            label = train.y[:, j].astype(np.int64)
            if np.all(label == label[0]):
                fixed[j] = label[0]
                continue
            machine, a, b = self._calibrated(z, label, None, params, shell.gamma, notes)
            machines.append(machine)
            outputs.append(j)
            temperature.append(a)
            bias.append(b)
        if not machines:
            return attrs.evolve(shell, fixed=fixed)
        return attrs.evolve(shell, kind="multilabel", machines=tuple(machines),
                            outputs=np.array(outputs, dtype=np.int64), fixed=fixed,
                            temperature=np.array(temperature), bias=np.array(bias))

    def _fit_regression(self, shell: SVMModel, z: np.ndarray, train: Matrix, params: dict[str, Any]) -> SVMModel:
        from sklearn.svm import SVR

        y = np.asarray(train.y, dtype=np.float64).reshape(len(z), -1)
        y_mean = y.mean(axis=0)
        std = y.std(axis=0)
        y_scale = np.where(std > 1e-12, std, 1.0)
        machines = tuple(
            Machine.from_estimator(SVR(C=params["C"], kernel="rbf", gamma=shell.gamma, epsilon=params["epsilon"])
                                   .fit(z, (y[:, j] - y_mean[j]) / y_scale[j]), regression=True)
            for j in range(y.shape[1]))
        return attrs.evolve(shell, kind="regression", machines=machines, outputs=np.arange(y.shape[1]),
                            y_mean=y_mean, y_scale=y_scale)

    def _predict(self, model: SVMModel, x: np.ndarray) -> np.ndarray:
        with limited_threads(self.threads):
            return model.predict(x)



@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("svm", SVMLearner, options=SVMOptions,
             summary="RBF-kernel SVM with calibrated probabilities (SVC/SVR, scikit-learn)")
