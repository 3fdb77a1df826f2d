"""``wandb``: mirror the run's metrics to Weights & Biases (``wandb_logging``, ``modalbag[wandb]``).

One W&B run per modalbag run, started in the calling process with the config, its files under
``<run_dir>/wandb``. Each learner's epoch metrics are logged as ``<learner_id>/<name>`` (names from
`modalbag.kernel.records.EpochRecord.scalars`) against its own step metric ``<learner_id>/epoch``, so learners
that train side by side do not fight over W&B's single step counter; ``log_interval`` values go to
``steps/<learner_id>/<name>`` against ``steps/<learner_id>/step``.

A W&B run cannot be shared with worker processes, so learners trained in this process are logged as
they train, and learners trained elsewhere are logged from their records when the run ends (the run's
own ``records.jsonl`` is the live, durable record; W&B mirrors it). The W&B run id is kept in
``<run_dir>/wandb/run-id``: a run resumed from the same ``run_dir`` continues the same W&B run.
``wandb_mode`` ``"offline"`` writes everything locally (``wandb sync`` uploads it later). Without a
mode (the option or ``WANDB_MODE``) and without an API key (``WANDB_API_KEY`` or ``wandb login``'s
netrc entry), the run logs offline and says so in a ``wandb.offline`` warning naming the ``wandb sync``
command: W&B would otherwise stop the run at its start, asking for a key no one is there to type.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.io.artifacts import atomic_write_bytes
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState
from modalbag.kernel.records import EpochRecord, TrainedLearner
from modalbag.logs import get_logger

log = get_logger("modalbag.plugins.sinks.wandb")

_optional_str = attrs.validators.optional(attrs.validators.instance_of(str))


@attrs.frozen(kw_only=True)
class WandbOptions:
    wandb_project: str = attrs.field(default="modalbag", validator=attrs.validators.instance_of(str), metadata={
        "help": "W&B project the run is logged to."})
    wandb_entity: str | None = attrs.field(default=None, validator=_optional_str, metadata={
        "help": "W&B entity (user or team) that owns the project (None: W&B's default entity)."})
    wandb_mode: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(("online", "offline", "disabled"))), metadata={
        "help": "'online', 'offline' (written locally; wandb sync uploads it later) or 'disabled'; None "
                "leaves it to W&B (the WANDB_MODE variable, wandb offline), and logs offline, with a warning "
                "naming the wandb sync command, when no API key is set."})
    wandb_tags: tuple[str, ...] = attrs.field(default=(), converter=tuple, metadata={
        "help": "Tags attached to the W&B run."})
    wandb_system_metrics: bool = attrs.field(default=True, metadata={
        "help": "Let W&B sample CPU, GPU and memory use while the run lasts."})


class WandbSink:
    def __init__(self, config: Any, options: WandbOptions | None = None):
        self.config = config
        self.options = options or WandbOptions()
        self.directory: Path | None = Path(config.run_dir) if config.run_dir else None
        self._run: Any = None
        self._owner: int | None = None
        self._live: set[str] = set()
        self._defined: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # the W&B run stays in the process that started it
        return {**self.__dict__, "_run": None, "_owner": None, "_live": set(), "_defined": set()}

    @hookimpl
    def modalbag_validate_config(self, config: Any) -> list[str] | None:
        if importlib.util.find_spec("wandb") is None:
            return ["wandb_logging needs the wandb package: pip install 'modalbag[wandb]' (or set wandb_logging=false)"]
        return None

    def _here(self) -> Any:
        """The W&B run when this process started it (None in worker processes)."""
        return self._run if self._owner == os.getpid() else None

    @hookimpl
    def modalbag_run_start(self, run: Run) -> None:
        import wandb

        assert self.directory is not None
        home = self.directory / "wandb"
        home.mkdir(parents=True, exist_ok=True)
        id_file = home / "run-id"
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.exists() else None
        opts = self.options
        mode = opts.wandb_mode
        if mode is None and not os.environ.get("WANDB_MODE") and not has_api_key():
            mode = "offline"
            log.warning("wandb.offline", run=run.run_id, reason="no W&B API key (WANDB_API_KEY or wandb login)",
                        upload=f"wandb sync {home}/offline-run-*")
        settings = wandb.Settings(silent=True, console="off", save_code=False, disable_git=True,
                                  x_disable_stats=not opts.wandb_system_metrics)
        self._run = wandb.init(project=opts.wandb_project, entity=opts.wandb_entity, mode=mode,
                               dir=str(self.directory), id=run_id or run.run_id, resume="allow",
                               tags=list(opts.wandb_tags) or None, config=run.config.to_dict(),
                               settings=settings, reinit="create_new")
        self._owner = os.getpid()
        if run_id is None:
            atomic_write_bytes(id_file, self._run.id.encode("utf-8"))
        log.info("wandb.started", run=run.run_id, wandb_id=self._run.id, mode=mode)

    def _define(self, wb: Any, learner_id: str) -> None:
        if learner_id not in self._defined:
            wb.define_metric(f"{learner_id}/epoch")
            wb.define_metric(f"{learner_id}/*", step_metric=f"{learner_id}/epoch")
            wb.define_metric(f"steps/{learner_id}/step")
            wb.define_metric(f"steps/{learner_id}/*", step_metric=f"steps/{learner_id}/step")
            self._defined.add(learner_id)

    def _log_epoch(self, wb: Any, learner_id: str, record: EpochRecord) -> None:
        self._define(wb, learner_id)
        values = {f"{learner_id}/{tag}": value for tag, value in record.scalars().items()}
        wb.log({f"{learner_id}/epoch": record.epoch, **values})

    @hookimpl
    def modalbag_epoch_end(self, run: Run, fit: FitState, record: EpochRecord) -> None:
        wb = self._here()
        if wb is not None:
            self._live.add(fit.spec.learner_id)
            self._log_epoch(wb, fit.spec.learner_id, record)

    @hookimpl
    def modalbag_log_step(self, run: Run, fit: FitState, step: int, values: Mapping[str, float]) -> None:
        wb = self._here()
        if wb is not None:
            lid = fit.spec.learner_id
            self._define(wb, lid)
            wb.log({f"steps/{lid}/step": step, **{f"steps/{lid}/{k}": v for k, v in values.items()}})

    @hookimpl
    def modalbag_run_end(self, run: Run, learners: Mapping[str, TrainedLearner]) -> None:
        wb = self._here()
        if wb is None:
            return
        for lid, learner in learners.items():
            if lid not in self._live:  # trained in a worker process: logged from its records now
                for record in learner.records:
                    self._log_epoch(wb, lid, record)
            wb.summary[f"{lid}/status"] = learner.status
            wb.summary[f"{lid}/training_time"] = learner.training_time
            for key, value in learner.validation.items():
                wb.summary[f"{lid}/validation/{key}"] = float(value)
        trained = sum(r.ok for r in learners.values())
        wb.summary["learners/trained"] = trained
        wb.summary["learners/failed"] = len(learners) - trained
        wb.finish()
        self._run = self._owner = None


def has_api_key() -> bool:
    """Whether W&B will find credentials without asking: the environment, or the netrc entry for its
    host that ``wandb login`` writes (read here with the standard library, the same on every wandb
    version)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urllib.parse.urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):  # no netrc file, or one W&B could not read either
        return False


@hookimpl
def modalbag_register_sinks(register: Register) -> None:
    register("wandb", WandbSink, options=WandbOptions,
             summary="Weights & Biases run mirroring the run's record (files under <run_dir>/wandb)")
