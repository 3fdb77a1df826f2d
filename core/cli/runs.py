"""``modalbag train``, ``validate`` and ``report``: a run from its config file to its report."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from modalbag.api.model import load_ensemble
from modalbag.api.run_config import check_run_config, load_run_config
from modalbag.cli.output import format_summary
from modalbag.data.bags import EnsembleConfig
from modalbag.errors import ArtifactError, ConfigError, ModalbagError, StorageError
from modalbag.kernel.components import wanted_components
from modalbag.logs import get_logger
from modalbag.store.persistence import MANIFEST
from modalbag.store.runrecord import EXPORT_DIR, RUN_FILE, RunRecord, default_run_dir, recording_launch

log = get_logger("modalbag.cli")

_SET_HELP = "Override a config value: KEY=VALUE, VALUE in TOML (training.epochs=3, ensemble.n_bags=4, " \
            "epochs=3 means training.epochs). Repeatable."


def latest_run_dir(config_name: str, root: Path | None = None) -> Path | None:
    """The most recently modified ``runs/<config name>-*`` directory, or None."""
    base = (root or Path.cwd()) / "runs"
    found = [p for p in base.glob(f"{config_name}-*") if p.is_dir()] if base.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resume_command(config: Path, overrides: Sequence[str], run_dir: Path) -> str:
    """The ``modalbag train ... --resume`` command line that continues the run in ``run_dir``."""
    words = ["modalbag", "train", str(config), *[w for o in overrides for w in ("--set", o)],
             "--run-dir", str(run_dir), "--resume"]
    return shlex.join(words)


#: What ``modalbag train`` records in ``run.json`` as the run's ``launch`` (`recording_launch`).
TRAIN_COMMAND = "modalbag train"


def train_launch(config: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """How ``modalbag train`` started a run, as ``run.json`` records it: enough to resume it later."""
    return {"command": TRAIN_COMMAND, "config": str(config), "overrides": list(overrides), "cwd": str(Path.cwd())}


def recorded_resume_command(run_dir: Path) -> str | None:
    """The ``modalbag train ... --resume`` command for the run recorded in ``run_dir``, from the launch
    its ``run.json`` holds; None when the run was not started by ``modalbag train`` (the Python API)
    or has no readable record. A relative config path is given from the working directory the run
    was started in when this one differs."""
    try:
        launch = RunRecord.read(run_dir).data.get("launch")
    except ModalbagError:
        return None
    if not isinstance(launch, Mapping) or launch.get("command") != TRAIN_COMMAND or not launch.get("config"):
        return None
    config = Path(str(launch["config"]))
    started_in = Path(str(launch.get("cwd") or Path.cwd()))
    if not config.is_absolute() and started_in.resolve() != Path.cwd().resolve():
        config = started_in / config
    return resume_command(config, [str(o) for o in launch.get("overrides") or ()], run_dir)


def _unfinished(run_dir: Path) -> ArtifactError | None:
    """``modalbag report`` on a run without an export: how far it got and the command that continues it
    (None when ``modalbag train`` did not start the run, or its export is there)."""
    command = recorded_resume_command(run_dir)
    if command is None or (run_dir / EXPORT_DIR / MANIFEST).is_file():
        return None
    data = RunRecord.read(run_dir).data
    statuses = [str(e.get("status", "pending")) if isinstance(e, Mapping) else "pending"
                for e in data["learners"].values()]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("trained", "failed", "pending") if statuses.count(s))
    return ArtifactError(run_dir / RUN_FILE, f"this run did not finish (learners: {counts}), so it has no export "
                                             f"to report on. Once the cause is fixed, continue it with:\n  {command}")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The run directory (default: the config's training.run_dir, else runs/<config>-<time>).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --run-dir (default: the latest runs/<config>-* directory).")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
@click.option("--progress/--no-progress", default=None,
              help="Draw progress bars on stderr (default: when stderr is a terminal and -q is not given).")
@click.pass_context
def train(ctx: click.Context, config: Path, overrides: tuple[str, ...], run_dir: Path | None, resume: bool,
          as_json: bool, progress: bool | None) -> None:
    """Train the ensemble a CONFIG file describes.

    Everything the run writes (its record, checkpoints, export, reports) goes under the run
    directory, which the last line of output names.
    """

    # checked with the run directory it will train in (the CLI always gives it one), so that sinks
    # writing under it are valid whether the directory comes from --run-dir, the file or the default
    probe = (run_dir if run_dir is not None else default_run_dir(config.stem)).resolve()
    run_config = load_run_config(config, overrides, run_dir=probe)
    configured = None if run_config.training.run_dir == str(probe) else run_config.training.run_dir
    if run_dir is None and configured is not None:
        run_dir = Path(configured)
    if run_dir is None and resume:
        run_dir = latest_run_dir(run_config.name)
        if run_dir is None:
            raise ConfigError(f"--resume: no runs/{run_config.name}-* directory here to resume; "
                              f"pass --run-dir DIR of the run to continue")
    if run_dir is None:
        run_dir = default_run_dir(run_config.name)
    if resume and not run_dir.is_dir():
        raise ConfigError(f"--resume: run directory {run_dir} does not exist")
    log.info("cli.train", config=str(config), run_dir=str(run_dir), resume=resume)
    try:
        with recording_launch(train_launch(config, overrides)):  # run.json: how `report` says to resume it
            model = run_config.train(run_dir=run_dir, resume=resume, **_progress(ctx, progress))
    except (ModalbagError, KeyboardInterrupt) as exc:
        if (run_dir / "run.json").is_file():  # what trained is recorded: say how to continue from it
            hint = (f"The run is recorded in {run_dir}; once the cause is fixed, continue it with:\n  "
                    f"{resume_command(config, overrides, run_dir)}")
            if isinstance(exc, KeyboardInterrupt):
                click.echo(hint, err=True)
            else:
                exc.add_note(hint)
        raise
    summary = model.get_training_summary()
    if as_json:
        _echo_json({"run_dir": str(run_dir), "summary": summary})
    else:
        click.echo(format_summary(summary))
        click.echo(f"\nrun directory: {run_dir}")
    if summary["failed"]:
        click.echo(f"Warning: {summary['failed']} of {summary['total_learners']} learners failed; the ensemble "
                   f"uses the others (errors in the summary)", err=True)


def _progress(ctx: click.Context, asked: bool | None) -> dict[str, bool]:
    """The flag's ``progress_bar`` when given; else ``True`` on a terminal without ``-q``, else nothing
    (the config's own value holds)."""
    if asked is not None:
        return {"progress_bar": asked}
    quiet = bool((ctx.find_root().obj or {}).get("quiet"))
    return {"progress_bar": True} if not quiet and click.get_text_stream("stderr").isatty() else {}


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--no-data", is_flag=True, help="Do not read the data files (only check that they exist).")
def validate(config: Path, overrides: tuple[str, ...], no_data: bool) -> None:
    """Check a CONFIG file without training: every problem is reported at once."""

    name = config.stem
    run_config, issues = check_run_config(config, overrides, check_data=not no_data,
                                          run_dir=Path.cwd() / "runs" / f"{name}-validate")
    if issues or run_config is None:
        raise ConfigError(issues)
    cfg = run_config.training
    if run_config.synthetic is not None:
        source = f"synthetic data, {run_config.synthetic.n_samples} samples"
        names = list(run_config.synthetic.modalities)
    else:
        source = f"{len(run_config.files)} data files"
        names = [f.name for f in run_config.files]

    n_bags = EnsembleConfig(**run_config.ensemble).n_bags  # the default when the file sets none
    click.echo(f"{config}: valid ({cfg.task_type}; {len(names)} modalities: {', '.join(names)}; {source}; "
               f"{n_bags} bags; {cfg.epochs} epochs)")

    trainers = ", ".join(run_config.learners.get("trainers", [])) or "any installed trainer"
    click.echo(f"active plugins: {', '.join(f'{kind}.{name}' for _, kind, name in wanted_components(cfg))}; "
               f"trainers chosen per bag from: {trainers}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML report (default: RUN_DIR/report.html).")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
def report(run_dir: Path, html_path: Path | None, as_json: bool) -> None:
    """Print the training summary of a finished run and write its HTML report."""

    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    try:
        model = load_ensemble(run_dir)
    except ArtifactError as exc:
        unfinished = _unfinished(run_dir)
        if unfinished is None:  # started from the Python API: the error says how to resume there
            raise
        raise unfinished from exc
    summary = model.get_training_summary()
    target = html_path or run_dir / "report.html"
    try:
        written: Path | None = Path(model.write_html_report(target))
        problem = None
    except OSError as exc:  # a read-only run (an archive, a shared mount): the summary still answers
        written, problem = None, StorageError(target, "cannot write the HTML report there: pass --html PATH "
                                                      "to write it somewhere writable", exc)
    if as_json:
        _echo_json({"run_dir": str(run_dir), "summary": summary, "html_report": written,
                    "html_report_error": None if problem is None else str(problem)})
    else:
        click.echo(format_summary(summary))
        if written is not None:
            click.echo(f"\nHTML report: {written}")
    if problem is not None:
        raise problem


__all__ = ["default_run_dir", "latest_run_dir", "recorded_resume_command", "report", "resume_command", "train",
           "train_launch", "validate"]
