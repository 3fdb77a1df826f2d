"""``MODALBAG_TRACE_HOOKS=1``: log every hook call of a run's plugin manager, with its result.

For debugging a plugin: which implementations a hook reached, in which order, what came back and how
long it took. Each call logs one ``hook.called`` event on the ``modalbag.hooks`` logger (debug
level): the hook's name, the plugins that implement it (in call order), the seconds it took, and the
result's ``repr`` cut to ``MAX_REPR`` characters (or the exception it raised). Off by default: the
per-step hooks run thousands of times per epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pluggy

from modalbag.logs import get_logger

ENV = "MODALBAG_TRACE_HOOKS"
MAX_REPR = 200

log = get_logger("modalbag.hooks")


def tracing_wanted() -> bool:
    """True when the environment asks for hook tracing (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 3] + "..."


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Log each hook call of ``pm`` (see the module docstring)."""
    started: list[float] = []

    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        started.append(time.perf_counter())

    def after(outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        seconds = time.perf_counter() - started.pop() if started else None
        plugins = [impl.plugin_name for impl in reversed(impls)]  # pluggy calls the last registered first
        exception = getattr(outcome, "exception", None)
        if exception is not None:
            log.debug("hook.called", hook=hook_name, plugins=plugins, seconds=seconds,
                      raised=f"{type(exception).__name__}: {exception}")
        else:
            log.debug("hook.called", hook=hook_name, plugins=plugins, seconds=seconds,
                      result=_short(outcome.get_result()))

    pm.add_hookcall_monitoring(before, after)


__all__ = ["ENV", "MAX_REPR", "trace_hook_calls", "tracing_wanted"]
