"""``tensorboard``: mirror the run's metrics to TensorBoard (``tensorboard_logging``).

One event directory per learner, ``<run_dir>/tensorboard/<learner_id>/``, so TensorBoard draws each
learner as its own run; epoch scalars use the epoch as their step (names from
`modalbag.kernel.records.EpochRecord.scalars`), ``log_interval`` scalars (``step/<name>``) the optimizer step.
A learner trains in one process, so its writer lives where it trains (worker processes included)
and is closed when it ends. At the run's end ``<run_dir>/tensorboard/run/`` gets each learner's
validation metrics and a text summary. Needs the ``tensorboard`` package (``modalbag[tensorboard]``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from modalbag import hookimpl
from modalbag.kernel import Register, Run
from modalbag.kernel.fit import FitState
from modalbag.kernel.options import positive
from modalbag.kernel.records import EpochRecord, TrainedLearner


@attrs.frozen(kw_only=True)
class TensorBoardOptions:
    tensorboard_flush_secs: float = attrs.field(default=30.0, validator=positive, metadata={
        "help": "Seconds between TensorBoard's background flushes (each epoch is flushed anyway)."})


class TensorBoardSink:
    def __init__(self, config: Any, options: TensorBoardOptions | None = None):
        self.config = config
        self.options = options or TensorBoardOptions()
        self.root: Path | None = Path(config.run_dir) / "tensorboard" if config.run_dir else None
        self._writers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # writers hold threads and files: workers open their own
        return {**self.__dict__, "_writers": {}}

    @hookimpl
    def modalbag_validate_config(self, config: Any) -> list[str] | None:
        if importlib.util.find_spec("tensorboard") is None:
            return ["tensorboard_logging needs the tensorboard package: pip install 'modalbag[tensorboard]' "
                    "(or set tensorboard_logging=false)"]
        return None

    def _writer(self, learner_id: str) -> Any:
        writer = self._writers.get(learner_id)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            assert self.root is not None
            writer = SummaryWriter(log_dir=str(self.root / learner_id), flush_secs=self.options.tensorboard_flush_secs)
            self._writers[learner_id] = writer
        return writer

    def _close(self, learner_id: str) -> None:
        writer = self._writers.pop(learner_id, None)
        if writer is not None:
            writer.close()

    @hookimpl
    def modalbag_fit_start(self, run: Run, fit: FitState) -> None:
        self._writer(fit.spec.learner_id)

    @hookimpl
    def modalbag_epoch_end(self, run: Run, fit: FitState, record: EpochRecord) -> None:
        writer = self._writer(fit.spec.learner_id)
        for tag, value in record.scalars().items():
            writer.add_scalar(tag, value, global_step=record.epoch)
        writer.flush()

    @hookimpl
    def modalbag_log_step(self, run: Run, fit: FitState, step: int, values: Mapping[str, float]) -> None:
        writer = self._writer(fit.spec.learner_id)
        for name, value in values.items():
            writer.add_scalar(f"step/{name}", value, global_step=step)

    @hookimpl
    def modalbag_fit_end(self, run: Run, fit: FitState) -> None:
        self._close(fit.spec.learner_id)

    @hookimpl
    def modalbag_fit_error(self, run: Run, learner_id: str, error: BaseException) -> None:
        self._close(learner_id)

    @hookimpl
    def modalbag_run_end(self, run: Run, learners: Mapping[str, TrainedLearner]) -> None:
        for learner_id in list(self._writers):
            self._close(learner_id)
        from torch.utils.tensorboard import SummaryWriter

        assert self.root is not None
        with SummaryWriter(log_dir=str(self.root / "run")) as writer:
            lines = ["| learner | status | epochs | seconds | validation |", "|---|---|---|---|---|"]
            for i, (lid, learner) in enumerate(learners.items()):
                for key, value in learner.validation.items():
                    writer.add_scalar(f"validation/{key}", float(value), global_step=i)
                shown = ", ".join(f"{k}={v:.4g}" for k, v in learner.validation.items()) or learner.error or ""
                lines.append(f"| {lid} | {learner.status} | {len(learner.records)} | "
                             f"{learner.training_time:.2f} | {shown} |")
            writer.add_text("run/summary", "\n".join(lines), global_step=0)


@hookimpl
def modalbag_register_sinks(register: Register) -> None:
    register("tensorboard", TensorBoardSink, options=TensorBoardOptions,
             summary="TensorBoard event files per learner under <run_dir>/tensorboard")
