"""The catalog of installed plugins and the components they register.

Listing reads entry-point metadata only: no plugin module is imported until one of its components
is asked for, so a broken or heavy plugin costs nothing to runs that do not use it. Entry points
are loaded one by one and a failure is recorded against that plugin alone (pluggy's bulk
``load_setuptools_entrypoints`` would let one broken plugin abort every run).

Entry-point names are ``"<kind>.<component>"`` (``optimizer.adamw``): the catalog finds a
component from its name without importing anything else. Any other name is a *bundle* that may
register several components; bundles are loaded only when a name is not found otherwise.
"""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from modalbag.config import training as config_training
from modalbag.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError
from modalbag.kernel import hookspecs
from modalbag.kernel.component import Component, PluginSource
from modalbag.kernel.isolation import RunPluginManager
from modalbag.kernel.kinds import KINDS
from modalbag.kernel.markers import NAME
from modalbag.kernel.tracing import trace_hook_calls, tracing_wanted
from modalbag.logs import get_logger

log = get_logger("modalbag.registry")


@attrs.frozen
class PluginInfo:
    """One row of `available_plugins`: read from metadata, nothing imported."""

    name: str
    kind: str | None
    distribution: str
    version: str
    module: str


def _split(entry_point_name: str) -> tuple[str | None, str]:
    kind, dot, name = entry_point_name.partition(".")
    return (kind, name) if dot and kind in KINDS else (None, entry_point_name)


def _new_plugin_manager() -> RunPluginManager:
    """A plugin manager with modalbag's hook specs; with ``MODALBAG_TRACE_HOOKS=1`` it logs every call."""
    pm = RunPluginManager(NAME)
    pm.add_hookspecs(hookspecs)
    if tracing_wanted():
        trace_hook_calls(pm)
    return pm


def _scan_entry_points(group: str) -> list[tuple[metadata.EntryPoint, PluginSource]]:
    found = []
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        for ep in dist.entry_points.select(group=group):
            found.append((ep, PluginSource(ep.name, ep.value, dist_name, dist.version)))
    # distributions() can list one distribution twice when it sits on sys.path twice
    unique = {(s.entry_point, s.distribution): (ep, s) for ep, s in found}
    return sorted(unique.values(), key=lambda pair: (pair[1].entry_point, pair[1].distribution))


class Catalog:
    """Installed plugins (by entry point) plus plugins registered directly in Python.

    One catalog is shared per process by default (`default_catalog`); it caches what is installed,
    never run state: every run builds its own plugin manager from it.
    """

    def __init__(self, group: str = NAME, *, scan: bool = True):
        self.group = group
        self._entry_points = _scan_entry_points(group) if scan else []
        self._components: dict[tuple[str, str], list[Component]] = {}
        self._loaded: dict[tuple[str, str], list[Component]] = {}
        self._failures: dict[tuple[str, str], PluginLoadError] = {}
        self._warned: set[tuple[str, str]] = set()

    # -- listing (no imports) ------------------------------------------------------------------

    def available(self, kind: str | None = None) -> list[PluginInfo]:
        """Every installed plugin (and direct registration) of ``kind``, without importing any."""
        rows = []
        for _, src in self._entry_points:
            ep_kind, name = _split(src.entry_point)
            if kind is None or ep_kind == kind:
                rows.append(PluginInfo(name, ep_kind, src.distribution, src.version, src.value))
        for (c_kind, c_name), comps in sorted(self._components.items()):
            for comp in comps:
                if comp.source.distribution == "<direct>" and kind in (None, c_kind):
                    rows.append(PluginInfo(c_name, c_kind, "<direct>", "", comp.source.value))
        return rows

    def names(self, kind: str) -> list[str]:
        """Component names of ``kind`` known without importing (entry points, direct, loaded)."""
        names = {name for k, name in self._components if k == kind}
        names |= {_split(s.entry_point)[1] for _, s in self._entry_points if _split(s.entry_point)[0] == kind}
        return sorted(names)

    def failures(self) -> list[PluginLoadError]:
        """Plugins that failed to load so far, each with its cause."""
        return list(self._failures.values())

    # -- loading ---------------------------------------------------------------------------------

    def register_plugin(self, plugin: object, name: str | None = None) -> list[Component]:
        """Register a plugin object (a module or instance with registration hooks) directly.

        For notebooks and tests: no entry point needed. Returns the components it registered.
        """
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        source = PluginSource(label, label, "<direct>", "")
        return self._register(plugin, source)

    def load_entry_point(self, entry_point_name: str) -> list[Component]:
        """Import one installed plugin by entry-point name and register what it provides."""
        matches = [(ep, s) for ep, s in self._entry_points if s.entry_point == entry_point_name]
        if not matches:
            kind, name = _split(entry_point_name)
            if kind is not None:
                raise UnknownPluginError(kind, name, self.names(kind))
            raise UnknownPluginError("installed", entry_point_name, [s.entry_point for _, s in self._entry_points])
        if len(matches) > 1:
            raise DuplicatePluginError(entry_point_name, [s.distribution for _, s in matches])
        ep, source = matches[0]
        return self._load(ep, source)

    def _load(self, ep: metadata.EntryPoint, source: PluginSource) -> list[Component]:
        key = (source.entry_point, source.distribution)
        if key in self._failures:
            raise self._failures[key]
        if key in self._loaded:
            return self._loaded[key]
        try:
            plugin = ep.load()
            comps = self._register(plugin, source)
            kind, name = _split(source.entry_point)
            if kind is not None and not any(c.kind == kind and c.name == name for c in comps):
                got = ", ".join(c.qualified_name for c in comps) or "nothing"
                raise LookupError(f"the entry point promises {kind} {name!r} but the module registered {got}")
        except Exception as exc:  # noqa: BLE001 - any import-time failure belongs to that plugin
            failure = PluginLoadError(source.entry_point, source.distribution, exc)
            failure.__cause__ = exc
            self._failures[key] = failure
            raise failure from exc
        self._loaded[key] = comps
        return comps

    def _register(self, plugin: object, source: PluginSource) -> list[Component]:
        pm = _new_plugin_manager()
        pm.register(plugin, name=source.entry_point)
        pm.check_pending()  # a misspelled modalbag_* hook name fails here, not silently
        added: list[Component] = []
        for kind, hook_name in KINDS.items():

            def register(name: str, factory: Callable[..., Any], *, options: type | None = None,
                         summary: str = "", _kind: str = kind) -> None:
                if options is not None and not attrs.has(options):
                    raise TypeError(f"options for {_kind} {name!r} must be an attrs class")
                added.append(Component(_kind, name, factory, options, summary, source))

            getattr(pm.hook, hook_name)(register=register)
        for comp in added:
            self._components.setdefault((comp.kind, comp.name), []).append(comp)
        return added

    def _load_bundles(self) -> None:
        for ep, source in self._entry_points:
            if _split(source.entry_point)[0] is None:
                try:
                    self._load(ep, source)
                except PluginLoadError:
                    pass  # recorded in failures(); raised only if its own name is asked for

    # -- lookup ----------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Component:
        """The component ``kind``/``name``, loading only the plugin that provides it.

        Raises `UnknownPluginError` (with close matches), `PluginLoadError` or
        `DuplicatePluginError`.
        """
        if kind not in KINDS:
            raise UnknownPluginError("component kind", kind, KINDS)
        qualified = f"{kind}.{name}"
        providers = [(ep, s) for ep, s in self._entry_points if s.entry_point == qualified]
        if len(providers) > 1:
            raise DuplicatePluginError(qualified, [s.distribution for _, s in providers])
        if providers:
            self._load(*providers[0])
        else:  # every bundle, so that which one provides a name never depends on what was looked up before
            self._load_bundles()
        comps = self._components.get((kind, name), [])
        if providers:  # the entry point named for it wins over a bundle registering the same name
            own = [c for c in comps if c.source.entry_point == qualified]
            if own and len(own) < len(comps):
                self._warn_shadowed(qualified, [c for c in comps if c.source.entry_point != qualified])
                comps = own
        if not comps:
            raise UnknownPluginError(kind, name, self.names(kind))
        distinct = {(c.source.distribution, c.source.entry_point) for c in comps}
        if len(distinct) > 1:
            raise DuplicatePluginError(qualified, [f"{d} ({e})" for d, e in distinct])
        return comps[0]

    def _warn_shadowed(self, qualified: str, ignored: list[Component]) -> None:
        key = ("shadowed", qualified)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("plugin.name_shadowed", component=qualified,
                    ignored=[f"{c.source.distribution} ({c.source.entry_point})" for c in ignored],
                    hint=f"the entry point {qualified!r} provides it; rename the bundle's component")

    def components(self, kind: str) -> list[Component]:
        """Every component of ``kind`` that loads; plugins that fail are skipped (see failures())."""
        out = []
        for name in self.names(kind):
            try:
                out.append(self.get(kind, name))
            except (PluginLoadError, DuplicatePluginError):
                continue
        return out

    def option_owners(self, kinds: Iterable[str] = KINDS) -> dict[str, list[Component]]:
        """Map each plugin option name to the components that accept it (loads those kinds)."""
        owners: dict[str, list[Component]] = {}
        for kind in kinds:
            for comp in self.components(kind):
                for field in attrs.fields(comp.options) if comp.options else ():
                    owners.setdefault(field.name, []).append(comp)
        return owners


_DEFAULT: Catalog | None = None


def default_catalog(*, refresh: bool = False) -> Catalog:
    """The process's catalog of installed plugins (scanned once; ``refresh`` rescans)."""
    global _DEFAULT  # a cache of installed metadata, not run state
    if _DEFAULT is None or refresh:
        _DEFAULT = Catalog()
    return _DEFAULT


config_training.default_catalog = default_catalog  # configs parsed without a catalog use this one


def available_plugins(kind: str | None = None) -> list[PluginInfo]:
    """Installed plugins, optionally of one ``kind``: name, kind, distribution, version, module."""
    return default_catalog().available(kind)


def load_plugin(name: str, kind: str | None = None) -> Component:
    """Load a component by name (``"adamw"``, ``"optimizer.adamw"`` or ``name, kind=...``)."""
    catalog = default_catalog()
    split_kind, bare = _split(name)
    kind = kind or split_kind
    if kind is not None:
        return catalog.get(kind, bare)
    found = [k for k in KINDS if bare in catalog.names(k)]
    if len(found) > 1:
        raise DuplicatePluginError(bare, [f"{k}.{bare}" for k in found])
    if not found:
        everything = [n for k in KINDS for n in catalog.names(k)]
        raise UnknownPluginError("installed", bare, everything)
    return catalog.get(found[0], bare)


def register_plugin(plugin: object, name: str | None = None) -> list[Component]:
    """Register a plugin object into the process's catalog (for notebooks and tests)."""
    return default_catalog().register_plugin(plugin, name)


__all__ = [
    "KINDS",
    "Catalog",
    "Component",
    "PluginInfo",
    "PluginSource",
    "available_plugins",
    "default_catalog",
    "load_plugin",
    "register_plugin",
]
