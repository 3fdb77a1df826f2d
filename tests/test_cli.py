"""The ``modalbag`` command line: exit codes, messages, plugin listing, config files, train/report/resume."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import modalbag
from modalbag.api.model import TrainingFailedError
from modalbag.api.run_config import (
    apply_overrides,
    check_run_config,
    load_run_config,
    parse_override,
)
from modalbag.cli import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, cli
from modalbag.cli.app import exit_code
from modalbag.cli.runs import default_run_dir, latest_run_dir
from modalbag.errors import ConfigError, DataError, PluginLoadError

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "configs" / "quickstart.toml"
#: Overrides that make the quick-start config train in seconds.
TINY = ["epochs=2", "ensemble.n_bags=2", "data.synthetic.n_samples=120", "learners.trainers=[\"neural\"]",
        "warmup_epochs=0"]


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# -- imports ---------------------------------------------------------------------------------------


def _torch_after(commands: list[list[str]]) -> dict[str, object]:
    """Run each CLI command in one fresh interpreter; report exit codes and whether torch got imported."""
    code = textwrap.dedent(f"""
        import json, sys
        from click.testing import CliRunner
        from modalbag.cli import cli
        out = {{}}
        for args in {commands!r}:
            result = CliRunner().invoke(cli, args)
            out[" ".join(args)] = [result.exit_code, "torch" in sys.modules]
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def torch_imported():
    """Whether each command imported torch, all run in one fresh interpreter (validate last)."""
    return _torch_after([["--help"], ["train", "--help"], ["plugins"], ["plugins", "--kind", "optimizer", "--json"],
                         ["validate", str(QUICKSTART)]])


def test_help_and_plugin_listing_do_not_import_torch(torch_imported):
    assert {k: v for k, v in torch_imported.items() if not k.startswith("validate")} == {
        "--help": [0, False], "train --help": [0, False], "plugins": [0, False],
        "plugins --kind optimizer --json": [0, False]}


def test_validate_does_not_import_torch(torch_imported):
    assert torch_imported[f"validate {QUICKSTART}"] == [0, False]


# -- exit codes and error messages ------------------------------------------------------------------


def test_exit_codes_separate_input_errors_from_runtime_failures():
    assert exit_code(ConfigError("x")) == EXIT_CONFIG == 2
    assert exit_code(DataError("x")) == EXIT_CONFIG
    assert exit_code(TrainingFailedError("x")) == EXIT_RUNTIME == 1
    assert exit_code(PluginLoadError("optimizer.x", "dist", ImportError("boom"))) == EXIT_RUNTIME


def test_unknown_command_and_missing_file_are_usage_errors(tmp_path):
    result = CliRunner().invoke(cli, ["trian"])
    assert result.exit_code == 2 and "No such command 'trian'" in result.stderr
    result = invoke("validate", tmp_path / "nope.toml")
    assert result.exit_code == EXIT_CONFIG
    assert result.stderr.startswith("Error: ") and "config file not found" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_runtime_failure_exits_1_without_traceback_unless_debug(monkeypatch):
    def fail(self, **kwargs):
        raise TrainingFailedError("every learner failed:\n  bag_000: boom")

    monkeypatch.setattr(modalbag.RunConfig, "train", fail)
    result = invoke("train", QUICKSTART, "--run-dir", "unused")
    assert result.exit_code == EXIT_RUNTIME
    assert "Error: every learner failed" in result.stderr and "Traceback" not in result.stderr
    result = invoke("--debug", "train", QUICKSTART, "--run-dir", "unused")
    assert result.exit_code == EXIT_RUNTIME and "Traceback" in result.stderr and "TrainingFailedError" in result.stderr


# -- validate ----------------------------------------------------------------------------------------


BAD = """
[data]
labels = "labels.npy"
[data.modalities.text]
path = "text.npy"
type = "txt"
[ensemble]
n_bag = 3
[learners]
trainers = ["nueral"]
[training]
epoch = 3
batch_size = 0
[extra]
"""


def test_validate_reports_every_issue_at_once_naming_each_key(tmp_path):
    (tmp_path / "bad.toml").write_text(BAD, encoding="utf-8")
    result = invoke("validate", tmp_path / "bad.toml")
    assert result.exit_code == EXIT_CONFIG and result.stdout == ""
    err = result.stderr
    for expected in ("extra: unknown table", "data.modalities.text.path: file not found",
                     "data.modalities.text.type: must be one of tabular, text, image, sequence, got 'txt'",
                     "data.labels.path: file not found", "ensemble.n_bag: unknown key; did you mean 'n_bags'?",
                     "learners.trainers: nueral: unknown trainer; did you mean 'neural'?",
                     "training.epoch: unknown configuration key 'epoch'; did you mean 'epochs'?",
                     "training.batch_size: batch_size must be > 0, got 0"):
        assert expected in err, expected
    assert err.count("\n  - ") == 8 and "Traceback" not in err


def test_validate_accepts_each_example_and_overrides(tmp_path):
    result = invoke("validate", QUICKSTART, "--set", "epochs=7", "--set", "ensemble.n_bags=4")
    assert result.exit_code == EXIT_OK, result.stderr
    assert "valid (classification; 3 modalities" in result.stdout and "4 bags; 7 epochs" in result.stdout
    result = invoke("validate", QUICKSTART, "--set", "optimizer_type=adam")
    assert result.exit_code == EXIT_CONFIG and "did you mean 'adamw'?" in result.stderr


def _write_files(tmp_path: Path, n: int = 60, labels_rows: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "text.npy", rng.normal(size=(n, 8)).astype(np.float32))
    np.save(data / "meta.npy", rng.normal(size=(n, 3)).astype(np.float32))
    np.save(data / "labels.npy", rng.integers(0, 2, labels_rows or n))
    config = tmp_path / "conf" / "files.toml"
    config.parent.mkdir()
    config.write_text(textwrap.dedent("""
        [data]
        labels = "../data/labels.npy"
        [data.modalities.text]
        path = "../data/text.npy"
        type = "text"
        [data.modalities]
        meta = "../data/meta.npy"
        [training]
        epochs = 2
    """), encoding="utf-8")
    return config


def test_file_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    config = _write_files(tmp_path)
    monkeypatch.chdir(tmp_path / "data")  # not the config's folder
    run_config = load_run_config(config)
    assert [f.path for f in run_config.files] == [(tmp_path / "conf/../data/text.npy"),
                                                  (tmp_path / "conf/../data/meta.npy")]
    assert [f.type for f in run_config.files] == ["text", None]
    model = run_config.build_model()
    assert model.dataset.specs["text"].type == "text" and model.dataset.specs["meta"].type == "tabular"
    assert model.dataset.n_samples == 60


def test_validate_reads_the_data_and_reports_mismatched_rows(tmp_path):
    config = _write_files(tmp_path, labels_rows=59)
    result = invoke("validate", config)
    assert result.exit_code == EXIT_CONFIG
    assert "labels have 59 rows but the modalities have 60 samples" in result.stderr
    assert invoke("validate", config, "--no-data").exit_code == EXIT_OK


def test_synthetic_section_is_checked():
    _, issues = check_run_config({"data": {"synthetic": {"n_samples": 5, "modalities": {
        "a": {"shape": [4, 4], "type": "text"}, "b": {"shape": 0, "type": "tabular"}, "c": {"shape": 3}}}}})
    assert "data.synthetic.n_samples: must be an integer >= 10, got 5" in issues
    assert "data.synthetic.modalities.b.shape: must be a positive integer or a list of them, got 0" in issues
    assert any(i.startswith("data.synthetic.modalities.c: must be {shape") for i in issues)
    _, issues = check_run_config({"data": {"synthetic": {"modalities": {"a": {"shape": [4, 4], "type": "text"}}}}})
    assert issues == ["data.synthetic.modalities: synthetic text modality 'a' needs one dimension, got (4, 4)"]


# -- overrides ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("training.epochs=3", (("training", "epochs"), 3)),
    ("epochs=3", (("training", "epochs"), 3)),
    ("learning_rate=1e-3", (("training", "learning_rate"), 0.001)),
    ("optimizer_type=sgd", (("training", "optimizer_type"), "sgd")),
    ("optimizer_type=\"sgd\"", (("training", "optimizer_type"), "sgd")),
    ("enable_denoising=false", (("training", "enable_denoising"), False)),
    ("denoising_objectives=[\"alignment\", \"prediction\"]", (("training", "denoising_objectives"),
                                                             ["alignment", "prediction"])),
    ("ensemble.n_bags = 4", (("ensemble", "n_bags"), 4)),
    ("data.synthetic.modalities.x={shape = [3, 8, 8], type = \"image\"}",
     (("data", "synthetic", "modalities", "x"), {"shape": [3, 8, 8], "type": "image"})),
])
def test_override_values_are_toml(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["epochs", "=3", "training..epochs=3"])
def test_malformed_override_is_a_config_error(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_overrides_create_tables_and_leave_the_input_alone():
    data = {"training": {"epochs": 5}}
    out = apply_overrides(data, ["epochs=2", "ensemble.n_bags=3"])
    assert out == {"training": {"epochs": 2}, "ensemble": {"n_bags": 3}} and data == {"training": {"epochs": 5}}
    with pytest.raises(ConfigError, match="training.epochs is a value, not a table"):
        apply_overrides(data, ["training.epochs.x=1"])


# -- plugins ---------------------------------------------------------------------------------------


def test_plugins_lists_metadata_without_loading():
    result = invoke("plugins", "--kind", "optimizer")
    assert result.exit_code == EXIT_OK
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "distribution", "version", "status"]
    assert [line.split()[:3] for line in lines[1:]] == [["adamw", "optimizer", "modalbag"],
                                                        ["radam", "optimizer", "modalbag"],
                                                        ["sgd", "optimizer", "modalbag"]]
    assert all(line.endswith("not loaded") for line in lines[1:])
    rows = json.loads(invoke("plugins", "--json").stdout)
    assert {(r["kind"], r["name"]) for r in rows} >= {("trainer", "neural"), ("objective", "variance")}
    variance = next(r for r in rows if r["name"] == "variance")
    assert variance["distribution"] == "modalbag-example-objective" and variance["module"] == "modalbag_variance"


def test_plugins_verbose_loads_each_and_shows_options():
    result = invoke("plugins", "--kind", "optimizer", "--verbose")
    assert result.exit_code == EXIT_OK
    assert [line.split()[-1] for line in result.stdout.splitlines()[1:4]] == ["ok", "ok", "ok"]
    assert "optimizer.sgd (modalbag" in result.stdout and "momentum=" in result.stdout


def test_a_broken_plugin_is_reported_not_fatal(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[modalbag]\noptimizer.broken = broken_plugin_mod\n", encoding="utf-8")
    (tmp_path / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("modalbag.kernel.registry._DEFAULT", None)  # rescan with the fake distribution
    listed = invoke("plugins", "--kind", "optimizer")
    assert listed.exit_code == EXIT_OK and "broken  optimizer  broken-plugin  1.0      not loaded" in listed.stdout
    result = invoke("plugins", "--kind", "optimizer", "--verbose")
    assert result.exit_code == EXIT_RUNTIME
    broken = next(line for line in result.stdout.splitlines() if line.startswith("broken"))
    assert "failed: plugin 'optimizer.broken' from distribution 'broken-plugin' failed to load: " \
           "ImportError: needs libfoo" in broken
    assert "adamw" in result.stdout and "1 plugin(s) failed to load: broken" in result.stderr


# -- run directories -------------------------------------------------------------------------------


def test_default_run_dir_is_named_after_the_config_and_never_reused(tmp_path):
    first = default_run_dir("medical", tmp_path)
    assert first.parent == tmp_path / "runs" and first.name.startswith("medical-")
    first.mkdir(parents=True)
    second = default_run_dir("medical", tmp_path)
    assert second != first and second.name.startswith(first.name)
    assert latest_run_dir("medical", tmp_path) == first and latest_run_dir("finance", tmp_path) is None


def test_resume_without_a_run_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", QUICKSTART, "--resume")
    assert result.exit_code == EXIT_CONFIG and "no runs/quickstart-* directory here to resume" in result.stderr


# -- end to end: train, report, resume --------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """``modalbag --log-json train`` on the quick-start example, shrunk to seconds."""
    run_dir = tmp_path_factory.mktemp("cli") / "runs" / "first"
    args = ["--log-json", "train", str(QUICKSTART), "--run-dir", str(run_dir), "--json"]
    for override in TINY:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return run_dir, result


def test_train_writes_the_run_and_prints_the_summary(trained_run):
    run_dir, result = trained_run
    assert result.exit_code == EXIT_OK, result.stderr
    out = json.loads(result.stdout)
    summary = out["summary"]
    assert out["run_dir"] == str(run_dir)
    assert summary["total_learners"] == 2 and summary["trained"] == 2
    assert summary["epochs_trained"] == {"bag_000": 2, "bag_001": 2}  # epochs=2 from --set
    assert run_dir.is_dir()
    events = [json.loads(line) for line in result.stderr.splitlines()]  # --log-json: one JSON object a line
    names = [e["event"] for e in events]
    assert "cli.train" in names and "run.start" in names and "run.end" in names
    assert all({"level", "logger", "timestamp"} <= set(e) for e in events)


def test_train_records_the_run_directory(trained_run):
    run_dir, _ = trained_run
    assert (run_dir / "run.json").is_file() and (run_dir / "records.jsonl").is_file()
    assert (run_dir / "export").is_dir()


def test_report_prints_the_summary_and_writes_html(trained_run):
    run_dir, trained = trained_run
    result = invoke("report", run_dir)
    assert result.exit_code == EXIT_OK, result.stderr
    summary = json.loads(trained.stdout)["summary"]
    assert f"run {summary['run_id']} (classification): 2 learners, 2 trained, 0 failed" in result.stdout
    html = run_dir / "report.html"
    assert f"HTML report: {html}" in result.stdout
    assert html.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    as_json = json.loads(invoke("report", run_dir, "--json", "--html", run_dir / "r2.html").stdout)
    assert as_json["summary"]["learner_performance"] == summary["learner_performance"]
    assert (run_dir / "r2.html").is_file()


def test_report_of_a_missing_directory_is_a_usage_error(tmp_path):
    result = invoke("report", tmp_path / "nothing")
    assert result.exit_code == EXIT_CONFIG and "run directory not found" in result.stderr


def test_resume_continues_the_recorded_run(trained_run):
    run_dir, trained = trained_run
    first = json.loads(trained.stdout)["summary"]
    result = invoke("train", QUICKSTART, "--run-dir", run_dir, "--resume", "--json", *[a for o in TINY for a in
                                                                                       ("--set", o)])
    assert result.exit_code == EXIT_OK, result.stderr
    resumed = json.loads(result.stdout)["summary"]
    # every learner had finished: resuming loads them from the record instead of training again
    assert resumed["run_id"] == first["run_id"]
    assert resumed["learner_performance"] == first["learner_performance"]
    assert resumed["epochs_trained"] == first["epochs_trained"]
    changed = invoke("train", QUICKSTART, "--run-dir", run_dir, "--resume", *[a for o in TINY[:-1] for a in
                                                                              ("--set", o)], "--set", "warmup_epochs=1")
    assert changed.exit_code == EXIT_CONFIG and "warmup_epochs" in changed.stderr


def test_resume_trains_only_what_an_interrupted_run_left(trained_run, tmp_path, monkeypatch):
    run_dir, trained = trained_run
    first = json.loads(trained.stdout)["summary"]
    # the state a run killed after its first learner leaves behind (run.json format: docs/export.md)
    interrupted = tmp_path / "runs" / "quickstart-interrupted"
    shutil.copytree(run_dir, interrupted)
    record = json.loads((interrupted / "run.json").read_text(encoding="utf-8"))
    record["status"] = "running"
    record.pop("export", None)
    record["learners"]["bag_001"] = {"status": "pending"}
    (interrupted / "run.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.rmtree(interrupted / "learners" / "bag_001")
    shutil.rmtree(interrupted / "export")
    monkeypatch.chdir(tmp_path)  # --resume without --run-dir: the latest runs/quickstart-* here
    result = invoke("train", QUICKSTART, "--resume", "--json", *[a for o in TINY for a in ("--set", o)])
    assert result.exit_code == EXIT_OK, result.stderr
    out = json.loads(result.stdout)
    resumed = out["summary"]
    assert Path(out["run_dir"]).resolve() == interrupted.resolve()
    assert resumed["run_id"] == first["run_id"] and resumed["learner_status"] == {"bag_000": "trained",
                                                                                   "bag_001": "trained"}
    assert resumed["learner_performance"]["bag_000"] == first["learner_performance"]["bag_000"]  # loaded
    assert resumed["epochs_trained"]["bag_001"] == 2  # trained again
    assert json.loads((interrupted / "run.json").read_text(encoding="utf-8"))["status"] == "complete"
    assert (interrupted / "export").is_dir()


def test_demo_runs_the_quick_start():
    result = invoke("demo", "--epochs", "1", "--bags", "2", "--samples", "100")
    assert result.exit_code == EXIT_OK, result.stderr
    lines = result.stdout.splitlines()
    trained = re.fullmatch(r"Trained (\d+) learners successfully!", lines[0])
    assert trained and int(trained.group(1)) >= 2  # small measured subsets train one learner per fold
    assert lines[1].startswith("Average accuracy: ") and lines[3].startswith("Held-out ensemble accuracy: ")
    assert "(chance 0.200); without image_features: " in lines[3]


@pytest.mark.parametrize("where", ["--run-dir", "default"])
def test_sinks_that_write_under_the_run_directory_combine_with_any_run_directory(tmp_path, monkeypatch, where):
    """The config was checked before --run-dir applied: 'run_dir is None' for the TensorBoard sink."""
    monkeypatch.chdir(tmp_path)
    args = ["train", str(QUICKSTART), "--set", "training.tensorboard_logging=true", "--json"]
    if where == "--run-dir":
        args += ["--run-dir", str(tmp_path / "chosen")]
    for override in TINY:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.stderr
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    assert run_dir == (tmp_path / "chosen" if where == "--run-dir" else run_dir)
    assert (run_dir / "tensorboard").is_dir()


def test_a_failed_run_that_left_a_record_says_the_exact_resume_command(tmp_path):
    run_dir = tmp_path / "runs" / "failing"
    args = ["train", str(QUICKSTART), "--run-dir", str(run_dir), "--set", "learning_rate=1e30"]
    for override in TINY:
        args += ["--set", override]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_RUNTIME, result.stderr
    assert "every learner failed" in result.stderr
    command = result.stderr.split("continue it with:\n", 1)[1].strip().splitlines()[0]
    assert command.startswith(f"modalbag train {QUICKSTART} --set learning_rate=1e30") and command.endswith(
        f"--run-dir {run_dir} --resume")
    # `modalbag report` on that run names the same command (from run.json), not the Python API
    report = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert report.exit_code == EXIT_RUNTIME and "did not finish" in report.stderr, report.stderr
    assert "learners: 2 failed" in report.stderr and "train_ensemble" not in report.stderr
    assert report.stderr.split("continue it with:\n", 1)[1].strip().splitlines()[0] == command


def _unfinished_copy(run_dir: Path, target: Path) -> Path:
    """A copy of a finished run as a run killed before its export leaves it."""
    shutil.copytree(run_dir, target)
    shutil.rmtree(target / "export")
    record = json.loads((target / "run.json").read_text(encoding="utf-8"))
    record["status"] = "running"
    record.pop("export", None)
    (target / "run.json").write_text(json.dumps(record), encoding="utf-8")
    return target


def test_train_records_how_it_was_launched(trained_run):
    run_dir, _ = trained_run
    launch = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["launch"]
    assert launch == {"command": "modalbag train", "config": str(QUICKSTART), "overrides": TINY,
                      "cwd": launch["cwd"]} and Path(launch["cwd"]).is_dir()


def test_report_on_an_unfinished_run_prints_the_resume_command(trained_run, tmp_path, monkeypatch):
    run_dir, _ = trained_run
    unfinished = _unfinished_copy(run_dir, tmp_path / "runs" / "killed")
    record = json.loads((unfinished / "run.json").read_text(encoding="utf-8"))
    record["launch"].update(config="examples/configs/quickstart.toml", cwd=str(ROOT))  # as typed in the repository
    (unfinished / "run.json").write_text(json.dumps(record), encoding="utf-8")
    overrides = " ".join(f"--set {o}" if "\"" not in o else f"--set '{o}'" for o in TINY)
    for cwd, config in ((ROOT, "examples/configs/quickstart.toml"), (tmp_path, str(QUICKSTART))):
        monkeypatch.chdir(cwd)  # elsewhere, the config's path is given from where the run was started
        result = invoke("report", unfinished)
        assert result.exit_code == EXIT_RUNTIME
        assert "did not finish (learners: 2 trained)" in result.stderr, result.stderr
        command = result.stderr.split("continue it with:\n", 1)[1].strip()
        assert command == f"modalbag train {config} {overrides} --run-dir {unfinished} --resume"


def test_report_on_an_unfinished_python_api_run_names_the_python_api(trained_run, tmp_path):
    run_dir, _ = trained_run
    unfinished = _unfinished_copy(run_dir, tmp_path / "api-run")
    record = json.loads((unfinished / "run.json").read_text(encoding="utf-8"))
    del record["launch"]  # what a run started by model.train_ensemble(run_dir=...) records
    (unfinished / "run.json").write_text(json.dumps(record), encoding="utf-8")
    result = invoke("report", unfinished)
    assert result.exit_code == EXIT_RUNTIME
    assert "resume it with train_ensemble(resume=True, run_dir=...)" in result.stderr
    assert "modalbag train" not in result.stderr


# -- progress on a terminal ------------------------------------------------------------------------


def _train_on_a_terminal(tmp_path: Path, *args: str) -> str:
    """Run ``modalbag [args] train`` with stderr on a pseudo-terminal; everything it drew there."""
    import os
    import pty

    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "modalbag.cli", *args, "train", str(QUICKSTART), "--run-dir", str(tmp_path / "run"),
               *[f"--set={o}" for o in TINY]]
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL,
                               cwd=tmp_path, env=env)
    os.close(follower)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, drawn.decode(errors="replace")[-3000:]
    return drawn.decode(errors="replace")


def test_a_terminal_gets_progress_bars_with_logs_printed_between_them(tmp_path):
    drawn = _train_on_a_terminal(tmp_path)
    assert re.search(r"bags: 100%\|.*\| 2/2 \[[0-9:]+<[0-9:]+, +[0-9.]+(bag/s|s/bag)\]", drawn)  # rate and ETA
    lines = [line for part in drawn.split("\r\n") for line in part.split("\r")]
    logged = [line for line in lines if "run.start" in line or "learner.trained" in line]
    assert logged, drawn[-2000:]
    # a log line is printed whole on its own line, never into a bar
    assert not any("bags:" in line or "epoch/s" in line for line in logged), logged


def test_quiet_draws_no_bar_on_a_terminal(tmp_path):
    assert "bags:" not in _train_on_a_terminal(tmp_path, "-q")
