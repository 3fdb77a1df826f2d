"""Task metrics: the hand-rolled F1s agree with scikit-learn's on random inputs and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from modalbag.training.metrics import classification_metrics, macro_f1, multilabel_metrics


@pytest.mark.parametrize("seed", range(20))
def test_f1_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    c, n = int(rng.integers(2, 7)), int(rng.integers(1, 60))
    y, proba = rng.integers(0, c, n), rng.random((n, c))
    assert classification_metrics(y, proba)["f1"] == pytest.approx(
        f1_score(y, proba.argmax(1), average="macro", labels=np.arange(c), zero_division=0), abs=1e-12)
    labels, scores = rng.integers(0, 2, (n, c)), rng.random((n, c))
    assert multilabel_metrics(labels, scores)["f1"] == pytest.approx(
        f1_score(labels, (scores >= 0.5).astype(int), average="micro", zero_division=0), abs=1e-12)


def test_macro_f1_by_hand():
    # class 0: TP 1, FP 1, FN 0 -> 2/3; class 1: TP 1, FP 0, FN 1 -> 2/3; class 2: absent -> 0
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1]), 3) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert multilabel_metrics(np.zeros((2, 2)), np.zeros((2, 2)))["f1"] == 0.0
