"""Metrics sinks: each sink's written data is read back and compared with the run's own records.

W&B runs offline with its files under the test's temporary directory: no test needs a network.
"""

from __future__ import annotations

import io
import re
import json
import multiprocessing
import struct
from pathlib import Path

import attrs
import pytest

from modalbag import ConfigError, hookimpl
from modalbag.kernel.runlog import (
    RECORDS_FILE,
    append_line,
    end_torn_line,
    read_records,
    record_from_entry,
)
from tests.conftest import FAST, make_model

TINY = {**FAST, "epochs": 3, "early_stopping_patience": 0, "batch_size": 32}


def _train(run_dir: Path, n_bags: int = 2, plugins=(), **config):
    model = make_model(n_samples=160, plugins=plugins)
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**TINY, "run_dir": str(run_dir), **config})
    return model


@pytest.fixture(scope="module")
def sink_run(tmp_path_factory):
    """One small run with every sink on and step logging every 2 steps."""
    root = tmp_path_factory.mktemp("sinks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(root))
        mp.setenv("WANDB_SILENT", "true")
        model = _train(root / "run", log_interval=2, tensorboard_logging=True, wandb_logging=True,
                       wandb_mode="offline", wandb_system_metrics=False)
    return model, root / "run"


# -- jsonl ----------------------------------------------------------------------------------------


def test_jsonl_record_holds_every_epoch_step_and_end(sink_run):
    model, run_dir = sink_run
    lines = read_records(run_dir / RECORDS_FILE)
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    assert lines[0]["config"]["epochs"] == 3 and lines[0]["run_id"] == model.run_id
    assert "sink.jsonl" in lines[0]["plugins"] and "sink.tensorboard" in lines[0]["plugins"]
    for lid, learner in model.learners.items():
        epochs = [record_from_entry(x) for x in lines if x["type"] == "epoch" and x["learner_id"] == lid]
        assert epochs == learner.records  # every field, exactly (JSON floats round-trip)
        steps = [x for x in lines if x["type"] == "step" and x["learner_id"] == lid]
        if learner.spec.trainer == "neural":
            assert steps and all(x["step"] % 2 == 0 for x in steps)
            assert [x["step"] for x in steps] == sorted(x["step"] for x in steps)
            assert {"loss", "epoch_loss", "learning_rate", "grad_norm"} <= set(steps[0])
        end = [x for x in lines if x["type"] == "learner_end" and x["learner_id"] == lid]
        assert len(end) == 1 and end[0]["epochs"] == len(learner.records)
    summary = lines[-1]["learners"]
    assert {lid: s["validation"] for lid, s in summary.items()} == {
        lid: dict(r.validation) for lid, r in model.learners.items()}


def test_read_records_skips_a_line_cut_by_a_crash(tmp_path):
    path = tmp_path / RECORDS_FILE
    append_line(path, {"type": "a", "x": 1.5})
    append_line(path, {"type": "b", "x": float("nan")}, sync=True)  # JSON has no NaN: written as null
    with open(path, "ab") as fh:
        fh.write(b'{"type": "epoch", "train_lo')  # the process died mid-line
    assert read_records(path) == [{"type": "a", "x": 1.5}, {"type": "b", "x": None}]


def test_a_resumed_run_appends_after_a_cut_line_without_losing_its_own(tmp_path):
    path = tmp_path / RECORDS_FILE
    assert not end_torn_line(path)  # no file yet
    append_line(path, {"type": "a"})
    assert not end_torn_line(path)  # ends in a newline already
    with open(path, "ab") as fh:
        fh.write(b'{"type": "epoch", "train_lo')  # the process died mid-line
    assert end_torn_line(path)
    append_line(path, {"type": "run_start", "resumed": True})  # the resumed run's first line
    assert read_records(path) == [{"type": "a"}, {"type": "run_start", "resumed": True}]


def _append_many(path: str, tag: int, n: int) -> None:
    for i in range(n):
        append_line(path, {"type": "step", "writer": tag, "i": i, "pad": "x" * 300})


def test_processes_appending_at_once_never_interleave_lines(tmp_path):
    path = tmp_path / RECORDS_FILE
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), tag, 200)) for tag in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = read_records(path)
    assert len(lines) == 600
    for tag in range(3):
        assert [x["i"] for x in lines if x["writer"] == tag] == list(range(200))


def test_jsonl_from_worker_processes(tmp_path):
    """Two learners trained side by side in worker processes append to one record."""
    model = _train(tmp_path / "run", epochs=2, n_jobs=2, executor="local", log_interval=0)
    lines = read_records(tmp_path / "run" / RECORDS_FILE)
    for lid, learner in model.learners.items():
        assert [record_from_entry(x) for x in lines if x["type"] == "epoch" and x["learner_id"] == lid] == learner.records
    assert [x["type"] for x in lines].count("learner_end") == 2


def test_jsonl_is_active_exactly_when_run_dir_is_set(tmp_path):
    from modalbag.config.training import TrainingConfig
    from modalbag.kernel.components import wanted_components

    assert ("run_dir", "sink", "jsonl") in wanted_components(TrainingConfig(run_dir=str(tmp_path)))
    assert not [w for w in wanted_components(TrainingConfig()) if w[1] == "sink"]


@pytest.mark.parametrize("option", ["tensorboard_logging", "wandb_logging", "profile_training"])
def test_sinks_that_write_files_need_a_run_dir(option):
    from modalbag.config.training import TrainingConfig

    with pytest.raises(ConfigError, match=f"{option} writes under the run directory.*set run_dir"):
        TrainingConfig.from_dict({option: True})


@pytest.mark.parametrize("option", ["tensorboard_logging", "profile_training"])
def test_train_ensemble_gives_a_writing_sink_a_run_dir_in_the_working_directory(option, tmp_path, monkeypatch):
    """The spec turns TensorBoard on without a run_dir: runs/run-<time> in the working directory, as
    TensorBoard's SummaryWriter does, and the run's files land there."""
    monkeypatch.chdir(tmp_path)
    model = make_model(n_samples=60)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**TINY, "epochs": 1, option: True})
    run_dir = Path(model.training_config.run_dir)
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("run-")
    assert (run_dir / RECORDS_FILE).is_file() and len(list(run_dir.iterdir())) > 1


# -- the log_interval hook --------------------------------------------------------------------------


@attrs.define
class StepListener:
    calls: list = attrs.field(factory=list)

    @hookimpl
    def modalbag_log_step(self, run, fit, step, values):
        self.calls.append((fit.spec.learner_id, step, dict(values)))


def test_modalbag_log_step_every_log_interval_steps(tmp_path, capsys):
    listener = StepListener()
    model = make_model(n_samples=160, plugins=[listener])
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**TINY, "log_interval": 3})
    steps = [s for _, s, _ in listener.calls]
    batches_per_epoch = -(-len(model.bags[0].rows) * 8 // 10 // 32)  # about 4: 160 rows, 20% validation
    assert steps == list(range(3, steps[-1] + 1, 3)) and len(steps) >= (3 * batches_per_epoch) // 3 - 1
    values = listener.calls[0][2]
    assert values["loss"] > 0 and values["learning_rate"] > 0 and values["samples_per_second"] > 0
    listener.calls.clear()
    capsys.readouterr()
    model.train_ensemble(**{**TINY, "log_interval": 0, "progress_bar": True})
    assert listener.calls == []
    err = capsys.readouterr().err  # a bar over the in-process learner's epochs, under the bags' bar
    learner = model.learner_specs[0].learner_id
    assert re.search(rf"{learner}: .*/3 .*epoch/s", err) and re.search(r"bags: 100%.* 1/1 ", err)


def test_progress_bar_only_when_asked_or_verbose_on_a_terminal():
    from modalbag.config.training import TrainingConfig
    from modalbag.engine.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert ProgressBar.wanted(TrainingConfig(verbose=True), Terminal())
    assert not ProgressBar.wanted(TrainingConfig(verbose=True), io.StringIO())  # a file or a pipe
    assert not ProgressBar.wanted(TrainingConfig(), Terminal())
    assert ProgressBar.wanted(TrainingConfig(progress_bar=True), io.StringIO())


# -- TensorBoard ----------------------------------------------------------------------------------


def test_tensorboard_event_files_hold_the_records(sink_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, run_dir = sink_run
    for lid, learner in model.learners.items():
        events = EventAccumulator(str(run_dir / "tensorboard" / lid))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        expected = learner.records[0].scalars()
        assert set(expected) <= tags
        for tag in ("loss/train", "loss/val", "metrics/accuracy", "perf/memory_mb"):
            logged = [(e.step, e.value) for e in events.Scalars(tag)]
            wanted = [(r.epoch, r.scalars()[tag]) for r in learner.records]
            assert [s for s, _ in logged] == [s for s, _ in wanted]
            assert [v for _, v in logged] == pytest.approx([v for _, v in wanted], rel=1e-6)
        if learner.spec.trainer == "neural":
            assert [e.step for e in events.Scalars("step/loss")][:2] == [2, 4]
    summary = EventAccumulator(str(run_dir / "tensorboard" / "run"))
    summary.Reload()
    accuracy = [e.value for e in summary.Scalars("validation/accuracy")]
    assert accuracy == pytest.approx([r.validation["accuracy"] for r in model.learners.values()], rel=1e-6)


# -- W&B (offline) --------------------------------------------------------------------------------

_BLOCK = 32768


def _wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file: a 7-byte W&B header, then LevelDB-log framing
    (32 KiB blocks; each chunk: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # block trailer too small for a header: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk)
            records.append(record)
            pending = b""
        elif kind in (2, 3):
            pending += chunk
        elif kind == 0:
            break
    return records


def _wandb_history(run_dir: Path) -> list[dict]:
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert files, "no offline W&B run was written"
    rows = []
    for record in _wandb_records(files[-1]):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.nested_key[0] if item.nested_key else item.key: json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def test_wandb_offline_run_holds_the_records(sink_run):
    model, run_dir = sink_run
    history = _wandb_history(run_dir)
    wandb_id = (run_dir / "wandb" / "run-id").read_text().strip()
    assert wandb_id == model.run_id
    for lid, learner in model.learners.items():
        rows = [r for r in history if f"{lid}/epoch" in r]
        assert [r[f"{lid}/epoch"] for r in rows] == [rec.epoch for rec in learner.records]
        for row, rec in zip(rows, learner.records, strict=True):
            assert row[f"{lid}/loss/train"] == pytest.approx(rec.train_loss)
            assert row.get(f"{lid}/metrics/accuracy") == pytest.approx(rec.accuracy)
        if learner.spec.trainer == "neural":
            assert any(f"steps/{lid}/loss" in r for r in history)


def test_a_resumed_run_continues_the_same_wandb_run(sink_run, monkeypatch):
    model, run_dir = sink_run
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    again = make_model(n_samples=80)
    again.create_ensemble(n_bags=1, random_state=1)
    again.select_base_learners(trainers=["neural"], instantiate=False)
    again.train_ensemble(**{**TINY, "epochs": 1, "run_dir": str(run_dir), "wandb_logging": True,
                            "wandb_mode": "offline", "wandb_system_metrics": False})
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) >= 1 and all(p.name.endswith(f"-{model.run_id}") for p in runs)
    assert (run_dir / "wandb" / "run-id").read_text().strip() == model.run_id != again.run_id


# -- profile_training -----------------------------------------------------------------------------


def test_profile_training_writes_a_chrome_trace(tmp_path):
    model = make_model(n_samples=200)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**TINY, "epochs": 1, "batch_size": 16, "run_dir": str(tmp_path), "profile_training": True,
                            "log_interval": 0})
    lid = next(iter(model.learners))
    trace = json.loads((tmp_path / "profiler" / f"{lid}.trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any(n.startswith("aten::") for n in names)  # torch operators were recorded
    assert "Self CPU" in (tmp_path / "profiler" / f"{lid}.ops.txt").read_text()


class _FakeWandbRun:
    id = "fake"


@pytest.fixture
def wandb_init(monkeypatch, tmp_path):
    """``wandb.init``'s arguments, with no credentials anywhere (no key, no netrc, no mode)."""
    wandb = pytest.importorskip("wandb")
    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs) or _FakeWandbRun())
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return calls


def _start_wandb(run_dir: Path, **options):
    from types import SimpleNamespace

    from modalbag import TrainingConfig
    from modalbag.plugins.sinks.wandb import WandbOptions, WandbSink

    config = TrainingConfig(run_dir=str(run_dir))
    sink = WandbSink(config, WandbOptions(**options))
    sink.modalbag_run_start(run=SimpleNamespace(run_id="r1", config=config))


def test_wandb_without_an_api_key_logs_offline_and_says_how_to_sync(wandb_init, tmp_path):
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        _start_wandb(tmp_path / "run")
    assert wandb_init[-1]["mode"] == "offline"
    note = [e for e in logs if e["event"] == "wandb.offline"]
    assert note and note[0]["log_level"] == "warning"
    assert note[0]["upload"] == f"wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*"


def test_wandb_with_a_key_or_a_chosen_mode_is_left_to_wandb(wandb_init, tmp_path, monkeypatch):
    _start_wandb(tmp_path / "a", wandb_mode="online")  # asked for: kept, even without a key
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _start_wandb(tmp_path / "b")
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # what wandb login writes
    _start_wandb(tmp_path / "c")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    _start_wandb(tmp_path / "d")
    assert [call["mode"] for call in wandb_init] == ["online", None, None, None]
