"""configure_training_strategy: recommendations from timed probe steps."""

from __future__ import annotations

import pytest

from modalbag.api.strategy import _makespan
from tests.conftest import FAST, make_model


def test_strategy_is_measured_per_learner_and_trains_as_recommended():
    model = make_model(n_samples=300, seed=2)
    model.create_ensemble(n_bags=3, random_state=0)
    learners = model.select_base_learners(instantiate=True)
    strategy = model.configure_training_strategy(learners, epochs=4, batch_size=32, enable_denoising=False)
    assert strategy["name"] in ("sequential", "parallel_bags")
    per = strategy["per_learner"]
    assert set(per) == set(learners)
    for m in per.values():
        assert m["probe_rows"] <= 4 * 32 and m["probe_seconds"] > 0
        assert m["estimated_time"] == pytest.approx(
            m["seconds_per_sample"] * 0.8 * len(model.bags[0].rows) * (4 if m["trainer"] == "neural" else 1), rel=0.5)
        assert m["memory_mb"] >= 0
    times = [m["estimated_time"] for m in per.values()]
    n_jobs = strategy["config"]["n_jobs"]
    assert strategy["estimated_time"] == pytest.approx(_makespan(times, n_jobs) if n_jobs > 1 else sum(times))
    trained = model.train_ensemble(**{**FAST, **strategy["config"], "epochs": 2})
    # the measurement may replace a small subset's bootstrap bags by its fold bags
    assert sorted(trained) == sorted(b.learner_id for b in model.bags) and len(trained) >= 3


def test_makespan_schedules_longest_first():
    assert _makespan([4, 3, 3, 2], 2) == 6
    assert _makespan([5], 3) == 5


def test_strategy_from_a_script_without_main_guard_trains_in_this_process(tmp_path, monkeypatch):
    """The spec's scripts train at top level: worker processes would import them and train again."""
    import sys
    import types

    script = tmp_path / "train.py"
    script.write_text("import modalbag\nmodel = modalbag.create_synthetic_model({'a': (4, 'text')})\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr("modalbag.api.strategy.available_cores", lambda: 4)
    model = make_model(n_samples=120, seed=3)
    model.create_ensemble(n_bags=2, random_state=0)
    learners = model.select_base_learners(trainers=["neural"], instantiate=True)
    strategy = model.configure_training_strategy(learners, epochs=2)
    assert strategy["config"]["n_jobs"] == 1 and strategy["name"] == "sequential"
    assert str(script) in strategy["notes"][0] and "__main__" in strategy["notes"][0]
    script.write_text("import modalbag\nif __name__ == '__main__':\n    modalbag.create_synthetic_model({})\n")
    strategy = model.configure_training_strategy(learners, epochs=2)
    assert strategy["notes"] == [] and strategy["config"]["n_jobs"] == 2  # 4 cores, 2 small learners
