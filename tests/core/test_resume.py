"""Resume: a run killed with SIGKILL continues from its run directory and ends where an
uninterrupted run ends; finished learners are loaded, not retrained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modalbag import ArtifactError, ConfigError, DataError, hookimpl
from tests.conftest import FAST, make_model

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {**FAST, "epochs": 8, "save_checkpoints": True, "threads_per_learner": 1, "n_jobs": 1,
           "early_stopping_patience": 4, "enable_denoising": True, "random_state": 3}

SCRIPT = """
import json, sys, time
from modalbag import hookimpl
from tests.conftest import make_model

run_dir, options = sys.argv[1], json.loads(sys.argv[2])

class Slow:
    @hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        time.sleep(0.1)  # room for the parent to kill mid-learner; no effect on the numbers

model = make_model(n_samples=160, seed=5, plugins=[Slow()])
model.create_ensemble(n_bags=3, random_state=0)
model.select_base_learners(instantiate=False, trainers=["neural"])
model.train_ensemble(run_dir=run_dir, **options)
"""


def _model(plugins=()):
    model = make_model(n_samples=160, seed=5, plugins=plugins)
    model.create_ensemble(n_bags=3, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["neural"])
    return model


def _start_training(tmp_path: Path, run_dir: Path) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(script), str(run_dir), json.dumps(OPTIONS)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text())["learners"]
    except (OSError, ValueError, KeyError):
        return {}


def _has_state(run_dir: Path, learner_id: str) -> bool:
    try:
        manifest = json.loads((run_dir / "checkpoints" / learner_id / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest["current"].get("state"))


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    run_dir = tmp_path / "run"
    child = _start_training(tmp_path, run_dir)
    killed_with = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        status = _status(run_dir)
        done = [lid for lid, e in status.items() if e.get("status") == "trained"]
        running = [lid for lid, e in status.items() if e.get("status") == "pending" and _has_state(run_dir, lid)]
        if done and running:
            child.send_signal(signal.SIGKILL)
            killed_with = (done, running)
            break
        time.sleep(0.02)
    child.wait(timeout=60)
    assert killed_with is not None, f"the run ended before it could be killed: {child.stderr.read().decode()[-2000:]}"
    assert child.returncode == -signal.SIGKILL
    done, running = killed_with
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    fitted = _Fitted()  # resume in this process, with the same options (one thread per learner)
    resumed = _model([fitted])
    resumed.train_ensemble(resume=True, run_dir=str(run_dir), **OPTIONS)
    assert not set(done) & set(fitted.ids), "finished learners were retrained"
    assert set(running) <= set(fitted.ids)
    assert any(n.startswith("resumed from the checkpoint of epoch") for n in resumed.learners[running[0]].notes)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"

    reference = _model()  # the same run, uninterrupted, in this process (one thread per learner too)
    reference.train_ensemble(run_dir=str(tmp_path / "reference"), **OPTIONS)
    data, _ = reference.synthetic_task.sample(80, random_state=11)
    np.testing.assert_allclose(resumed.predict_proba(data), reference.predict_proba(data), rtol=0, atol=1e-6)


class _Interrupt:
    """Stops the whole run (as Ctrl-C would) at one learner's epoch."""

    def __init__(self, learner_id: str, epoch: int):
        self.learner_id, self.epoch = learner_id, epoch

    @hookimpl
    def modalbag_epoch_end(self, run, fit, record):
        if fit.spec.learner_id == self.learner_id and record.epoch == self.epoch:
            raise KeyboardInterrupt


class _Fitted:
    def __init__(self):
        self.ids = []

    @hookimpl
    def modalbag_fit_start(self, run, fit):
        self.ids.append(fit.spec.learner_id)


def test_interrupted_multimodal_learner_resumes_exactly_in_process(tmp_path):
    """Denoising (adaptive weighting), early stopping and the schedule all continue where they were."""
    options = {**OPTIONS, "epochs": 6, "checkpoint_interval": 2}
    reference = _model()
    reference.train_ensemble(run_dir=str(tmp_path / "ref"), **options)
    interrupted = _model([_Interrupt("bag_000", 5)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.train_ensemble(run_dir=str(tmp_path / "run"), **options)
    fitted = _Fitted()
    resumed = _model([fitted])
    resumed.train_ensemble(resume=True, run_dir=str(tmp_path / "run"), **options)
    assert "resumed from the checkpoint of epoch 4" in resumed.learners["bag_000"].notes  # interval 2: epoch 4
    ours = [r.train_loss for r in resumed.learners["bag_000"].records]
    assert ours == [r.train_loss for r in reference.learners["bag_000"].records]
    data, _ = reference.synthetic_task.sample(50, random_state=2)
    np.testing.assert_array_equal(resumed.predict_proba(data), reference.predict_proba(data))

    again = _Fitted()  # a complete run resumes by loading every learner
    complete = _model([again])
    complete.train_ensemble(resume=True, run_dir=str(tmp_path / "run"), **options)
    assert again.ids == []
    np.testing.assert_array_equal(complete.predict_proba(data), reference.predict_proba(data))


def test_resume_keeps_the_recorded_configuration(tmp_path):
    model = _model()
    model.train_ensemble(run_dir=str(tmp_path), **{**OPTIONS, "epochs": 2})
    with pytest.raises(ConfigError, match="learning_rate"):
        _model().train_ensemble(resume=True, run_dir=str(tmp_path), **{**OPTIONS, "epochs": 2, "learning_rate": 0.5})
    with pytest.raises(ConfigError, match="run_dir"):
        _model().train_ensemble(resume=True, **OPTIONS)
    with pytest.raises(ArtifactError, match="run.json"):
        _model().train_ensemble(resume=True, run_dir=str(tmp_path / "nothing"), **OPTIONS)
    other = make_model(n_samples=160, seed=6)  # other data, same shapes
    with pytest.raises(DataError, match="data differ"):
        other.train_ensemble(resume=True, run_dir=str(tmp_path), **{**OPTIONS, "epochs": 2, "n_jobs": 1})
