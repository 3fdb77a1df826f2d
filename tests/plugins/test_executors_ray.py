"""The ``ray`` executor against a local Ray instance: same models as serial, and a task whose worker
dies fails its own bag only. Skipped only when Ray is not installed (``pip install 'modalbag[ray]'``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST, make_model
from tests.plugins.test_executors import DieIn

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'modalbag[ray]'")

RUN = {**FAST, "epochs": 3, "early_stopping_patience": 0}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # workers import the test plugins
    yield ray
    ray.shutdown()


def _train(plugins=(), n_bags=3, **config):
    model = make_model(n_samples=240, plugins=list(plugins))
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)  # bootstrap bags, trained by the executor
    model.train_ensemble(**{**RUN, **config})
    return model


def test_ray_trains_the_same_models_as_serial(local_ray):
    data, _ = make_model(n_samples=10).synthetic_task.sample(200, random_state=3)
    serial = _train(executor="serial", n_jobs=2)
    on_ray = _train(executor="ray", n_jobs=2)
    np.testing.assert_array_equal(serial.predict_proba(data), on_ray.predict_proba(data))
    assert on_ray.get_training_summary()["failed"] == 0


def test_a_ray_worker_that_dies_fails_its_own_bag_only(local_ray):
    dies = DieIn("bag_001", "exit")
    model = _train(plugins=[dies], executor="ray", n_jobs=2)
    summary = model.get_training_summary()
    assert summary["learner_status"] == {"bag_000": "trained", "bag_001": "failed", "bag_002": "trained"}
    assert summary["errors"]["bag_001"].startswith("WorkerLostError")
    assert dies.errors == [("bag_001", "WorkerLostError", os.getpid())]
