"""What a failing hook ends: the policy that keeps one plugin's exception from discarding a run.

Hooks either *own behaviour* or *observe*:

- Behaviour (``fit_setup``, ``fit_start``, ``epoch_end`` of a validator, ``fit_end``, the per-step
  hooks, ...): an exception fails the learner being fitted, recorded with its error; the other
  learners go on (`modalbag.execution.fitting`). A plugin that changes training cannot be skipped
  silently.
- Observing hooks (`OBSERVING_HOOKS`: ``run_end``, ``fit_error``, ``log_step``): they only report
  (the first two once a learner's outcome is settled), so an exception there is recorded against
  its plugin (`HookFailure`) and logged, and the call goes on to the other plugins. The trained
  learners are kept.
- Observers (the kinds the kind table marks ``observer``: sinks): every hook of theirs is
  isolated. The first exception (a full disk, a revoked permission, a lost server) disables that
  instance for the rest of the run with one warning; training, the other sinks and the run's own
  record (`run.json`) go on.

`RunPluginManager` applies it: a pluggy ``PluginManager`` whose hook calls go through
`RunPluginManager._hookexec`. Calls whose implementations need no isolation (the per-step hooks of
a run without observers among them) take pluggy's path unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pluggy

from modalbag.logs import get_logger

log = get_logger("modalbag.plugins")

#: Hooks that only report: called once the outcome is settled (run_end, fit_error) or to hand measured
#: values to whoever listens (log_step); a plugin raising there cannot change training.
OBSERVING_HOOKS = frozenset({"modalbag_run_end", "modalbag_fit_error", "modalbag_log_step"})


@attrs.frozen
class HookFailure:
    """One plugin's exception in one hook, and whether the plugin was disabled for the rest of the run."""

    plugin: str
    hook: str
    error: str
    disabled: bool
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class RunPluginManager(pluggy.PluginManager):
    """A plugin manager that isolates observing hooks and observer plugins (see the module docstring)."""

    def __init__(self, project_name: str):
        super().__init__(project_name)
        self._observers: dict[int, str] = {}  # id(instance) -> name, for the instances registered as observers
        self._disabled: set[int] = set()
        self._failures: dict[tuple[str, str], HookFailure] = {}
        self._isolating: dict[str, bool] = {}  # hook name -> does any implementation need isolating

    # -- registration ------------------------------------------------------------------------

    def register_observer(self, plugin: object, name: str) -> str | None:
        """Register ``plugin`` as an observer: each of its hooks is isolated, its first failure disables it."""
        registered = self.register(plugin, name=name)
        self._observers[id(plugin)] = name
        self._isolating.clear()
        return registered

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._isolating.clear()
        return super().register(plugin, name=name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name=name)
        self._observers.pop(id(removed), None)
        self._disabled.discard(id(removed))
        self._isolating.clear()
        return removed

    # -- what went wrong ---------------------------------------------------------------------

    @property
    def failures(self) -> list[HookFailure]:
        """Every (plugin, hook) that raised in this run, with how many times."""
        return list(self._failures.values())

    def is_disabled(self, plugin: object) -> bool:
        return id(plugin) in self._disabled

    # -- calling -----------------------------------------------------------------------------

    def _needs_isolation(self, hook_name: str, methods: Sequence[Any]) -> bool:
        found = self._isolating.get(hook_name)
        if found is None:  # a wrapper needs the whole call: it cannot be split per implementation
            found = ((hook_name in OBSERVING_HOOKS or any(id(m.plugin) in self._observers for m in methods))
                     and not any(m.wrapper or m.hookwrapper for m in methods))
            self._isolating[hook_name] = found
        return found

    def _hookexec(self, hook_name: str, methods: Sequence[Any], kwargs: Mapping[str, object],
                  firstresult: bool) -> Any:
        if not methods or not self._needs_isolation(hook_name, methods):
            return super()._hookexec(hook_name, methods, kwargs, firstresult)
        results: list[Any] = []
        for impl in reversed(methods):  # pluggy's order: the last registered first
            key = id(impl.plugin)
            if key in self._disabled:
                continue
            try:
                outcome = super()._hookexec(hook_name, [impl], kwargs, firstresult)
            except Exception as exc:
                if hook_name not in OBSERVING_HOOKS and key not in self._observers:
                    raise  # a behaviour hook of a plugin that is not an observer: its learner fails
                self._failed(impl, hook_name, exc)
                continue
            if firstresult:
                if outcome is not None:
                    return outcome
            else:
                results.extend(outcome)
        return None if firstresult else results

    def _failed(self, impl: Any, hook_name: str, exc: Exception) -> None:
        key = id(impl.plugin)
        name = self._observers.get(key) or impl.plugin_name or type(impl.plugin).__name__
        observer = key in self._observers
        if observer:
            self._disabled.add(key)
        error = f"{type(exc).__name__}: {exc}"
        seen = self._failures.get((name, hook_name))
        if seen is not None:
            self._failures[(name, hook_name)] = attrs.evolve(seen, count=seen.count + 1)
            return
        self._failures[(name, hook_name)] = HookFailure(name, hook_name, error, observer)
        hint = ("disabled for the rest of the run; training goes on" if observer
                else "the trained learners are kept; later calls of this hook that fail are counted, not logged")
        log.warning("plugin.hook_failed", plugin=name, hook=hook_name, error=error, hint=hint)


__all__ = ["OBSERVING_HOOKS", "HookFailure", "RunPluginManager"]
