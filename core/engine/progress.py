"""Progress over a run's bags with tqdm: drawn when asked (``progress_bar``; the CLI asks on a terminal).

Two bars on stderr: the run's bags (done, failed, rate and ETA, whatever the executor: each finished
learner advances it), and under it the epochs of the learner training in this process (serial
executor; learners in worker processes or on Ray report when they finish). While the bars are drawn,
console log handlers of the ``modalbag`` and root loggers print through ``tqdm.write``, so a log
line never lands inside a bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from typing import Any

from modalbag.config.training import TrainingConfig
from modalbag.kernel.markers import hookimpl


def _console_loggers() -> list[logging.Logger]:
    """The loggers modalbag's lines reach that print to the console (each redirected once)."""
    out = []
    for logger in (logging.getLogger("modalbag"), logging.getLogger()):
        if any(isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr) for h in logger.handlers):
            out.append(logger)
    return out


def _layout(stream: Any) -> dict[str, Any]:
    """Follow the terminal's size when it has one; a terminal that reports 0 x 0 (a fresh pseudo-
    terminal, some CI consoles) would hide every bar, so it gets ``$COLUMNS`` x ``$LINES`` or 100 x 24."""
    try:
        size = os.get_terminal_size(stream.fileno())
        if size.columns > 0 and size.lines > 0:
            return {"dynamic_ncols": True}
    except (AttributeError, OSError, ValueError):
        pass
    fallback = shutil.get_terminal_size((100, 24))
    return {"ncols": fallback.columns or 100, "nrows": fallback.lines or 24}


class ProgressBar:
    """The bars of one training call; see the module docstring. Close it when the call ends."""

    def __init__(self, total: int, stream: Any = None):
        from tqdm.contrib.logging import logging_redirect_tqdm
        from tqdm.std import tqdm

        self._tqdm = tqdm
        self.stream = stream if stream is not None else sys.stderr
        self.failed = 0
        self._logs = contextlib.ExitStack()
        self._logs.enter_context(logging_redirect_tqdm(_console_loggers(), tqdm_class=tqdm))
        self._layout = _layout(self.stream)
        self.bags = tqdm(total=total, desc="bags", unit="bag", file=self.stream, position=0, leave=True, smoothing=0.1,
                         **self._layout)
        self.epochs: Any = None
        self._learner: str | None = None

    @staticmethod
    def wanted(config: TrainingConfig, stream: Any = None) -> bool:
        """``progress_bar``, or ``verbose`` on a terminal: never drawn into a file or a pipe unasked."""
        stream = stream if stream is not None else sys.stderr
        return config.progress_bar or (config.verbose and bool(getattr(stream, "isatty", lambda: False)()))

    @hookimpl
    def modalbag_epoch_end(self, run: Any, fit: Any, record: Any) -> None:
        """Run hook (registered by the engine for in-process learners): advance the learner's epochs."""
        learner = fit.spec.learner_id
        if learner != self._learner:
            self._close_epochs()
            self._learner = learner
            self.epochs = self._tqdm(total=run.config.epochs, desc=f"  {learner}", unit="epoch", file=self.stream,
                                     position=1, leave=False, **self._layout)
        if record.epoch > (self.epochs.total or 0):  # trainers counting rounds may exceed the epochs asked
            self.epochs.total = record.epoch
        self.epochs.update(record.epoch - self.epochs.n)

    def update(self, ok: bool) -> None:
        """One learner finished (``ok``: trained)."""
        self._close_epochs()
        if not ok:
            self.failed += 1
            self.bags.set_postfix(failed=self.failed, refresh=False)
        self.bags.update(1)

    def _close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs, self._learner = None, None

    def close(self) -> None:
        self._close_epochs()
        self.bags.close()
        self._logs.close()


__all__ = ["ProgressBar"]
