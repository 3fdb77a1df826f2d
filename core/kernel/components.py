"""Assembling a run's active plugin set from its configuration.

Installed is not active: this module decides which components a configuration turns on, builds
them with their validated options, and registers the instances into a fresh plugin manager that
belongs to that run alone. Registration order is configuration order, so broadcast hooks run in
the order users wrote (validators before sinks; within each, as listed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from modalbag.config.training import NO_SCHEDULER, TrainingConfig, parse_config
from modalbag.errors import (
    ConfigError,
    MissingPluginError,
    PluginError,
    UnknownPluginError,
)
from modalbag.kernel.component import Component
from modalbag.kernel.kinds import KIND_TABLE, KINDS
from modalbag.kernel.registry import Catalog, default_catalog


def build_options(component: Component, config: TrainingConfig) -> Any:
    """Parse the component's own keys out of ``config.plugin_options`` with its attrs class."""
    if component.options is None:
        return None
    fields = {f.name for f in attrs.fields(component.options)}
    mine = {k: val for k, val in config.plugin_options.items() if k in fields}
    try:
        return component.options(**mine)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{component.kind} {component.name!r} rejected its options {mine}: {exc}") from exc


def wanted_components(config: TrainingConfig) -> list[tuple[str, str, str]]:
    """(role/option, kind, name) for every component the config turns on, in config order."""
    wanted = [("optimizer_type", "optimizer", config.optimizer_type)]
    if config.scheduler_type.lower() not in NO_SCHEDULER:
        wanted.append(("scheduler_type", "scheduler", config.scheduler_type))
    if config.enable_denoising:
        wanted += [("denoising_objectives", "objective", name) for name in config.denoising_objectives]
        wanted.append(("denoising_strategy", "strategy", config.denoising_strategy))
    wanted += [(option, kind, name) for option, kind, name in config.active_requirements()]
    wanted += [("validators", "validator", name) for name in config.validators]
    wanted += [("sinks", "sink", name) for name in config.sinks]
    wanted.append(("executor", "executor", config.executor_name()))
    seen, ordered = set(), []
    for entry in wanted:
        if (entry[1], entry[2]) not in seen:
            seen.add((entry[1], entry[2]))
            ordered.append(entry)
    return ordered


#: Options whose value names a component (a name the user wrote, so an unknown one gets close matches).
_NAMED_BY_USER = tuple(kind.option for kind in KIND_TABLE if kind.option)


def _turn_off(option: str) -> Any:
    """A value of ``option`` that activates nothing: the default if it does, else False / 0."""
    field = attrs.fields_dict(TrainingConfig)[option]
    if not field.metadata["activates"][2](field.default):
        return field.default
    return False if isinstance(field.default, bool) else 0


def _missing(option: str, kind: str, name: str, config: TrainingConfig) -> MissingPluginError:
    return MissingPluginError(option, getattr(config, option), kind, name,
                              f"Install a plugin that provides it, or set {option}={_turn_off(option)!r}.")


def _resolve(catalog: Catalog, option: str, kind: str, name: str, config: TrainingConfig) -> Component:
    if kind not in KINDS:  # a family a later release adds
        raise _missing(option, kind, name, config)
    try:
        return catalog.get(kind, name)
    except UnknownPluginError as exc:
        if option in _NAMED_BY_USER:
            raise
        raise _missing(option, kind, name, config) from exc


def _stray_options(config: TrainingConfig, chosen: list[Component], catalog: Catalog) -> list[str]:
    """Plugin options given for components that this config does not use, and bad trainer options.

    Trainers are loaded (importing their libraries) only when some option is not one of the chosen
    components': validating a config that names none stays light.
    """
    accepted = {f.name for c in chosen if c.options for f in attrs.fields(c.options)}
    leftover = set(config.plugin_options) - accepted
    if not leftover:
        return []
    issues: list[str] = []
    for trainer in catalog.components("trainer"):  # any installed trainer may learn a bag
        owned = {f.name for f in attrs.fields(trainer.options)} if trainer.options else set()
        if owned & leftover:
            try:
                build_options(trainer, config)
            except ConfigError as exc:
                issues.extend(exc.issues)
        leftover -= owned
    owners = catalog.option_owners() if leftover else {}
    for key in sorted(leftover):
        names = ", ".join(sorted({f"{c.kind} {c.name!r}" for c in owners.get(key, [])})) or "no active plugin"
        issues.append(f"{key!r} is an option of {names}, which this config does not use: "
                      f"choose that component or remove {key!r}")
    return issues


def component_issues(config: TrainingConfig, catalog: Catalog | None = None) -> list[str]:
    """Every problem with the components a config names, collected rather than raised."""
    catalog = catalog or default_catalog()
    issues: list[str] = []
    chosen: list[Component] = []
    for option, kind, name in wanted_components(config):
        try:
            comp = _resolve(catalog, option, kind, name, config)
        except PluginError as exc:
            issues.append(f"{option}: {exc}")
            continue
        chosen.append(comp)
        try:
            build_options(comp, config)
        except ConfigError as exc:
            issues.extend(exc.issues)
    issues.extend(_stray_options(config, chosen, catalog))
    return issues


def validate_training_config(data: Mapping[str, Any], *, catalog: Any = None) -> dict[str, Any]:
    """Check a config dict without training: ``{"valid": bool, "issues": [str, ...]}``.

    Reports every problem at once: unknown keys, bad values, inconsistent options, component names
    that no installed plugin provides, and plugin options their plugin rejects.
    """
    try:
        config, issues = parse_config(TrainingConfig, data, catalog)
    except ConfigError as exc:
        return {"valid": False, "issues": exc.issues}
    messages = [str(i) for i in issues]
    messages.extend(component_issues(config, catalog))
    return {"valid": not messages, "issues": messages}


__all__ = ["build_options", "component_issues", "validate_training_config", "wanted_components"]
