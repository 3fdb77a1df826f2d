"""Structured logging for the library: silent until the application configures logging.

modalbag logs through stdlib loggers named ``modalbag.<module>`` (with a ``NullHandler`` on
``modalbag``, as a library should), wrapped by structlog for key/value events. Who renders them:

- an application that configures structlog (the ``modalbag`` command does, `modalbag.cli.logsetup`)
  gets its own processors applied, whenever it configures them;
- an application that configures only the standard library (``logging.basicConfig``) gets one plain
  ``event key=value`` message per event, which its own formatter then prefixes with the level, the
  logger's name and the time once (structlog's default chain would add a second timestamp and level).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

logging.getLogger("modalbag").addHandler(logging.NullHandler())


def _plain(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """``event key=value ...`` as the stdlib message; ``exc_info`` passed on for the handler to format."""
    event = dict(event_dict)
    exc_info = event.pop("exc_info", None)
    message = str(event.pop("event", ""))
    if event:
        message += " " + " ".join(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}"
                                  for key, value in event.items())
    out: dict[str, Any] = {"msg": message}
    if exc_info:
        out["exc_info"] = exc_info
    return out


def _render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The application's structlog processors when it configured structlog, else `_plain`."""
    if not structlog.is_configured():
        return _plain(logger, method, event_dict)
    result: Any = event_dict
    for processor in structlog.get_config()["processors"]:
        result = processor(logger, method, result)
    return result


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger over the stdlib logger ``name`` (for example ``modalbag.engine.engine``)."""
    return structlog.wrap_logger(logging.getLogger(name), processors=[_render],
                                 wrapper_class=structlog.stdlib.BoundLogger)


__all__ = ["get_logger"]
