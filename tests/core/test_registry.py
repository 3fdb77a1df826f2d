"""modalbag.kernel.registry: discovery through entry points, lazy loading, and every way a plugin can fail.

Fake third-party plugins are real installed distributions: a ``*.dist-info`` folder (METADATA and
entry_points.txt) plus a module, written under ``tmp_path`` and put on ``sys.path``. Every test
uses its own fresh `Catalog`; the process's default catalog is never changed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
import textwrap

import attrs
import pluggy
import pytest

import modalbag
from modalbag import (
    Catalog,
    DuplicatePluginError,
    PluginLoadError,
    TrainingConfig,
    UnknownPluginError,
    available_plugins,
    load_plugin,
)
from modalbag.engine.assembly import assemble
from modalbag.plugins.optimizers import adamw as adamw_module

BUILTINS = {
    ("optimizer", "adamw"): "modalbag.plugins.optimizers.adamw",
    ("optimizer", "sgd"): "modalbag.plugins.optimizers.sgd",
    ("optimizer", "radam"): "modalbag.plugins.optimizers.radam",
    ("scheduler", "cosine_restarts"): "modalbag.plugins.schedulers.cosine_restarts",
    ("scheduler", "onecycle"): "modalbag.plugins.schedulers.onecycle",
    ("scheduler", "plateau"): "modalbag.plugins.schedulers.plateau",
    ("trainer", "neural"): "modalbag.plugins.trainers.neural",
    ("validator", "early_stopping"): "modalbag.plugins.validators.early_stopping",
    ("validator", "checkpoint"): "modalbag.plugins.validators.checkpoint",
}

# a config that needs only installed built-ins (no objectives, no amp plugin)
BUILTIN_ONLY = {"enable_denoising": False, "mixed_precision": False}

REGISTER_OPTIMIZER = """
from modalbag import hookimpl

@hookimpl
def modalbag_register_optimizers(register):
    register({name!r}, lambda params, config, options: None)
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """``install(dist, {entry_point: module}, {module: source})``: a fake installed distribution."""
    modalbag.default_catalog()  # scan the real installation first, so fakes can never leak into it
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def _install(dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None) -> None:
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[modalbag]\n{lines}", encoding="utf-8")
        for module, source in (modules or {}).items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            written.append(module)
        importlib.invalidate_caches()

    yield _install
    for module in written:
        sys.modules.pop(module, None)


@pytest.fixture
def broken(install):
    install("fakebroken", {"optimizer.broken": "fakebroken_mod"},
            {"fakebroken_mod": "raise ImportError('fakebroken needs libfoo 2.0')\n"})


# --- discovery -------------------------------------------------------------------------------------


def test_every_builtin_is_listed_with_its_distribution_and_version():
    version = importlib.metadata.version("modalbag")
    rows = {(r.kind, r.name): r for r in available_plugins() if r.distribution == "modalbag"}
    assert set(BUILTINS) <= set(rows)  # tests/test_meta.py checks the full table against plugins/
    for key, module in BUILTINS.items():
        assert rows[key].module == module
        assert rows[key].version == version != ""


def test_available_plugins_filters_by_kind():
    optimizers = available_plugins("optimizer")
    assert {r.name for r in optimizers if r.distribution == "modalbag"} == {"adamw", "sgd", "radam"}
    assert {r.kind for r in optimizers} == {"optimizer"}
    assert {r.name for r in available_plugins("scheduler")} >= {"cosine_restarts", "onecycle", "plateau"}
    assert "adamw" not in {r.name for r in available_plugins("scheduler")}


def test_listing_and_getting_import_only_the_plugin_asked_for():
    code = textwrap.dedent("""
        import sys
        from modalbag.kernel.registry import Catalog
        import modalbag

        catalog = Catalog()
        rows = catalog.available()
        assert any(r.module == "modalbag.plugins.optimizers.sgd" for r in rows), rows
        modalbag.available_plugins("optimizer")
        print("listed", sorted(m for m in sys.modules if m.startswith("modalbag.plugins.")))
        catalog.get("optimizer", "adamw")
        print("got", sorted(m for m in sys.modules if m.startswith("modalbag.plugins.")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed, got = (ast.literal_eval(line.split(" ", 1)[1]) for line in proc.stdout.splitlines())
    assert listed == []
    assert "modalbag.plugins.optimizers.adamw" in got
    assert set(got) & set(BUILTINS.values()) == {"modalbag.plugins.optimizers.adamw"}  # sgd & co. untouched


# --- load_plugin -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("adamw",), ("optimizer.adamw",), ("adamw", "optimizer")])
def test_load_plugin_accepts_bare_qualified_and_kind_names(args):
    comp = load_plugin(*args)
    assert (comp.kind, comp.name, comp.qualified_name) == ("optimizer", "adamw", "optimizer.adamw")
    assert comp.factory is adamw_module.build
    assert comp.options is adamw_module.AdamWOptions
    assert comp.source.distribution == "modalbag"
    assert comp.source.entry_point == "optimizer.adamw"


def test_unknown_name_lists_close_match_and_available():
    with pytest.raises(UnknownPluginError) as info:
        load_plugin("sgdd", kind="optimizer")
    assert str(info.value) == "'sgdd' is not an optimizer plugin; did you mean 'sgd'? Available: adamw, radam, sgd"
    assert isinstance(info.value, KeyError)  # callers doing `except KeyError` still catch it
    assert (info.value.kind, info.value.name) == ("optimizer", "sgdd")


def test_unknown_adam_suggests_adamw():
    with pytest.raises(UnknownPluginError) as info:
        load_plugin("adam", kind="optimizer")
    assert str(info.value) == "'adam' is not an optimizer plugin; did you mean 'adamw'? Available: adamw, radam, sgd"


def test_unknown_bare_name_searches_every_kind():
    with pytest.raises(UnknownPluginError) as info:
        load_plugin("plateu")
    message = str(info.value)
    assert "did you mean 'plateau'?" in message
    assert "adamw" in message and "early_stopping" in message and "neural" in message


def test_unknown_kind_is_reported_with_close_match():
    with pytest.raises(UnknownPluginError, match="did you mean 'optimizer'"):
        Catalog(scan=False).get("optimiser", "adamw")


# --- failures stay with their plugin ---------------------------------------------------------------


def test_broken_plugin_raises_load_error_naming_entry_point_distribution_and_cause(broken):
    catalog = Catalog()
    assert ("broken", "fakebroken", "1.0") in {(r.name, r.distribution, r.version) for r in catalog.available("optimizer")}
    with pytest.raises(PluginLoadError) as info:
        catalog.get("optimizer", "broken")
    err = info.value
    assert (err.entry_point, err.distribution) == ("optimizer.broken", "fakebroken")
    assert isinstance(err.cause, ImportError) and err.__cause__ is err.cause
    message = str(err)
    for part in ("optimizer.broken", "fakebroken", "ImportError", "fakebroken needs libfoo 2.0"):
        assert part in message
    assert catalog.failures() == [err]
    with pytest.raises(PluginLoadError):  # asked again: the same failure, not a silent success
        catalog.get("optimizer", "broken")


def test_broken_plugin_does_not_affect_other_components_or_assembly(broken):
    catalog = Catalog()
    with pytest.raises(PluginLoadError):
        catalog.get("optimizer", "broken")
    assert catalog.get("optimizer", "adamw").factory is adamw_module.build
    # plugin options make from_dict load every optimizer, the broken one included
    config = TrainingConfig.from_dict({**BUILTIN_ONLY, "betas": [0.8, 0.9]}, catalog=catalog)
    active = assemble(config, catalog)
    assert active.names()[0] == "optimizer.adamw"
    assert active.optimizer.options.betas == (0.8, 0.9)
    assert [c.name for c in catalog.components("optimizer")] == ["adamw", "radam", "sgd"]


def test_two_distributions_claiming_one_name_raise_duplicate_error(install):
    install("twina", {"optimizer.twin": "twin_a_mod"}, {"twin_a_mod": REGISTER_OPTIMIZER.format(name="twin")})
    install("twinb", {"optimizer.twin": "twin_b_mod"}, {"twin_b_mod": REGISTER_OPTIMIZER.format(name="twin")})
    catalog = Catalog()
    assert sorted(r.distribution for r in catalog.available("optimizer") if r.name == "twin") == ["twina", "twinb"]
    with pytest.raises(DuplicatePluginError) as info:
        catalog.get("optimizer", "twin")
    assert info.value.sources == ["twina", "twinb"]
    assert "'optimizer.twin'" in str(info.value) and "twina" in str(info.value) and "twinb" in str(info.value)
    assert catalog.get("optimizer", "adamw").name == "adamw"


def test_entry_point_whose_module_registers_another_name_fails(install):
    install("fakepromise", {"optimizer.promised": "promise_mod"},
            {"promise_mod": REGISTER_OPTIMIZER.format(name="delivered")})
    catalog = Catalog()
    with pytest.raises(PluginLoadError) as info:
        catalog.get("optimizer", "promised")
    assert (info.value.entry_point, info.value.distribution) == ("optimizer.promised", "fakepromise")
    assert "promised" in str(info.value.cause) and "optimizer.delivered" in str(info.value.cause)


def test_bundle_entry_point_registers_several_components(install):
    install("fakebundle", {"extras": "bundle_mod"}, {"bundle_mod": """
        from modalbag import hookimpl

        def lion(params, config, options):
            return "lion"

        def linear(optimizer, config, options, steps_per_epoch):
            return "linear"

        @hookimpl
        def modalbag_register_optimizers(register):
            register("lion", lion, summary="Lion")

        @hookimpl
        def modalbag_register_schedulers(register):
            register("linear", linear)
    """})
    catalog = Catalog()
    bundle_rows = [r for r in catalog.available() if r.distribution == "fakebundle"]
    assert [(r.name, r.kind, r.module) for r in bundle_rows] == [("extras", None, "bundle_mod")]
    lion = catalog.get("optimizer", "lion")
    assert (lion.summary, lion.factory(None, None, None)) == ("Lion", "lion")
    assert (lion.source.entry_point, lion.source.distribution) == ("extras", "fakebundle")
    assert catalog.get("scheduler", "linear").factory(None, None, None, 1) == "linear"
    assert "lion" in catalog.names("optimizer")


def test_misspelled_hook_name_fails_to_load(install):
    install("fakemisspelled", {"optimizer.misspelled": "misspelled_mod"}, {"misspelled_mod": """
        from modalbag import hookimpl

        @hookimpl
        def modalbag_register_optimiser(register):
            register("misspelled", lambda params, config, options: None)
    """})
    catalog = Catalog()
    with pytest.raises(PluginLoadError) as info:
        catalog.get("optimizer", "misspelled")
    assert info.value.entry_point == "optimizer.misspelled"
    assert isinstance(info.value.cause, pluggy.PluginValidationError)
    assert "modalbag_register_optimiser" in str(info.value)


# --- direct registration ---------------------------------------------------------------------------


class LionPlugin:
    @modalbag.hookimpl
    def modalbag_register_optimizers(self, register):
        register("lion", self.build, summary="Lion (direct)")

    def build(self, params, config, options):
        return ("lion", params)


def test_direct_registration_is_found_and_listed():
    catalog = Catalog(scan=True)
    plugin = LionPlugin()
    registered = catalog.register_plugin(plugin)
    assert [c.qualified_name for c in registered] == ["optimizer.lion"]
    comp = catalog.get("optimizer", "lion")
    assert comp.factory([1], None, None) == ("lion", [1])
    assert comp.source.distribution == "<direct>"
    rows = [r for r in catalog.available("optimizer") if r.name == "lion"]
    assert [(r.kind, r.distribution, r.module) for r in rows] == [("optimizer", "<direct>", "LionPlugin")]
    assert "lion" not in {r.name for r in catalog.available("scheduler")}
    assert {"adamw", "lion"} <= set(catalog.names("optimizer"))
    assert "lion" not in modalbag.default_catalog().names("optimizer")  # fresh catalogs are independent


def test_direct_registration_rejects_non_attrs_options():
    class BadOptions:
        @modalbag.hookimpl
        def modalbag_register_optimizers(self, register):
            register("bad", lambda params, config, options: None, options=dict)

    with pytest.raises(TypeError, match="attrs class"):
        Catalog(scan=False).register_plugin(BadOptions())


def test_registered_options_class_is_kept():
    @attrs.frozen
    class Opts:
        gamma: float = 0.5

    class WithOptions:
        @modalbag.hookimpl
        def modalbag_register_schedulers(self, register):
            register("stepper", lambda *a: None, options=Opts)

    catalog = Catalog(scan=False)
    catalog.register_plugin(WithOptions(), name="with-options")
    comp = catalog.get("scheduler", "stepper")
    assert comp.options is Opts and comp.source.entry_point == "with-options"
    assert catalog.option_owners(["scheduler"]) == {"gamma": [comp]}


@pytest.mark.parametrize("order", ["built-in first", "bundle first"])
def test_a_bundle_registering_a_builtin_name_never_breaks_the_builtin(install, order):
    """Whichever is looked up first, the entry point named optimizer.adamw provides adamw; the bundle's
    other components still load, and the shadowed registration is said once."""
    import structlog

    install("fakeshadow", {"shadowing": "shadow_mod"}, {"shadow_mod": """
        from modalbag import hookimpl

        class Opt:
            def __init__(self, config, options):
                pass

        @hookimpl
        def modalbag_register_optimizers(register):
            register("adamw", Opt)
            register("shadowfree", Opt)
    """})
    catalog = Catalog()
    with structlog.testing.capture_logs() as logs:
        if order == "bundle first":
            assert catalog.get("optimizer", "shadowfree").source.distribution == "fakeshadow"
        adamw = catalog.get("optimizer", "adamw")
        assert catalog.get("optimizer", "shadowfree").source.distribution == "fakeshadow"
        assert catalog.get("optimizer", "adamw") is adamw and catalog.get("optimizer", "adamw") is adamw
    assert adamw.source.distribution == "modalbag" and adamw.source.entry_point == "optimizer.adamw"
    assert [e["component"] for e in logs if e["event"] == "plugin.name_shadowed"] == ["optimizer.adamw"]
