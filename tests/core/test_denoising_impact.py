"""measure_denoising_impact: a twin trained with denoising flipped, scored on the same rows."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import NotFittedError
from modalbag.reports.denoising_impact import conditions
from tests.conftest import FAST, make_model


def test_impact_compares_a_twin_with_denoising_flipped_on_every_condition():
    model = make_model(n_samples=300, seed=4)
    model.create_ensemble(n_bags=6, random_state=0)  # pairs too: denoising reaches partial patterns
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 4, "enable_denoising": True})
    assert model.get_detailed_training_report().get("denoising_impact") is None
    data, labels = model.synthetic_task.sample(200, random_state=8)
    result = model.measure_denoising_impact(data, labels, noise=0.5)
    table = result["conditions"]
    assert set(table) == {"all_present", "noisy"} | {f"{k}:{m}" for k in ("missing", "only") for m in data}
    for name, row in table.items():
        assert row["difference"] == pytest.approx(row["with_denoising"] - row["without_denoising"])
    assert table["all_present"]["with_denoising"] == pytest.approx(model.evaluate(data, labels)["accuracy"])
    assert result["denoising_impact"] == table["all_present"]["difference"]
    assert result["robustness_impact"] == pytest.approx(
        np.mean([r["difference"] for n, r in table.items() if n != "all_present"]))
    report = model.get_detailed_training_report()
    assert report["denoising_impact"] == result["denoising_impact"]
    # the twin really trained without denoising: its scores are not the model's on every condition
    assert any(row["difference"] != 0 for row in table.values())


def test_conditions_views():
    data = {"a": np.ones((4, 2), np.float32), "b": np.zeros((4, 3), np.float32)}
    views = conditions(data, noise=0.0, seed=0)
    assert set(views) == {"all_present", "missing:a", "missing:b", "only:a", "only:b"}
    assert list(views["missing:a"]) == ["b"] and list(views["only:b"]) == ["b"]
    noisy = conditions({"a": np.arange(8, dtype=np.float32).reshape(4, 2)}, noise=1.0, seed=0)["noisy"]["a"]
    assert noisy.shape == (4, 2) and not np.array_equal(noisy, np.arange(8).reshape(4, 2))


def test_impact_needs_a_trained_model():
    with pytest.raises(NotFittedError, match="train_ensemble"):
        make_model(n_samples=50).measure_denoising_impact({"text": np.zeros((2, 16))}, [0, 1])
