"""What one failing plugin, a full disk or a second writer may not do: discard a trained run.

Each test reproduces a failure of issue 19 (a raising observing hook, a sink on a full disk, two runs
on one directory, a new run over a finished one, files left by a kill, a run directory that cannot
be written) and checks the trained ensemble survives it, or the error says what to do.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import structlog

from modalbag import (
    ArtifactError,
    RunDirectoryBusyError,
    StorageError,
    TrainingFailedError,
    hookimpl,
    load_ensemble,
)
from modalbag.io.artifacts import clean_temporaries
from modalbag.kernel.isolation import RunPluginManager
from modalbag.store import lock
from tests.conftest import FAST, make_model

QUICK = {**FAST, "epochs": 2}


def _model(plugins=(), n_bags: int = 3, trainers=("logistic",)):
    model = make_model(n_samples=200, plugins=list(plugins))
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(trainers=list(trainers), instantiate=False)
    return model


# -- hooks ---------------------------------------------------------------------------------------


class RaisesAtRunEnd:
    @hookimpl
    def modalbag_run_end(self, run, learners):
        raise RuntimeError("report server unreachable")


class FailsOneLearnerAndRaisesInFitError:
    """bag_001 fails by itself; this plugin's own fit_error hook then raises too."""

    @hookimpl
    def modalbag_fit_start(self, run, fit):
        if fit.spec.learner_id == "bag_001":
            raise ValueError("bad bag")

    @hookimpl
    def modalbag_fit_error(self, run, learner_id, error):
        raise RuntimeError("alerting failed")


def test_a_raising_run_end_hook_keeps_the_trained_run(tmp_path, held_out):
    model = _model([RaisesAtRunEnd()])
    with structlog.testing.capture_logs() as logs:
        trained = model.train_ensemble(**QUICK, run_dir=str(tmp_path / "run"))
    assert len(trained) == 3
    assert np.isfinite(model.predict_proba(held_out[0])).all()
    failures = [e for e in logs if e["event"] == "plugin.hook_failed"]
    assert len(failures) == 1 and failures[0]["hook"] == "modalbag_run_end"
    assert "report server unreachable" in failures[0]["error"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete"
    assert record["plugin_failures"][0]["hook"] == "modalbag_run_end"
    assert load_ensemble(tmp_path / "run").predict_proba(held_out[0]).shape == (len(held_out[1]), 3)


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_raising_fit_error_hook_fails_no_other_learner(executor, held_out):
    model = _model([FailsOneLearnerAndRaisesInFitError()])
    trained = model.train_ensemble(**QUICK, executor=executor, n_jobs=2 if executor == "local" else 1)
    assert set(trained) == {"bag_000", "bag_002"}
    assert "bad bag" in model.get_training_summary()["errors"]["bag_001"]
    assert np.isfinite(model.predict_proba(held_out[0])).all()


def test_a_behaviour_hook_still_fails_only_its_learner():
    """fit_start owns behaviour: its exception fails that learner (not isolated), never the run."""
    model = _model([FailsOneLearnerAndRaisesInFitError()])
    model.train_ensemble(**QUICK)
    assert model.get_training_summary()["learner_status"]["bag_001"] == "failed"


def test_the_jsonl_sink_on_a_full_disk_disables_itself_and_training_goes_on(tmp_path, monkeypatch, held_out):
    from modalbag.plugins.sinks import jsonl

    calls = []

    def full_disk(path, record, **kwargs):
        calls.append(record["type"])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jsonl, "append_line", full_disk)
    model = _model(n_bags=2, trainers=("neural",))
    with structlog.testing.capture_logs() as logs:
        trained = model.train_ensemble(**QUICK, run_dir=str(tmp_path / "run"), sinks=["jsonl"])
    assert len(trained) == 2
    assert len(calls) == 1  # disabled at its first failure: nothing else was attempted
    warnings = [e for e in logs if e["event"] == "plugin.hook_failed"]
    assert len(warnings) == 1 and warnings[0]["plugin"] == "sink.jsonl" and "No space left" in warnings[0]["error"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["plugin_failures"][0]["disabled"] is True
    assert np.isfinite(load_ensemble(tmp_path / "run").predict_proba(held_out[0])).all()


def test_observers_are_isolated_and_disabled_but_others_are_not():
    from modalbag.kernel import hookspecs

    seen = []

    class Observer:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            seen.append("observer")
            raise OSError(errno.EROFS, "Read-only file system")

    class Behaviour:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            seen.append("behaviour")

    pm = RunPluginManager("modalbag")
    pm.add_hookspecs(hookspecs)
    pm.register(Behaviour(), name="behaviour")
    pm.register_observer(Observer(), name="sink.observer")
    pm.hook.modalbag_fit_start(run=None, fit=None)
    pm.hook.modalbag_fit_start(run=None, fit=None)
    assert seen == ["observer", "behaviour", "behaviour"]  # last registered first; disabled after one failure
    [failure] = pm.failures
    assert (failure.plugin, failure.disabled) == ("sink.observer", True)

    class RaisingBehaviour:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            raise ValueError("owned behaviour")

    pm.register(RaisingBehaviour(), name="raising")
    with pytest.raises(ValueError, match="owned behaviour"):
        pm.hook.modalbag_fit_start(run=None, fit=None)


# -- the run directory ---------------------------------------------------------------------------


def test_a_second_process_cannot_claim_a_locked_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from modalbag.store import lock
        lock.acquire({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        model = _model(n_bags=1)
        with pytest.raises(RunDirectoryBusyError, match=f"pid {holder.pid}"):
            model.train_ensemble(**QUICK, run_dir=str(run_dir))
        assert not (run_dir / "run.json").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()
    _model(n_bags=1).train_ensemble(**QUICK, run_dir=str(run_dir))  # the lock died with its holder
    assert (run_dir / "run.json").exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with lock.run_directory_lock(tmp_path), lock.run_directory_lock(tmp_path):
        assert lock.held_here(tmp_path)
    assert not lock.held_here(tmp_path)


def test_a_new_run_over_a_finished_one_never_serves_the_old_export(tmp_path, held_out):
    run_dir = tmp_path / "run"
    _model(n_bags=1).train_ensemble(**QUICK, run_dir=str(run_dir))
    assert (run_dir / "export").is_dir()

    class EveryLearnerFails:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            raise RuntimeError("killed")

    with pytest.raises(TrainingFailedError):
        _model([EveryLearnerFails()], n_bags=1).train_ensemble(**QUICK, run_dir=str(run_dir))
    with pytest.raises(ArtifactError, match="no export yet"):
        load_ensemble(run_dir)
    assert (run_dir / "export.previous" / "manifest.json").is_file()  # set aside, not deleted


def test_files_left_by_a_killed_writer_are_cleaned_and_a_half_swapped_export_is_restored(tmp_path):
    (tmp_path / ".run.json.k3j_9x.tmp").write_text("{")
    (tmp_path / "learners").mkdir()
    (tmp_path / "learners" / ".model.safetensors.ab12cd34.tmp").write_bytes(b"\0")
    (tmp_path / ".export.tmp-0123abcd").mkdir()
    (tmp_path / ".export.tmp-0123abcd" / "half.json").write_text("{")
    (tmp_path / ".learner.old-89abcdef").mkdir()  # killed between the two renames: the target is gone
    (tmp_path / ".learner.old-89abcdef" / "learner.json").write_text("{}")
    (tmp_path / "run.json").write_text("{}")
    touched = clean_temporaries(tmp_path)
    assert len(touched) == 4
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["learner", "learner/learner.json", "learners", "run.json"]


def test_a_run_directory_that_cannot_be_created_is_a_storage_error_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    model = _model(n_bags=1)
    started = time.perf_counter()
    with pytest.raises(StorageError, match="a-file") as caught:
        model.train_ensemble(**QUICK, run_dir=str(blocker / "run"))
    assert "writable file system" in str(caught.value)
    assert model.learners is None or not model.learners  # nothing trained
    assert time.perf_counter() - started < 30


def test_a_full_disk_at_export_keeps_the_trained_ensemble_in_memory(tmp_path, monkeypatch, held_out):
    from modalbag.store.persistence import ModelStore

    def full(self, directory):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ModelStore, "export_training_artifacts", full)
    model = _model(n_bags=2)
    with pytest.raises(StorageError, match="ready in memory") as caught:
        model.train_ensemble(**QUICK, run_dir=str(tmp_path / "run"))
    assert caught.value.errno == errno.ENOSPC
    assert np.isfinite(model.predict_proba(held_out[0])).all()


def test_a_run_record_that_stops_being_writable_does_not_stop_training(tmp_path, monkeypatch, held_out):
    from modalbag.store.runrecord import RunRecord

    real_write, writes = RunRecord.write, []

    def flaky(self):
        writes.append(1)
        if len(writes) > 1:  # the start is recorded, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self)

    monkeypatch.setattr(RunRecord, "write", flaky)
    model = _model(n_bags=2)
    with structlog.testing.capture_logs() as logs, pytest.raises(StorageError, match="ready in memory"):
        model.train_ensemble(**QUICK, run_dir=str(tmp_path / "run"))
    assert sum(e["event"] == "run.record_not_written" for e in logs) == 1  # said once
    assert len(model.learners) == 2 and all(r.ok for r in model.learners.values())
    assert np.isfinite(model.predict_proba(held_out[0])).all()
    assert os.path.exists(tmp_path / "run" / "run.json")


# -- seeds and names -----------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["neural", "random_forest"])
def test_the_training_seed_seeds_training_and_the_ensemble_seed_keeps_the_bags(trainer, held_out):
    def train(seed: int):
        model = _model(n_bags=2, trainers=(trainer,))
        model.train_ensemble(**QUICK, random_state=seed)
        return model

    three, four, again = train(3), train(4), train(3)
    assert [b.rows.tolist() for b in three.bags] == [b.rows.tolist() for b in four.bags]  # create_ensemble's seed
    np.testing.assert_array_equal(three.predict_proba(held_out[0]), again.predict_proba(held_out[0]))
    assert not np.array_equal(three.predict_proba(held_out[0]), four.predict_proba(held_out[0]))


@pytest.mark.parametrize("name", ["image.rgb", "", 7])
def test_a_modality_name_pytorch_cannot_hold_is_refused_with_the_data(name):
    from modalbag import DataError, MultimodalDataset

    with pytest.raises(DataError, match="modality name"):
        MultimodalDataset.from_arrays({name: np.zeros((8, 3)), "other": np.ones((8, 2))})


# -- what a crafted export may name, and read-only places ------------------------------------------


@pytest.mark.parametrize("folder", ["../outside", "/tmp/outside", "learners/../../outside"])
def test_an_export_naming_a_learner_folder_outside_itself_is_refused(tmp_path, folder):
    import shutil

    run_dir = tmp_path / "run"
    _model(n_bags=1).train_ensemble(**QUICK, run_dir=str(run_dir))
    export = run_dir / "export"
    manifest = json.loads((export / "manifest.json").read_text())
    entry = manifest["learners"][0]
    target = (export / folder).resolve() if not folder.startswith("/") else tmp_path / "abs-outside"
    shutil.copytree(export / entry["folder"], target, dirs_exist_ok=True)
    entry["folder"] = folder if not folder.startswith("/") else str(target)
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside|not a path inside"):
        load_ensemble(export)


def test_report_on_a_read_only_run_prints_the_summary_and_says_where_to_write(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from modalbag.api.model import MultiModalEnsembleModel
    from modalbag.cli.app import cli

    run_dir = tmp_path / "run"
    _model(n_bags=1).train_ensemble(**QUICK, run_dir=str(run_dir))
    assert "launch" not in json.loads((run_dir / "run.json").read_text())  # only `modalbag train` records one

    def read_only(self, path=None, data=None, labels=None):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(MultiModalEnsembleModel, "write_html_report", read_only)
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--json"])
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["summary"]["total_learners"] == 1 and printed["html_report"] is None
    assert "--html PATH" in printed["html_report_error"] and "Read-only" in result.stderr


# -- labels and files ------------------------------------------------------------------------------


def test_negative_integer_labels_are_classes_like_any_other():
    from modalbag.data.dataset import encode_labels

    encoded, classes = encode_labels([-1, 1, 1, -1], "classification")
    assert encoded.tolist() == [0, 1, 1, 0] and classes.tolist() == [-1, 1]
    model = make_model(n_samples=120)
    model.dataset.labels = np.where(model.dataset.labels == 0, -1, model.dataset.labels)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble(**QUICK)
    assert -1 in model.classes_.tolist() and set(np.unique(model.predict(model.synthetic_task.sample(30)[0]))) <= set(
        model.classes_.tolist())


@pytest.mark.parametrize("labels,message", [([1, "a", None], "missing"), ([1, "a", 2], "mix types")])
def test_missing_or_mixed_type_labels_are_data_errors(labels, message):
    from modalbag import DataError
    from modalbag.data.dataset import encode_labels

    with pytest.raises(DataError, match=message):
        encode_labels(labels, "classification")


def test_a_headerless_csv_whose_first_row_has_a_stray_word_is_not_read_as_a_header(tmp_path):
    from modalbag import DataError
    from modalbag.io.files import _load_delimited

    (tmp_path / "data.csv").write_text("abc,1.0\n2,3\n")
    with pytest.raises(DataError, match="row 1, column 1: 'abc' is not a number"):
        _load_delimited(tmp_path / "data.csv", "meta", None)
    (tmp_path / "named.csv").write_text("height,,weight\n2,,3\n")
    assert _load_delimited(tmp_path / "named.csv", "meta", None).shape == (1, 3)


def test_files_of_a_run_and_its_report_follow_the_umask_like_any_other_file(tmp_path):
    import stat

    run_dir = tmp_path / "run"
    model = _model(n_bags=1)
    model.train_ensemble(**QUICK, run_dir=str(run_dir))
    model.write_html_report(run_dir / "report.html")
    (tmp_path / "plain").write_text("a")
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    modes = {str(p.relative_to(run_dir)): stat.S_IMODE(p.stat().st_mode) for p in run_dir.rglob("*") if p.is_file()}
    assert {"run.json", "report.html", "export/manifest.json"} <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != expected} == {}
