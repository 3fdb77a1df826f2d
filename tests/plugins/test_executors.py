"""Executors: the same models whichever runs them, failures isolated per bag, memory and threads kept
within the machine, and logs from workers reaching the parent."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import structlog

from modalbag import ConfigError, TrainingConfig, UnknownPluginError, hookimpl
from modalbag.execution import (
    MIB,
    Footprint,
    LearnerJob,
    MemoryGate,
    NotPicklableError,
    WorkerLostError,
    available_cores,
    estimate_footprint,
    threads_for,
)
from modalbag.kernel.records import LearnerSpec
from tests.conftest import FAST, make_model

RUN = {**FAST, "epochs": 3, "early_stopping_patience": 0}


def _train(n_bags=3, plugins=(), n_samples=240, **config):
    model = make_model(n_samples=n_samples, plugins=list(plugins))
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**RUN, **config})
    return model


# -- plugins the tests use: module level, so worker processes import them by name -----------------


class DieIn:
    """Ends the worker process while it fits ``learner_id``: os._exit, or a signal to itself."""

    def __init__(self, learner_id: str, how: str):
        self.learner_id, self.how = learner_id, how
        self.errors: list[tuple[str, str, int]] = []

    @hookimpl
    def modalbag_fit_start(self, run, fit):
        if fit.spec.learner_id == self.learner_id:
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)

    @hookimpl
    def modalbag_fit_error(self, run, learner_id, error):
        self.errors.append((learner_id, type(error).__name__, os.getpid()))


class Raises:
    @hookimpl
    def modalbag_fit_setup(self, run, fit):
        if fit.spec.learner_id == "bag_001":
            raise MemoryError("pretend the tensor did not fit")


class Timeline:
    """Writes where and when each fit ran, with its threads, to files in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.parent_calls: list[str] = []

    @hookimpl
    def modalbag_run_start(self, run):
        self.parent_calls.append(f"run_start:{os.getpid()}")

    @hookimpl
    def modalbag_fit_start(self, run, fit):
        import torch
        from threadpoolctl import threadpool_info

        blas = sorted({info["num_threads"] for info in threadpool_info()})
        self._write(fit, start=time.time(), pid=os.getpid(), torch_threads=torch.get_num_threads(), blas=blas)

    @hookimpl
    def modalbag_fit_end(self, run, fit):
        self._write(fit, end=time.time())

    @hookimpl
    def modalbag_run_end(self, run, learners):
        self.parent_calls.append(f"run_end:{os.getpid()}")

    def _write(self, fit, **values):
        path = self.directory / f"{fit.spec.learner_id}.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps(known | values))

    def read(self) -> dict[str, dict]:
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.directory.glob("*.json"))}


class Sleeps:
    @hookimpl
    def modalbag_fit_start(self, run, fit):
        if fit.spec.learner_id == "bag_000":
            time.sleep(120)


class HoldsALock:
    def __init__(self):
        self.lock = threading.Lock()

    @hookimpl
    def modalbag_run_start(self, run):
        pass


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


# -- equivalence --------------------------------------------------------------------------------


def test_serial_and_local_train_identical_models():
    data, _ = make_model(n_samples=10).synthetic_task.sample(200, random_state=3)
    serial = _train(executor="serial", n_jobs=2)
    local = _train(executor="local", n_jobs=2)
    np.testing.assert_array_equal(serial.predict_proba(data), local.predict_proba(data))
    for lid, record in serial.learners.items():
        assert [r.train_loss for r in record.records] == [r.train_loss for r in local.learners[lid].records]
    assert "executor.local" in local.get_training_summary()["active_plugins"]


def test_auto_executor_follows_n_jobs_and_distributed_training():
    assert TrainingConfig().executor_name() == "serial"
    assert TrainingConfig.from_dict({"n_jobs": 4}).executor_name() == "local"
    assert TrainingConfig.from_dict({"n_jobs": -1}).executor_name() == "local"
    assert TrainingConfig.from_dict({"distributed_training": True}).executor_name() == "torchrun"
    assert TrainingConfig.from_dict({"n_jobs": 4, "executor": "ray"}).executor_name() == "ray"
    with pytest.raises(ConfigError, match="n_jobs must be >= 1, or -1"):
        TrainingConfig.from_dict({"n_jobs": 0})
    with pytest.raises(ConfigError, match="set executor='auto'"):
        TrainingConfig.from_dict({"distributed_training": True, "executor": "local"})


def test_unknown_executor_is_named_before_training():
    model = make_model(n_samples=100)
    with pytest.raises(UnknownPluginError, match="did you mean 'local'"):
        model.train_ensemble(**{**RUN, "executor": "locall"})
    assert model.learners == {}


def test_an_executor_plugin_registered_by_a_third_party_is_used_by_name():
    """``modalbag_register_executors``: a plugin adds an executor; records come back in spec order."""
    import modalbag

    class Backwards:
        def __init__(self, config, options):
            self.calls = 0

        def execute(self, work):
            for job in reversed(work.jobs):
                yield work.fit_here(job)

    class Plugin:
        @hookimpl
        def modalbag_register_executors(self, register):
            register("backwards", Backwards, summary="fits the last bag first")

    catalog = modalbag.Catalog()
    catalog.register_plugin(Plugin(), name="backwards-plugin")
    model = make_model(n_samples=150, catalog=catalog)
    model.create_ensemble(n_bags=3, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["neural"])
    model.train_ensemble(**{**RUN, "epochs": 2, "executor": "backwards"})
    assert list(model.learners) == ["bag_000", "bag_001", "bag_002"]
    assert "executor.backwards" in model.get_training_summary()["active_plugins"]


# -- isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how,reason", [("exit", "exited with code 3"), ("kill", "killed by SIGKILL")])
def test_a_worker_that_dies_fails_its_own_bag_only(how, reason):
    dies = DieIn("bag_001", how)
    started = time.monotonic()
    model = _train(n_bags=4, plugins=[dies], executor="local", n_jobs=2)
    summary = model.get_training_summary()
    assert summary["learner_status"] == {"bag_000": "trained", "bag_001": "failed", "bag_002": "trained",
                                         "bag_003": "trained"}
    assert summary["errors"]["bag_001"].startswith("WorkerLostError") and reason in summary["errors"]["bag_001"]
    assert dies.errors == [("bag_001", "WorkerLostError", os.getpid())]  # reported in the parent
    assert time.monotonic() - started < 120


def test_raising_and_out_of_memory_learners_are_recorded_in_workers():
    model = _train(n_bags=3, plugins=[Raises()], executor="local", n_jobs=2)
    summary = model.get_training_summary()
    assert summary["learner_status"]["bag_001"] == "failed"
    assert summary["errors"]["bag_001"] == "MemoryError: pretend the tensor did not fit"
    assert summary["trained"] == 2


def test_a_bag_over_its_time_limit_is_stopped_and_reported():
    model = _train(n_bags=3, plugins=[Sleeps()], executor="local", n_jobs=2, bag_timeout=4)
    summary = model.get_training_summary()
    assert summary["learner_status"] == {"bag_000": "failed", "bag_001": "trained", "bag_002": "trained"}
    assert "bag_timeout=4" in summary["errors"]["bag_000"]


def test_a_plugin_that_cannot_be_copied_to_workers_is_a_clear_error():
    model = make_model(n_samples=160, plugins=[HoldsALock()])  # past the rows a lone candidate is fold-bagged on
    model.create_ensemble(n_bags=2)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    with pytest.raises(NotPicklableError, match="executor='serial'"):
        model.train_ensemble(**{**RUN, "executor": "local", "n_jobs": 2})


# -- where hooks run, threads, memory ----------------------------------------------------------


def test_learner_hooks_run_in_workers_with_bounded_threads(tmp_path):
    timeline = Timeline(tmp_path)
    _train(n_bags=4, plugins=[timeline], executor="local", n_jobs=2, threads_per_learner=None)
    fits = timeline.read()
    assert set(fits) == {"bag_000", "bag_001", "bag_002", "bag_003"}
    pids = {f["pid"] for f in fits.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two workers, never this process
    assert timeline.parent_calls == [f"run_start:{os.getpid()}", f"run_end:{os.getpid()}"]
    threads = max(1, available_cores() // 2)
    assert {f["torch_threads"] for f in fits.values()} == {threads}
    assert all(max(f["blas"], default=threads) <= threads for f in fits.values())
    assert len(pids) * threads <= max(available_cores(), 2)
    pairs = [(a, b) for a in fits.values() for b in fits.values() if a["pid"] < b["pid"]]
    assert any(_overlap(a, b) for a, b in pairs)  # the two workers trained side by side


def test_a_memory_limit_runs_one_bag_at_a_time(tmp_path):
    timeline = Timeline(tmp_path)
    _train(n_bags=3, plugins=[timeline], executor="local", n_jobs=2, memory_limit_mb=1)
    fits = timeline.read()
    assert len(fits) == 3 and len({f["pid"] for f in fits.values()}) == 1
    ordered = sorted(fits.values(), key=lambda f: f["start"])
    assert all(a["end"] <= b["start"] for a, b in zip(ordered, ordered[1:]))


def test_memory_gate_admits_within_budget_and_always_one():
    from modalbag.data.bags import Bag

    spec = LearnerSpec("bag_000", 0, "neural", ("a",), {"a": "tabular"})
    job = LearnerJob(spec, Bag(0, ("a",), np.arange(3), np.arange(0), 0), Footprint(60 * MIB, 0, 0))
    gate = MemoryGate(100 * MIB)
    assert gate.try_reserve(60 * MIB, running=0, job=job)
    assert not gate.try_reserve(60 * MIB, running=1, job=job)  # would exceed: wait
    gate.release(60 * MIB)
    assert gate.try_reserve(150 * MIB, running=0, job=job)  # larger than the budget, but nothing runs
    assert MemoryGate(None).try_reserve(10**12, running=5)


def test_footprint_grows_with_rows_modalities_and_width():
    from modalbag.data.bags import Bag
    from modalbag.kernel.modalities import ModalitySpec

    specs = {"a": ModalitySpec("a", "tabular", (100,)), "img": ModalitySpec("img", "image", (3, 16, 16))}
    config = TrainingConfig()

    def footprint(rows, modalities, hidden=128):
        spec = LearnerSpec("x", 0, "neural", modalities, {}, {"hidden_dim": hidden, "embedding_dim": 64})
        bag = Bag(0, modalities, np.arange(rows), np.arange(0), 0)
        return estimate_footprint(spec, bag, specs, config, 3)

    small = footprint(1000, ("a",))
    assert footprint(10_000, ("a",)).data == 10 * small.data
    assert footprint(1000, ("a", "img")).total > small.total
    assert footprint(1000, ("a",), hidden=512).model > small.model
    assert small.total > 1000 * 100 * 4  # at least the raw rows


def test_threads_follow_n_jobs_unless_set():
    cores = available_cores()
    assert threads_for(TrainingConfig.from_dict({"n_jobs": 1})) == cores
    assert threads_for(TrainingConfig.from_dict({"n_jobs": cores})) == 1
    assert threads_for(TrainingConfig.from_dict({"n_jobs": 2, "threads_per_learner": 3})) == 3


# -- logs and progress --------------------------------------------------------------------------


def test_worker_logs_reach_the_parent_with_the_bag_id():
    with structlog.testing.capture_logs() as logs:
        _train(n_bags=2, executor="local", n_jobs=2)
    trained = [e for e in logs if e["event"] == "learner.trained"]
    assert sorted(e["bag"] for e in trained) == [0, 1]
    assert all(int(e["worker"].rsplit(":", 1)[1]) != os.getpid() for e in trained)  # logged in workers
    done = [e for e in logs if e["event"] == "bag.done"]
    assert sorted(e["done"] for e in done) == [1, 2] and {e["total"] for e in done} == {2}


def test_nothing_is_printed_unless_a_progress_bar_is_asked_for(capfd):
    _train(n_bags=2, executor="local", n_jobs=2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    for executor in ("serial", "local"):  # the bags' bar advances whoever trains them
        _train(n_bags=2, executor=executor, n_jobs=2, progress_bar=True)
        out, err = capfd.readouterr()
        assert out == "" and "bags: 100%" in err and "2/2" in err and "bag/s" in err, executor


def test_engine_reports_a_job_the_executor_skipped():
    """An executor that forgets a job must not make its learner vanish."""
    import modalbag

    class Forgetful:
        def __init__(self, config, options):
            pass

        def execute(self, work):
            yield work.fit_here(work.jobs[0])

    class Plugin:
        @hookimpl
        def modalbag_register_executors(self, register):
            register("forgetful", Forgetful)

    catalog = modalbag.Catalog()
    catalog.register_plugin(Plugin(), name="forgetful-plugin")
    model = make_model(n_samples=150, catalog=catalog)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["neural"])
    model.train_ensemble(**{**RUN, "epochs": 2, "executor": "forgetful"})
    assert model.learners["bag_001"].error == "the executor returned no result for this learner"


def test_worker_lost_error_is_a_modalbag_error():
    from modalbag import ModalbagError

    assert issubclass(WorkerLostError, ModalbagError) and issubclass(NotPicklableError, ModalbagError)


def test_workers_dying_at_start_name_a_main_script_without_its_guard(tmp_path, monkeypatch):
    import sys
    import types

    from modalbag.plugins.executors.local import main_guard_hint

    script = tmp_path / "train.py"
    script.write_text("import modalbag\nmodel = modalbag.load_ensemble('run')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    hint = main_guard_hint()
    assert str(script) in hint and 'if __name__ == "__main__":' in hint and "executor='serial'" in hint
    script.write_text("import modalbag\nif __name__ == '__main__':\n    modalbag.load_ensemble('run')\n")
    assert main_guard_hint() == ""
    main.__file__ = None  # an interactive session or a notebook: nothing to say
    assert main_guard_hint() == ""
