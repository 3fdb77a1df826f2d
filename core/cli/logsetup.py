"""Where the CLI sends modalbag's logs: structlog over the ``modalbag`` stdlib logger, on stderr.

The library only creates loggers (`modalbag.logs.get_logger`); this is the one place that configures
them, once per command, as console lines or JSON lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import IO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", *, json: bool = False,
                      stream: IO[str] | None = None) -> Callable[[], None]:
    """Render modalbag's structured logs at ``level`` and above on ``stream`` (default stderr).

    Replaces the handler an earlier call installed, so calling it again does not duplicate lines.
    Returns a function that restores the logging state found before the call (the CLI calls it
    when a command ends, so running commands in-process leaves the process as it was).
    """
    import structlog

    saved = structlog.get_config()
    logger = logging.getLogger("modalbag")
    before = (logger.level, logger.propagate)

    stream = stream if stream is not None else sys.stderr
    timestamper = structlog.processors.TimeStamper(fmt="iso" if json else "%H:%M:%S", utc=json)
    pre_chain = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, timestamper]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, structlog.contextvars.merge_contextvars, *pre_chain,
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if json:
        renderer: object = structlog.processors.JSONRenderer(sort_keys=False)
        final = [structlog.processors.format_exc_info, renderer]
    else:
        colors = bool(getattr(stream, "isatty", lambda: False)())
        final = [structlog.dev.ConsoleRenderer(colors=colors)]
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        foreign_pre_chain=pre_chain,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("modalbag-cli")
    for old in [h for h in logger.handlers if h.get_name() == "modalbag-cli"]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(LEVELS[level])
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]
        structlog.configure(**saved)

    return restore


__all__ = ["LEVELS", "configure_logging"]
