"""Assembling a run: the components its config names, built, registered into the run's own plugin
manager in configuration order, and checked before any training starts.

What a config names and whether it is valid is the kernel's business (`modalbag.kernel.components`);
building the instances is the engine's, which is why the denoising hooks (objectives combined by a
strategy, one loss module per learner) are put together here.
"""

from __future__ import annotations

from modalbag.config.training import TrainingConfig
from modalbag.errors import ConfigError, DuplicatePluginError, MissingPluginError, PluginLoadError, UnknownPluginError
from modalbag.kernel.components import _resolve, build_options, component_issues, wanted_components
from modalbag.kernel.kinds import is_observer, role_of
from modalbag.kernel.registry import Catalog, _new_plugin_manager, default_catalog
from modalbag.kernel.run import ActiveSet, Selected


def assemble(config: TrainingConfig, catalog: Catalog | None = None,
             extra_plugins: tuple[object, ...] = ()) -> ActiveSet:
    """Build the run's components and its own plugin manager; fail before any training starts."""
    catalog = catalog or default_catalog()
    issues = component_issues(config, catalog)
    if issues:
        for option, kind, name in wanted_components(config):  # raise the precise plugin error when there is one
            try:
                _resolve(catalog, option, kind, name, config)
            except (MissingPluginError, UnknownPluginError, PluginLoadError, DuplicatePluginError):
                raise
        raise ConfigError(issues)
    selected: list[Selected] = []
    for option, kind, name in wanted_components(config):
        comp = _resolve(catalog, option, kind, name, config)
        selected.append(Selected(option, comp, build_options(comp, config)))
    optimizer = selected[0]
    scheduler = next((s for s in selected if s.component.kind == "scheduler"), None)
    executor = next((s for s in selected if s.component.kind == "executor"), None)
    hooked = tuple(s for s in selected if role_of(s.component.kind) != "factory")
    named = [(sel.component.qualified_name, sel.component.factory(config, sel.options)) for sel in hooked
             if role_of(sel.component.kind) == "hooks"]
    observer_names = {sel.component.qualified_name for sel in hooked if is_observer(sel.component.kind)}
    if config.enable_denoising:  # objectives run inside one loss module per learner, not as hooks
        from modalbag.denoising.objectives import DenoisingHooks  # imports torch: only when denoising is on

        built = {sel.component.name: sel.component.factory(config, sel.options) for sel in hooked
                 if sel.component.kind == "objective"}
        strategy = next(sel for sel in hooked if sel.component.kind == "strategy")
        named.insert(0, ("denoising", DenoisingHooks(config, built, strategy.component.factory(config, strategy.options))))
    named += [(f"extra-{i}-{type(p).__name__}", p) for i, p in enumerate(extra_plugins)]
    pm = _new_plugin_manager()
    for name, instance in reversed(named):  # pluggy calls the last registered first
        if name in observer_names:
            pm.register_observer(instance, name=name)
        else:
            pm.register(instance, name=name)
    pm.check_pending()
    instances = [instance for _, instance in named]
    observers = frozenset(i for i, (name, _) in enumerate(named) if name in observer_names)
    problems = [p for found in pm.hook.modalbag_validate_config(config=config) if found for p in found]
    if problems:
        raise ConfigError(problems)
    return ActiveSet(optimizer, scheduler, hooked, tuple(instances), pm, executor, observers)


__all__ = ["assemble"]
