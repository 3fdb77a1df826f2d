"""Shared helpers of the classical trainers (``svm``, ``knn``, ``hist_gradient_boosting``, ``logistic``).

Not a plugin (no entry point). What the four share beyond `TabularLearner`:

**Inner folds over distinct rows.** A bag is a bootstrap, so its training rows repeat samples. The
SVM's calibration and the logistic trainer's choice of regularisation score on held-out rows; a copy
of a sample on both sides would make those scores optimistic. `inner_folds` groups identical rows
(the same sample, or samples no model can tell apart) and splits the *groups*: stratified by class for
classification (a group's class is its first row's), shuffled otherwise, seeded. The number of folds
is ``min(k, smallest class count over distinct rows)``; below 2 no folds are possible and the caller
says what it did instead.

**Importance by permuting a modality.** An RBF kernel machine and a nearest-neighbour vote have no
coefficient or split gain to read importance from. `modality_importance` measures it instead: on up to
`PERMUTATION_ROWS` validation rows (training rows when the bag has none), the increase of the task's
primary loss (log loss, or MSE) when one modality's columns are shuffled across rows together,
``max(0, loss(permuted) - loss(original))`` with one seeded permutation per modality. It is computed
once, when the final model is fitted, and saved with the learner. Features within a modality are not
ranked (``top_features`` is empty): one prediction per column would cost too much for embeddings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modalbag.plugins.trainers._tabular import FeatureLayout, Matrix
from modalbag.training.metrics import primary_loss

#: Rows the permutation importance is measured on, at most.
PERMUTATION_ROWS = 500


def distinct_groups(z: np.ndarray) -> np.ndarray:
    """A group id per row of ``z`` (no NaN), equal for identical rows."""
    _, inverse = np.unique(np.ascontiguousarray(z), axis=0, return_inverse=True)
    return inverse.reshape(-1)


def inner_folds(z: np.ndarray, y: np.ndarray | None, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``k`` folds ``(train_index, test_index)`` over the rows of ``z`` that never split identical
    rows; stratified by the integer labels ``y`` when given. Empty when fewer than 2 folds are possible."""
    from sklearn.model_selection import KFold, StratifiedKFold

    groups = distinct_groups(z)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    first = np.zeros(n_groups, dtype=np.int64)
    first[groups[::-1]] = np.arange(len(groups))[::-1]  # each group's first row
    if y is not None:
        labels = y[first]
        k = min(k, int(np.bincount(labels)[np.unique(labels)].min()))
        splitter: Any = StratifiedKFold(k, shuffle=True, random_state=seed) if k >= 2 else None
    else:
        labels = None
        k = min(k, n_groups)
        splitter = KFold(k, shuffle=True, random_state=seed) if k >= 2 else None
    if splitter is None:
        return []
    folds = []
    for train_groups, test_groups in splitter.split(np.zeros(n_groups), labels):
        folds.append((np.flatnonzero(np.isin(groups, train_groups)), np.flatnonzero(np.isin(groups, test_groups))))
    return folds


def modality_importance(predict: Callable[[np.ndarray], np.ndarray], layout: FeatureLayout, rows: Matrix,
                        task_type: str, seed: int) -> dict[str, float]:
    """Each modality's permutation importance (see the module docstring), by modality name."""
    rng = np.random.default_rng(seed)
    x, y = rows.x, rows.y
    if len(x) > PERMUTATION_ROWS:
        keep = np.sort(rng.choice(len(x), PERMUTATION_ROWS, replace=False))
        x, y = x[keep], y[keep]
    base = primary_loss(task_type, y, predict(x))
    out: dict[str, float] = {}
    start = 0
    for block in layout.blocks:
        stop = start + block.width
        shuffled = x.copy()
        shuffled[:, start:stop] = x[rng.permutation(len(x)), start:stop]
        out[block.modality] = max(0.0, float(primary_loss(task_type, y, predict(shuffled)) - base))
        start = stop
    return out


def modality_feature_importance(importance: Mapping[str, float], layout: FeatureLayout) -> dict[str, Any]:
    """`describe()`'s ``feature_importance`` from per-modality importance: shares summing to 1 (all 0
    when no modality's permutation raised the loss)."""
    total = sum(importance.values())
    return {"importance_type": "permutation_by_modality", "top_features": {},
            "modality_weights": {b.modality: (importance.get(b.modality, 0.0) / total if total > 0 else 0.0)
                                 for b in layout.blocks}}


class ArraysFile:
    """Saving for a trainer whose model is numpy arrays: ``model.arrays()`` into one ``.npz`` (never
    pickled), read back by ``MODEL_CLASS.from_arrays``. Put it before `TabularLearner` in the bases."""

    MODEL_FILE = "model.npz"
    MODEL_CLASS: Any = None
    model: Any

    def _save_model(self, directory: Path) -> list[str]:
        np.savez(directory / self.MODEL_FILE, **self.model.arrays())
        return [self.MODEL_FILE]

    def _load_model(self, directory: Path, files: list[str]) -> Any:
        with np.load(directory / files[0], allow_pickle=False) as saved:
            return self.MODEL_CLASS.from_arrays(saved)


class PermutationImportance:
    """Mixin for a `TabularLearner` without native importance: measures `modality_importance` when the
    final model is fitted and reports it as ``describe()['feature_importance']``."""

    importance_type = "permutation_by_modality"

    def _measure_importance(self, model: Any, train: Matrix, val: Matrix | None, seed: int) -> None:
        rows = val if val is not None and len(val) else train
        self.info["modality_importance"] = modality_importance(  # type: ignore[attr-defined]
            lambda x: self._predict(model, x), self.layout, rows, self.task_type, seed)  # type: ignore[attr-defined]

    def _raw_importance(self) -> np.ndarray:
        return np.zeros(self.layout.n_features)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        out = super().describe()  # type: ignore[misc]
        if "feature_importance" in out:
            out["feature_importance"] = modality_feature_importance(
                self.info.get("modality_importance", {}), self.layout)  # type: ignore[attr-defined]
        return out


#: Below this many training values (rows x columns) the classical trainers fit on one thread: their
#: parallel work (BLAS products in L-BFGS, kernel and distance matrices, per-feature histograms) is too
#: small to repay synchronising threads, and on a busy machine extra threads cost ten times the work.
ONE_THREAD_VALUES = 5_000_000


def fit_threads(learner: Any, x: np.ndarray) -> int | None:
    """Threads to fit with: the ``threads`` option when set, else one below `ONE_THREAD_VALUES`, else
    the learner's default (None: the engine's per-learner limit)."""
    if learner.options.threads:
        return int(learner.options.threads)
    return 1 if x.size < ONE_THREAD_VALUES else learner.threads


def limited_threads(threads: int | None) -> Any:
    """Cap BLAS and OpenMP threads while fitting (the learner's ``threads``: 1 for a small matrix, where a
    busy machine's thread pools otherwise cost ten times the work); no cap when None."""
    import contextlib

    return _thread_pools().limit(limits=threads) if threads else contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def _thread_pools() -> Any:
    """One controller per process: finding the loaded BLAS/OpenMP libraries costs milliseconds, and
    a measured selection fits hundreds of small models."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def rbf_kernel(x: np.ndarray, support: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma * ||x_i - s_j||^2)`` (n, n_support), the squared distance expanded as libsvm does."""
    sq = (np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", support, support)[None, :]
          - 2.0 * (x @ support.T))
    return np.exp(-gamma * sq)


__all__ = ["ONE_THREAD_VALUES", "PERMUTATION_ROWS", "PermutationImportance", "distinct_groups", "fit_threads",
           "inner_folds", "limited_threads", "modality_feature_importance", "modality_importance", "rbf_kernel"]
