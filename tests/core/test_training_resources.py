"""`check_training_resources` and `optimize_for_resources` (the spec's quality-assurance workflow):
cores, memory and disk measured against the planned run, and the option changes that make it fit."""

from __future__ import annotations

import collections

import pytest

import modalbag.api.workflows as W
from modalbag import Recommendation, optimize_for_resources
from modalbag.execution import available_cores
from tests.conftest import make_model


@pytest.fixture(scope="module")
def model():
    m = make_model(n_samples=200)
    m.create_ensemble(n_bags=3, random_state=0)
    m.select_base_learners(trainers=["neural"], instantiate=False)
    return m


def test_enough_of_everything_is_sufficient_and_changes_nothing(model):
    check = model.check_training_resources({"epochs": 2, "n_jobs": 1, "memory_limit_mb": 100_000})
    assert check["sufficient"] and check["limitations"] == [] and check["recommended_options"] == {}
    assert check["concurrent_learners"] == 1 and check["n_learners"] == 3 and check["cores"] == available_cores()
    assert check["memory_needed_mb"] == pytest.approx(check["learner_memory_mb"])
    assert check["memory_budget_mb"] == 100_000 and check["disk_needed_mb"] > 0


def test_memory_over_the_budget_lowers_n_jobs_until_the_learners_at_once_fit(model):
    one = model.check_training_resources({"n_jobs": 1})["learner_memory_mb"]
    wanted = {"epochs": 2, "n_jobs": 2, "memory_limit_mb": 1.5 * one}  # room for one learner, not two
    check = model.check_training_resources(wanted)
    assert not check["sufficient"] and check["memory_needed_mb"] == pytest.approx(2 * one)
    assert any(line.startswith("memory: 2 learner(s) at once") for line in check["limitations"])
    fitted = optimize_for_resources(wanted, check)
    assert isinstance(fitted, Recommendation) and fitted["n_jobs"] == 1 and fitted["epochs"] == 2
    assert any(reason.startswith("n_jobs 2 -> 1") for reason in fitted.reasons)
    assert model.check_training_resources(dict(fitted))["sufficient"]
    assert model.optimize_for_resources(wanted) == fitted  # the model's method checks first by itself


def test_more_learners_at_once_than_cores_is_a_limitation(model):
    cores = available_cores()
    check = model.check_training_resources({"n_jobs": cores + 1, "memory_limit_mb": 100_000})
    assert f"cores: n_jobs={cores + 1} learners at once on {cores} core(s)" in check["limitations"]
    assert check["recommended_options"]["n_jobs"] == cores


def test_a_full_disk_turns_checkpoints_off_and_unknown_memory_is_a_reason_not_a_limit(model, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(W.shutil, "disk_usage", lambda path: usage(1, 1, 0))
    monkeypatch.setattr(W, "available_memory", lambda: None)
    monkeypatch.setattr(W, "memory_budget", lambda config: None)
    check = model.check_training_resources({"n_jobs": 1, "save_checkpoints": True})
    assert check["disk_free_mb"] == 0 and any(line.startswith("disk: checkpoints need") for line in check["limitations"])
    assert check["recommended_options"] == {"save_checkpoints": False}
    assert check.get("memory_budget_mb") is None and f"{check['memory_budget_mb']:.1f}".startswith("n/a (this machine")
    assert model.check_training_resources({"n_jobs": 1, "save_checkpoints": False})["sufficient"]
