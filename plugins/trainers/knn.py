"""The ``knn`` trainer: k-nearest neighbours on the standardised design, with smoothed probabilities.

Inputs are designed as ``sklearn_linear`` designs them: standardised with the training rows' mean and
standard deviation, a missing modality's columns imputed with that mean (0 after standardising), one
presence column per modality in a bag of several (so samples missing the same modality are nearer).
Distances are Euclidean in that design; the bag's bootstrap copies stay (a sample drawn twice counts
twice, as bagging means it to).

The ``k`` nearest training rows vote with weight ``v_i = 1 / distance`` (``knn_weights='distance'``;
a query at distance 0 from some rows takes only those) or ``v_i = 1`` (``'uniform'``), each times the
row's ``class_weights`` weight. Their vote shares ``q`` (for a label: the weighted share of neighbours
that have it; for regression the weighted mean of their targets, which is the prediction) are then
smoothed towards the prior with ``alpha = knn_pseudo_count`` pseudo-neighbours:

    p_c = (k * q_c + alpha * prior_c) / (k + alpha),   prior_c = (N_c + 1) / (N + C)

(``N_c`` training rows of class ``c`` out of ``N``, ``C`` classes; for a label ``(N_1 + 1) / (N + 2)``),
so no class is ever exactly 0: the ensemble's product of experts takes logarithms. Without smoothing
``q`` is scikit-learn's ``KNeighborsClassifier.predict_proba``.

``knn_neighbors='auto'`` takes ``round(sqrt(N))`` clipped to [3, 30]; any ``k`` is capped at ``N``.

Saving stores arrays only (``model.npz``, no pickle): the standardisation, the training design
matrix, targets and row weights, the prior, ``k`` and the weighting; prediction is the numpy above
on them (queries in chunks so the distance matrix stays small). The model is as large as the bag's
training matrix. Importance: permutation by modality (see ``_classical``). One `EpochRecord` holds
the training and validation losses.

Options: ``knn_neighbors``, ``knn_weights``, ``knn_pseudo_count``. Search space for ``hpo_trials``:
``n_neighbors`` from 1 to 50 (log) and ``weights``.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import positive
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.plugins.trainers._classical import ArraysFile, PermutationImportance, fit_threads, limited_threads
from modalbag.plugins.trainers._tabular import (
    Choice,
    IntRange,
    Matrix,
    RoundRecorder,
    TabularLearner,
    TabularOptions,
    tabular_score,
)
from modalbag.plugins.trainers.sklearn_linear import design_matrix, standardization

#: Query rows x training rows per distance block.
CHUNK_VALUES = 4_000_000


def _neighbors(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not (value == "auto" or (type(value) is int and value >= 1)):
        raise ValueError(f"{attribute.name} must be 'auto' or an integer >= 1, got {value!r}")


def auto_neighbors(n_rows: int) -> int:
    """``round(sqrt(n_rows))`` clipped to [3, 30]."""
    return int(np.clip(round(np.sqrt(n_rows)), 3, 30))


@attrs.frozen(kw_only=True)
class KNNOptions(TabularOptions):
    knn_neighbors: str | int = attrs.field(default="auto", validator=_neighbors, metadata={
        "help": "Neighbours that vote: 'auto' (round(sqrt(training rows)) clipped to [3, 30]) or an integer "
                "(capped at the training rows)."})
    knn_weights: str = attrs.field(default="distance", validator=attrs.validators.in_(("distance", "uniform")),
                                   metadata={"help": "'distance' (each neighbour votes 1 / distance) or "
                                                     "'uniform' (each votes 1)."})
    knn_pseudo_count: float = attrs.field(default=1.0, validator=positive, metadata={
        "help": "Pseudo-neighbours voting the smoothed class prior, so no probability is exactly 0: "
                "p = (k q + alpha prior) / (k + alpha)."})


@attrs.frozen
class KNNModel:
    """The training design and targets, and how neighbours vote. ``kind`` is ``classification``,
    ``multilabel`` or ``regression``; ``targets`` are class indices (n,) or a matrix (n, outputs)."""

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    presence: np.ndarray
    points: np.ndarray  # (n, d) training design
    targets: np.ndarray
    weights: np.ndarray  # (n,) row weights (class_weights), ones without
    prior: np.ndarray  # (outputs,)
    k: int
    distance: bool
    pseudo_count: float

    def votes(self, x: np.ndarray) -> np.ndarray:
        """The neighbours' weighted vote shares ``q`` (classification, multilabel) or weighted mean
        targets (regression), before smoothing."""
        z = design_matrix(x, self.mean, self.scale, self.presence)
        n_out = len(self.prior)
        out = np.empty((len(z), n_out))
        sq_points = np.einsum("ij,ij->i", self.points, self.points)
        chunk = max(1, CHUNK_VALUES // max(1, len(self.points)))
        for start in range(0, len(z), chunk):
            q = z[start:start + chunk]
            d2 = np.einsum("ij,ij->i", q, q)[:, None] + sq_points[None, :] - 2.0 * (q @ self.points.T)
            np.maximum(d2, 0.0, out=d2)
            if self.k < d2.shape[1]:
                near = np.argpartition(d2, self.k - 1, axis=1)[:, : self.k]
            else:
                near = np.broadcast_to(np.arange(d2.shape[1]), d2.shape).copy()
            dist = np.sqrt(np.take_along_axis(d2, near, axis=1))
            if self.distance:
                with np.errstate(divide="ignore"):
                    vote = 1.0 / dist
                exact = np.isinf(vote)
                rows = exact.any(axis=1)
                vote[rows] = exact[rows]  # a query on a training row takes only the rows it sits on
            else:
                vote = np.ones_like(dist)
            vote = vote * self.weights[near]
            total = vote.sum(axis=1, keepdims=True)
            if self.kind == "classification":
                cells = (np.arange(len(q))[:, None] * n_out + self.targets[near]).ravel()
                shares = np.bincount(cells, weights=vote.ravel(), minlength=len(q) * n_out).reshape(len(q), n_out)
            else:
                shares = np.einsum("nk,nko->no", vote, self.targets[near])
            with np.errstate(invalid="ignore", divide="ignore"):
                shares = shares / total
            empty = total[:, 0] <= 0  # every neighbour weighted 0: the prior (or mean target) alone
            shares[empty] = self.prior
            out[start:start + chunk] = shares
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        q = self.votes(x)
        if self.kind == "regression":
            return q
        return (self.k * q + self.pseudo_count * self.prior) / (self.k + self.pseudo_count)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in attrs.fields(type(self))}

    @classmethod
    def from_arrays(cls, saved: Any) -> KNNModel:
        return cls(str(saved["kind"]), saved["mean"], saved["scale"], saved["presence"], saved["points"],
                   saved["targets"], saved["weights"], saved["prior"], int(saved["k"]), bool(saved["distance"]),
                   float(saved["pseudo_count"]))


class KNNLearner(PermutationImportance, ArraysFile, TabularLearner):
    """One bag's nearest-neighbour model; see the module docstring."""

    trainer = "knn"
    library = "numpy"  # the neighbours are found and weighed with numpy alone
    extra = None
    MODEL_CLASS = KNNModel
    SEARCH_SPACE = {"n_neighbors": IntRange(1, 50, log=True), "weights": Choice(("distance", "uniform"))}

    @classmethod
    def options_class(cls) -> type:
        return KNNOptions

    @staticmethod
    def propose(profile: BagProfile, strategy: str) -> LearnerProposal:
        score = tabular_score(profile, strategy, (0.7, 0.6, 0.5), mixed=0.55, embeddings=0.55, raw=0.2)
        # the pairwise distances dominate, quadratic in the rows (fitted to 100-4000 rows, within 2x)
        return LearnerProposal(score, {}, "k-nearest neighbours", cost=2e-3 + 2.5e-8 * profile.n_rows**2)

    def _params(self, seed: int) -> dict[str, Any]:
        o = self.options
        return {"n_neighbors": o.knn_neighbors, "weights": o.knn_weights, "pseudo_count": o.knn_pseudo_count,
                "random_state": seed}

    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> KNNModel:
        with limited_threads(fit_threads(self, train.x)):
            return self._fit_knn(params, train, val, recorder)

    def _fit_knn(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
                 recorder: RoundRecorder | None) -> KNNModel:
        mean, scale, presence = standardization(train.x, self.layout)
        points = design_matrix(train.x, mean, scale, presence)
        n = len(points)
        k = auto_neighbors(n) if params["n_neighbors"] == "auto" else int(params["n_neighbors"])
        k = min(k, n)
        weights = np.ones(n) if train.w is None else np.asarray(train.w, dtype=np.float64)
        if self.task_type == "classification":
            kind, targets = "classification", np.asarray(train.y, dtype=np.int64)
            prior = (np.bincount(targets, minlength=self.n_outputs) + 1.0) / (n + self.n_outputs)
        elif self.task_type == "multilabel":
            kind, targets = "multilabel", np.asarray(train.y, dtype=np.float64).reshape(n, -1)
            prior = (targets.sum(axis=0) + 1.0) / (n + 2.0)
        else:
            kind, targets = "regression", np.asarray(train.y, dtype=np.float64).reshape(n, -1)
            prior = targets.mean(axis=0)
        model = KNNModel(kind, mean, scale, presence, points, targets, weights, prior, k,
                         params["weights"] == "distance", float(params["pseudo_count"]))
        if recorder is not None:
            self.info = {"kind": kind, "neighbors": k, "weights": params["weights"], "training_rows": n}
            self._measure_importance(model, train, val, params["random_state"])
        return model

    def _predict(self, model: KNNModel, x: np.ndarray) -> np.ndarray:
        with limited_threads(self.threads):
            return model.predict(x)



@hookimpl
def modalbag_register_trainers(register: Register) -> None:
    register("knn", KNNLearner, options=KNNOptions,
             summary="k-nearest neighbours on standardised inputs, probabilities smoothed towards the prior")
