"""Log events from workers: captured where a learner trains, replayed through the parent's loggers.

A worker's structlog events are collected as plain data with their logger's name; the parent emits
them through the same loggers with the bag id, so logs end where the application sends them.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import structlog

from modalbag.io.artifacts import to_json
from modalbag.logs import get_logger


@contextlib.contextmanager
def captured_events() -> Iterator[list[dict[str, Any]]]:
    """Collect the structlog events emitted inside the block (with their logger's name) instead of
    emitting them; warnings become ``worker.warning`` events. Restores the configuration after."""
    events: list[dict[str, Any]] = []

    def grab(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event = dict(event_dict)
        info = event.pop("exc_info", None)
        if info:
            info = sys.exc_info() if info is True else info
            if isinstance(info, BaseException):
                info = (type(info), info, info.__traceback__)
            if info and info[0] is not None:
                event["exception"] = "".join(traceback.format_exception(*info))
        event = {str(k): _plain(v) for k, v in event.items()}
        event.setdefault("log_level", "warning" if method == "warn" else method)
        event["logger_name"] = getattr(logger, "name", None)
        event["at"] = time.time()
        events.append(event)
        raise structlog.DropEvent

    before = structlog.get_config()
    structlog.configure(processors=[grab])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield events
        for w in caught:
            events.append({"event": "worker.warning", "log_level": "warning", "logger_name": "modalbag.executors",
                           "category": w.category.__name__, "message": str(w.message), "at": time.time()})
    finally:
        structlog.configure(**before)


def _plain(value: Any) -> Any:
    """Event values as plain data, so that they pickle whatever a plugin logged."""
    return to_json(value, fallback=_describe)


def _describe(value: Any) -> str:
    return f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)


_LEVELS = {"debug", "info", "warning", "error", "critical", "exception"}


def replay_events(events: Sequence[Mapping[str, Any]], **context: Any) -> None:
    """Emit events captured in a worker through the parent's loggers of the same names.

    Nothing is filtered here: the application's configuration decides, as for events logged here.
    """
    for captured in events:
        event = dict(captured)
        name = event.pop("logger_name", None) or "modalbag.executors"
        level = event.pop("log_level", "info")
        level = level if level in _LEVELS else "info"
        message = event.pop("event", "")
        getattr(get_logger(name), "error" if level == "exception" else level)(message, **{**context, **event})


__all__ = ["captured_events", "replay_events"]
