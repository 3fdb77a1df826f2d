"""The core package alone, installed into a fresh virtual environment, runs the quickstart config end to end.

No extras and none of the test dependencies: ``modalbag validate``, ``train``, ``report`` and a
``train --resume`` must work from a plain ``pip install modalbag`` (issue 20). The other tests run
against the development install, where every optional library is present, so an unconditional import
of one, or a file the wheel forgets, would pass there and fail here.

Slow (about 75 seconds on two cores, half of it ``pip install``), and run by CI with the rest.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "configs" / "quickstart.toml"

#: Small enough to train in seconds, still the quickstart's three modalities, selection and bagging.
OVERRIDES = ["training.epochs=1", "ensemble.n_bags=3", "data.synthetic.n_samples=300"]

#: Import names of every optional dependency (``[project.optional-dependencies]``, test-only ones included).
EXTRAS = ["matplotlib", "xgboost", "lightgbm", "catboost", "skops", "optuna", "ray", "tensorboard", "wandb",
          "h5py", "pyarrow", "pandas", "hypothesis", "pytest"]

#: Build outputs and local state that must not travel into the source the wheel is built from.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv",
                                    ".pytest_cache", ".ruff_cache", "runs")


def _env() -> dict[str, str]:
    """The caller's environment (pip's index settings included) without what would leak the development
    install into the fresh one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _run(args: list[str | Path], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)  # the exit status is asserted, with the output


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return (f"`{' '.join(result.args)}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
            f"--- stderr ---\n{result.stderr[-8000:]}")


def _events(result: subprocess.CompletedProcess[str], name: str) -> list[dict]:
    """The ``--log-json`` records named ``name`` on the command's stderr."""
    found = []
    for line in result.stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found


def _fingerprints(learners: Path, skip: str | None = None) -> dict[str, tuple[str, int]]:
    """Every file under ``learners/`` (but learner ``skip``): its SHA-256 and modification time."""
    return {str(p.relative_to(learners)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(learners.rglob("*")) if p.is_file() and p.relative_to(learners).parts[0] != skip}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment holding the core package alone (a regular install, no extras);
    returns its scripts directory."""
    base = tmp_path_factory.mktemp("fresh_install")
    source = base / "source"  # built from a copy, so that setuptools' build/ never lands in the checkout
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    created = _run([sys.executable, "-m", "venv", base / "venv"], cwd=base)
    assert created.returncode == 0, _explain(created)
    bin_dir = base / "venv" / ("Scripts" if os.name == "nt" else "bin")
    installed = _run([bin_dir / "python", "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", source],
                     cwd=base, timeout=1200)
    assert installed.returncode == 0, _explain(installed)
    return bin_dir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fresh_install_cwd")


@pytest.fixture(scope="module")
def quickstart_run(venv, workdir) -> tuple[Path, dict]:
    """The quickstart config trained by the fresh install's ``modalbag``: its run directory and summary."""
    run_dir = workdir / "run"
    result = _train(venv, workdir, run_dir)
    assert result.returncode == 0, _explain(result)
    out = json.loads(result.stdout)
    assert Path(out["run_dir"]) == run_dir
    return run_dir, out["summary"]


def _train(venv: Path, cwd: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    sets = [w for o in OVERRIDES for w in ("--set", o)]
    return _run([venv / "modalbag", "--log-json", "train", QUICKSTART, *sets, "--run-dir", run_dir, "--json",
                 "--no-progress", *extra], cwd=cwd)


def test_the_environment_holds_the_core_package_alone(venv, workdir):
    probe = ("import importlib.util, json, modalbag; print(json.dumps({'file': modalbag.__file__, "
             f"'present': [m for m in {EXTRAS!r} if importlib.util.find_spec(m) is not None]}}))")
    result = _run([venv / "python", "-c", probe], cwd=workdir)
    assert result.returncode == 0, _explain(result)
    found = json.loads(result.stdout)
    site = Path(found["file"]).resolve()
    assert "site-packages" in site.parts and venv.parent.resolve() in site.parents, \
        f"modalbag imported from {site}, not from the fresh environment's site-packages"
    assert found["present"] == [], f"optional libraries present in a core-only install: {found['present']}"
    consistent = _run([venv / "python", "-m", "pip", "check"], cwd=workdir)
    assert consistent.returncode == 0, _explain(consistent)


def test_validate_accepts_the_quickstart_config(venv, workdir):
    result = _run([venv / "modalbag", "validate", QUICKSTART], cwd=workdir)
    assert result.returncode == 0, _explain(result)
    assert result.stdout.startswith(f"{QUICKSTART}: valid (classification; 3 modalities"), _explain(result)


def test_train_records_a_complete_run(quickstart_run):
    run_dir, summary = quickstart_run
    assert summary["total_learners"] >= 3 and summary["failed"] == 0, summary.get("errors")
    assert summary["trained"] == summary["total_learners"]
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "complete" and record["run_id"] == summary["run_id"]
    assert (run_dir / "export" / "manifest.json").is_file()
    assert {p.name for p in (run_dir / "learners").iterdir()} == set(summary["learner_status"])


def test_report_writes_the_html_without_plots_and_says_how_to_get_them(venv, workdir, quickstart_run):
    run_dir, summary = quickstart_run
    result = _run([venv / "modalbag", "report", run_dir], cwd=workdir)
    assert result.returncode == 0, _explain(result)
    page = run_dir / "report.html"
    assert f"HTML report: {page}" in result.stdout, _explain(result)
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert "No plots in this report" in text and "pip install 'modalbag[plots]'" in text
    assert "<img" not in text and "data:image" not in text
    assert summary["run_id"] in text

    as_json = _run([venv / "modalbag", "report", run_dir, "--json", "--html", workdir / "again.html"], cwd=workdir)
    assert as_json.returncode == 0, _explain(as_json)
    out = json.loads(as_json.stdout)
    assert out["html_report"] == str(workdir / "again.html") and out["html_report_error"] is None
    assert (workdir / "again.html").is_file()
    assert out["summary"]["learner_performance"] == summary["learner_performance"]


def test_resuming_the_finished_run_reuses_every_learner(venv, workdir, quickstart_run):
    run_dir, summary = quickstart_run
    before = _fingerprints(run_dir / "learners")
    result = _train(venv, workdir, run_dir, "--resume")
    assert result.returncode == 0, _explain(result)
    resumed = json.loads(result.stdout)["summary"]
    assert resumed["run_id"] == summary["run_id"]
    assert resumed["learner_performance"] == summary["learner_performance"]
    (start,) = _events(result, "run.start")
    assert start["already_fitted"] == start["learners"] == summary["total_learners"], start
    for name in ("selection.measured", "learner.trained", "bag.done"):  # nothing measured or trained again
        assert _events(result, name) == [], _explain(result)
    assert _fingerprints(run_dir / "learners") == before, "resume rewrote finished learners"


def test_resuming_an_interrupted_run_trains_only_the_learner_it_lost(venv, workdir, quickstart_run, tmp_path):
    run_dir, summary = quickstart_run
    # what a run killed before one learner ended leaves behind (run.json's format: docs/export.md)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(run_dir, interrupted, ignore=shutil.ignore_patterns("report.html"))
    record = json.loads((interrupted / "run.json").read_text(encoding="utf-8"))
    lost = sorted(record["learners"])[1]
    record["status"] = "running"
    record.pop("export", None)
    record["learners"][lost] = {"status": "pending"}
    (interrupted / "run.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.rmtree(interrupted / "learners" / lost)
    shutil.rmtree(interrupted / "export")
    kept = _fingerprints(interrupted / "learners")

    result = _train(venv, workdir, interrupted, "--resume")
    assert result.returncode == 0, _explain(result)
    resumed = json.loads(result.stdout)["summary"]
    assert resumed["run_id"] == summary["run_id"] and resumed["failed"] == 0
    assert resumed["learner_status"] == summary["learner_status"]
    (start,) = _events(result, "run.start")
    assert start["already_fitted"] == summary["total_learners"] - 1, start
    assert [e["learner"] for e in _events(result, "learner.trained")] == [lost], _explain(result)
    assert _fingerprints(interrupted / "learners", skip=lost) == kept, "resume rewrote finished learners"
    assert (interrupted / "learners" / lost / "manifest.json").is_file()
    assert json.loads((interrupted / "run.json").read_text(encoding="utf-8"))["status"] == "complete"
    assert (interrupted / "export" / "manifest.json").is_file()
