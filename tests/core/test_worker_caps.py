"""Worker counts above the cores are capped at the cores this process may use, and the run says so."""

from __future__ import annotations

import os

import pytest
import structlog

from modalbag import TrainingConfig
from modalbag.execution import resources
from tests.conftest import FAST, make_model


@pytest.fixture
def two_cores(monkeypatch):
    """A machine whose process may use two cores, whatever the test machine has."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the affinity wins over the machine's count


def test_usable_cores_come_from_the_affinity_else_the_cpu_count(two_cores, monkeypatch):
    assert resources.available_cores() == 2
    monkeypatch.delattr(os, "sched_getaffinity")  # not Linux
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert resources.available_cores() == 3


@pytest.mark.parametrize(("n_jobs", "used", "capped"), [(1, 1, False), (2, 2, False), (8, 2, True), (-1, 2, False)])
def test_n_jobs_is_capped_at_the_cores(two_cores, n_jobs, used, capped):
    config = TrainingConfig.from_dict({"n_jobs": n_jobs})
    assert resources.concurrent_learners(config) == used
    assert resources.threads_for(config) == max(1, 2 // used)  # workers x threads never above the cores
    note = resources.n_jobs_note(config)
    if capped:
        assert note == ("n_jobs=8 is more than the 2 core(s) this process may use: capped at 2 learner(s) at once")
    else:
        assert note is None


def test_the_local_executor_starts_no_more_workers_than_cores(two_cores):
    from modalbag.plugins.executors.local import LocalExecutor, LocalOptions

    executor = LocalExecutor(TrainingConfig.from_dict({"n_jobs": 16}), LocalOptions(start_method="spawn"))
    assert executor.workers == 2


def test_a_capped_run_notes_what_was_asked_and_what_was_used(two_cores):
    model = make_model(n_samples=160)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    with structlog.testing.capture_logs() as logs:
        model.train_ensemble(**{**FAST, "epochs": 1}, n_jobs=8, executor="serial", threads_per_learner=1)
    summary = model.get_training_summary()
    assert summary["run_notes"] == [("n_jobs=8 is more than the 2 core(s) this process may use: capped at 2 "
                                     "learner(s) at once")]
    capped = [e for e in logs if e["event"] == "run.n_jobs_capped"]
    assert capped and capped[0]["n_jobs"] == 8 and capped[0]["used"] == 2 and capped[0]["log_level"] == "warning"

    model.train_ensemble(**{**FAST, "epochs": 1}, n_jobs=2, executor="serial", threads_per_learner=1)
    assert model.get_training_summary()["run_notes"] == []  # within the cores: nothing to say
