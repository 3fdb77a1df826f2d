"""Negative correlation learning in the neural trainer (``ncl_members``, ``ncl_lambda``; see `_ncl`)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

from modalbag.plugins.trainers.neural import NeuralLearner, NeuralOptions
from modalbag.plugins.trainers.neural._ncl import MemberHeads, ambiguity, ncl_strength
from tests.conftest import make_model
from tests.plugins.test_precision import _fit_one

MODALITIES = ("text", "image", "meta")
#: a regime where the heads have not fit the training rows yet (fitted probabilities saturate, and
#: then no head can move): adamw at 3e-3 for 5 epochs on the 96-row bag
LEARNING = {"batch_size": 32, "steps": 1, "epochs": 5, "optimizer_type": "adamw", "learning_rate": 3e-3}


def _training_rows() -> dict[str, np.ndarray]:
    model = make_model(n_samples=200, seed=3)
    return {m: model.dataset.arrays[m][:96] for m in MODALITIES}


def _spread(outputs: np.ndarray) -> tuple[float, float]:
    """Variance around the members' mean (squared distance of probability vectors) and the share of
    rows on which two members predict different classes, averaged over pairs."""
    variance = float(np.square(outputs - outputs.mean(axis=0)).sum(axis=-1).mean())
    m = len(outputs)
    labels = outputs.argmax(axis=-1)
    pairs = [np.mean(labels[i] != labels[j]) for i in range(m) for j in range(i + 1, m)]
    return variance, float(np.mean(pairs))


def test_the_penalty_makes_the_members_disagree_more_on_the_training_rows():
    x = _training_rows()
    spread = {}
    for lam in (0.0, 1.0):
        _, result = _fit_one(**LEARNING, ncl_members=3, ncl_lambda=lam)
        assert any(f"ncl: 3 member heads" in n and f"lambda {lam:g}" in n for n in result.notes), result.notes
        assert all("ncl_ambiguity" in r.loss_terms for r in result.records)
        spread[lam] = _spread(result.model.member_outputs(x))
    # same seed, same data, same initial weights: only the penalty differs
    assert spread[1.0][0] > 1.2 * spread[0.0][0], spread
    assert spread[1.0][1] >= spread[0.0][1], spread


def test_the_prediction_is_the_members_mean_and_survives_save_and_load(tmp_path):
    x = _training_rows()
    _, result = _fit_one(**LEARNING, ncl_members=3, ncl_lambda=0.5)
    learner = result.model
    members = learner.member_outputs(x)
    assert members.shape == (3, 96, 3)
    assert np.ptp(members, axis=0).max() > 1e-4  # the heads really differ
    np.testing.assert_allclose(learner.predict_output(x), members.mean(axis=0), atol=1e-6)
    assert learner.describe()["ncl_members"] == 3
    again = NeuralLearner.load(learner.save(tmp_path / "learner"))
    assert again.options.ncl_members == 3 and isinstance(again.model.head, MemberHeads)
    np.testing.assert_allclose(again.member_outputs(x), members, atol=1e-6)
    np.testing.assert_allclose(again.predict_output(x), learner.predict_output(x), atol=1e-6)


def test_one_member_is_the_plain_network():
    x = _training_rows()
    plain_state, plain = _fit_one(**LEARNING)
    one_state, one = _fit_one(**LEARNING, ncl_members=1, ncl_lambda=0.7)
    assert plain_state.keys() == one_state.keys()
    for name in plain_state:
        torch.testing.assert_close(one_state[name], plain_state[name])
    assert not any("ncl" in n for n in one.notes)
    np.testing.assert_allclose(one.model.member_outputs(x)[0], plain.model.predict_output(x), atol=1e-6)


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_the_penalty_gradient_is_the_ncl_formula(output):
    """d(-lambda * ambiguity)/dF_i = -2 lambda (F_i - F̄) / (M B) (/K where outputs are averaged):
    the F̄ terms cancel because the deviations from the mean sum to zero (Liu & Yao, 1999)."""
    torch.manual_seed(0)
    m, b, k, lam = 4, 5, 3, 0.7
    outputs = torch.rand(m, b, k, dtype=torch.float64, requires_grad=True)
    (-lam * ambiguity(outputs, output)).backward()
    deviation = (outputs - outputs.mean(dim=0, keepdim=True)).detach()
    expected = -2.0 * lam * deviation / (m * b * (1 if output == "softmax" else k))
    torch.testing.assert_close(outputs.grad, expected)


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_the_heads_logits_are_their_mean_output(output):
    torch.manual_seed(0)
    heads = MemberHeads([torch.nn.Linear(6, 3) for _ in range(4)], output)
    fused = torch.randn(7, 6)
    members = heads.members(fused)
    mean = heads.outputs(members).mean(dim=0)
    combined = heads(fused)
    as_output = {"softmax": torch.softmax, "sigmoid": lambda z, dim: torch.sigmoid(z),
                 "identity": lambda z, dim: z}[output](combined, dim=-1)
    torch.testing.assert_close(as_output, mean, atol=1e-6, rtol=1e-5)


def test_lambda_defaults_to_the_diversity_weight_and_is_validated():
    options = NeuralOptions(ncl_members=2)
    config = attrs.make_class("Config", {"ensemble_diversity_weight": attrs.field(default=0.0)})
    assert ncl_strength(options, config()) == (0.5, "default")
    assert ncl_strength(options, config(0.3)) == (0.3, "ensemble_diversity_weight")
    assert ncl_strength(options, config(2.0))[0] == 1.0
    assert ncl_strength(attrs.evolve(options, ncl_lambda=0.0), config(0.3)) == (0.0, "ncl_lambda")
    for bad in ({"ncl_lambda": 1.5}, {"ncl_lambda": -0.1}, {"ncl_members": 0}):
        with pytest.raises(ValueError):
            NeuralOptions(**bad)
