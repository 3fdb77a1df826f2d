"""The combination rules: calibration, the product of experts, stacking and the choice between them."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag.ensemble.combination import (
    Combination,
    calibrated_log_probabilities,
    choose_combination,
    fit_product,
    fit_temperature,
    greedy_weights,
)


def _experts(n: int, informative: int, noise: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities (E, n, 2) of independent informative experts and pure-noise ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    out = []
    for _ in range(informative):  # each sees the label through its own independent noise
        score = (2 * y - 1) * 1.0 + rng.normal(size=n)
        p1 = 1 / (1 + np.exp(-score))
        out.append(np.column_stack([1 - p1, p1]))
    for _ in range(noise):
        p1 = rng.uniform(0.2, 0.8, n)
        out.append(np.column_stack([1 - p1, p1]))
    return np.stack(out), y


def test_product_rule_predicts_the_hand_computed_weighted_product():
    outputs = np.array([[[0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.5, 0.5]]])  # (E=2, n=2, C=2)
    combination = Combination(("a", "b"), "product", np.array([1.5, 0.5]), bias=np.array([0.2, -0.1]),
                              temperatures=np.array([1.0, 2.0]))
    got = combination.predict(outputs, "classification")
    for row in range(2):
        a = np.log(outputs[0, row])  # temperature 1: already normalised log-probabilities
        b = np.log(outputs[1, row]) / 2.0
        b = b - np.log(np.exp(b).sum())  # temperature 2, renormalised
        z = 1.5 * a + 0.5 * b + np.array([0.2, -0.1])
        expected = np.exp(z) / np.exp(z).sum()
        np.testing.assert_allclose(got[row], expected, rtol=1e-12)


def test_temperature_scaling_repairs_an_overconfident_expert():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    correct = rng.uniform(size=2000) < 0.8  # right 80% of the time, but always 99% sure
    p1 = np.where(correct == (y == 1), 0.99, 0.01)
    p = np.column_stack([1 - p1, p1])
    t = fit_temperature(p, y)
    assert t > 1.5  # softened
    calibrated = np.exp(calibrated_log_probabilities(p, t))
    assert calibrated.max(axis=1).mean() == pytest.approx(0.8, abs=0.03)


def test_product_of_independent_experts_beats_their_mean_and_silences_noise():
    outputs, y = _experts(1500, informative=3, noise=2)
    logp = np.log(outputs).transpose(1, 0, 2)
    w, _ = fit_product(logp, y)
    assert w[:3].min() > 0.5 and w[3:].max() < 0.3  # evidence multiplies; noise is weighed down
    chosen = choose_combination(["a", "b", "c", "n1", "n2"], outputs, y, "classification")
    assert chosen.cv_loss["product"] < chosen.cv_loss["mean"]
    assert chosen.rule in ("product", "stacking")


def test_stacking_is_tried_only_with_enough_out_of_fold_rows():
    outputs, y = _experts(60, informative=2, noise=1)
    few = choose_combination(["a", "b", "n"], outputs, y, "classification")
    assert "stacking" not in few.cv_loss and set(few.cv_loss) == {"mean", "product"}
    outputs, y = _experts(600, informative=2, noise=1)
    enough = choose_combination(["a", "b", "n"], outputs, y, "classification")
    assert "stacking" in enough.cv_loss


def test_greedy_mean_never_scores_worse_than_the_best_single_expert_on_its_rows():
    outputs, y = _experts(400, informative=2, noise=2, seed=3)
    w = greedy_weights(outputs, y, "classification")
    assert w.sum() == pytest.approx(1.0)
    mixed = np.tensordot(w, outputs, axes=1)
    loss = -np.log(mixed[np.arange(len(y)), y]).mean()
    singles = [-np.log(o[np.arange(len(y)), y]).mean() for o in outputs]
    assert loss <= min(singles) + 1e-12


def test_regression_uses_the_weighted_mean():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 1))
    outputs = np.stack([y + rng.normal(scale=0.1, size=y.shape), rng.normal(size=y.shape)])
    chosen = choose_combination(["good", "bad"], outputs, y, "regression")
    assert chosen.rule == "mean" and chosen.weights[0] > 0.9


def test_a_combination_survives_its_dict_form():
    outputs, y = _experts(300, informative=2, noise=1)
    chosen = choose_combination(["a", "b", "n"], outputs, y, "classification",
                                temperatures=np.array([1.0, 1.2, 0.8]))
    again = Combination.from_dict(chosen.to_dict())
    np.testing.assert_array_equal(again.predict(outputs, "classification"), chosen.predict(outputs, "classification"))


def test_a_restricted_shared_product_is_the_shared_product_with_the_prior_for_missing_experts():
    from modalbag.ensemble.combination import fit_shared

    outputs, y = _experts(300, informative=3, noise=1, seed=3)
    prior = np.bincount(y, minlength=2) / len(y)
    shared = fit_shared(["a", "b", "c", "d"], outputs, np.ones((4, 300), dtype=bool), y, "classification",
                        np.ones(4), prior, [("a",), ("b",), ("c",), ("d",)], seed=0)
    assert shared.rule == "product" and shared.shared and np.all(shared.weights >= 0)
    part = shared.restricted(["a", "c"])
    got = part.predict(outputs[[0, 2]], "classification")
    # by hand: every expert's term, b and d standing in with the prior's log-probabilities
    z = shared.bias + sum(w * (np.log(np.clip(outputs[i], 1e-6, 1)) if i in (0, 2) else np.log(prior))
                          for i, w in enumerate(shared.weights))
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, expected / expected.sum(axis=1, keepdims=True), atol=1e-10)
    assert Combination.from_dict(shared.to_dict()).restricted(["a", "c"]).predict(
        outputs[[0, 2]], "classification") == pytest.approx(got)


def test_greedy_weights_vectorised_pick_what_one_candidate_at_a_time_picks():
    from modalbag.ensemble.combination import task_loss

    outputs, y = _experts(200, informative=3, noise=3, seed=4)
    weights = greedy_weights(outputs, y, "classification", rounds=15)
    # the same selection, one candidate at a time
    counts = np.zeros(len(outputs))
    single = [task_loss("classification", y, o).mean() for o in outputs]
    counts[int(np.argmin(single))] = 1
    total = outputs[int(np.argmin(single))].copy()
    best, best_counts = min(single), counts.copy()
    for _ in range(14):
        trial = [task_loss("classification", y, (total + o) / (counts.sum() + 1)).mean() for o in outputs]
        pick = int(np.argmin(trial))
        counts[pick] += 1
        total += outputs[pick]
        if trial[pick] < best - 1e-12:
            best, best_counts = trial[pick], counts.copy()
    np.testing.assert_allclose(weights, best_counts / best_counts.sum())


def test_the_diversity_term_moves_weight_toward_an_expert_that_errs_elsewhere():
    from modalbag.ensemble.combination import error_correlation, pairwise_disagreement

    rng = np.random.default_rng(7)
    n = 600
    y = rng.integers(0, 2, n)
    shared_noise = rng.normal(size=n)
    out = []
    for noise in (shared_noise, shared_noise + 0.1 * rng.normal(size=n), rng.normal(size=n) * 1.2):
        score = (2 * y - 1) * 1.2 + noise  # the first two err on the same rows; the third, less accurate, elsewhere
        p1 = 1 / (1 + np.exp(-score))
        out.append(np.column_stack([1 - p1, p1]))
    outputs = np.stack(out)
    corr = error_correlation(true_class_of(outputs, y), y, "classification")
    assert corr[0, 1] > 0.9 and abs(corr[0, 2]) < 0.2
    plain = greedy_weights(outputs, y, "classification")
    diverse = greedy_weights(outputs, y, "classification", diversity=1.0)
    assert diverse[2] > plain[2] and diverse[0] + diverse[1] < plain[0] + plain[1]
    disagreement = pairwise_disagreement(outputs)
    assert disagreement[0, 1] < disagreement[0, 2] and np.all(np.diag(disagreement) == 0)


def true_class_of(outputs, y):
    from modalbag.ensemble.combination import true_class

    return true_class(outputs, y)
