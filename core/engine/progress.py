"""The opt-in progress line over a run's bags (``progress_bar``, or ``verbose`` on a terminal)."""

from __future__ import annotations

import io
import sys
import time
from typing import Any

from modalbag.config.training import TrainingConfig
from modalbag.kernel.markers import hookimpl


class ProgressBar:
    """One line over the bags, redrawn as each finishes: only when the user asks (``progress_bar``)."""

    def __init__(self, total: int, stream: io.TextIOBase | None = None, width: int = 30):
        self.total, self.done, self.failed, self.width = total, 0, 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.perf_counter()
        self.current = ""  # the epoch of the learner training in this process, when one is
        self._draw()

    @staticmethod
    def wanted(config: TrainingConfig, stream: Any = None) -> bool:
        """``progress_bar``, or ``verbose`` on a terminal: never drawn into a file or a pipe unasked."""
        stream = stream if stream is not None else sys.stderr
        return config.progress_bar or (config.verbose and bool(getattr(stream, "isatty", lambda: False)()))

    @hookimpl
    def modalbag_epoch_end(self, run: Any, fit: Any, record: Any) -> None:
        """Run hook (registered by the engine for in-process learners): show the learner's epoch."""
        self.current = f" | {fit.spec.learner_id} epoch {record.epoch}/{run.config.epochs}"
        self._draw()

    def update(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self._draw()

    def _draw(self) -> None:
        filled = int(self.width * self.done / max(1, self.total))
        failed = f", {self.failed} failed" if self.failed else ""
        seconds = time.perf_counter() - self.started
        self.stream.write(f"\rbags [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
                          f"{failed} {seconds:.0f}s{self.current}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


__all__ = ["ProgressBar"]
