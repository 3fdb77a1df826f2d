"""Project invariants: entry points match plugins/, every hook is documented, tested and has a kind,
and the core never imports a plugin module."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
from pathlib import Path

import attrs
import pytest

from modalbag import Catalog
from modalbag.kernel import hookspecs
from modalbag.kernel.kinds import KINDS
from modalbag.kernel.markers import NAME
from tests.import_reader import imported_names

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENTRY_POINTS: dict[str, str] = PYPROJECT["project"]["entry-points"][NAME]
DOCS = ROOT / "docs" / "hooks.md"

HOOKSPECS = {name: fn for name, fn in vars(hookspecs).items()
             if name.startswith(f"{NAME}_") and inspect.isfunction(fn)}
REGISTRATION_HOOKS = sorted(name for name in HOOKSPECS if name.startswith(f"{NAME}_register_"))


def _plugin_modules() -> set[str]:
    """Every plugin: a module of a kind's folder, or a package there (``trainers/neural/``), whose
    ``_parts`` are not plugins; modules named ``_helper`` are not plugins either."""
    plugins = ROOT / "plugins"
    found = set()
    for path in plugins.rglob("*.py"):
        parts = path.relative_to(plugins).with_suffix("").parts
        if len(parts) == 3 and parts[2] == "__init__":  # a plugin package
            found.add(".".join(("modalbag", "plugins", *parts[:2])))
        elif len(parts) == 2 and not parts[1].startswith("_"):
            found.add(".".join(("modalbag", "plugins", *parts)))
    return found


def signature_text(fn) -> str:
    """``name(param: Annotation, ...) -> Return`` as written in hookspecs.py (annotations unquoted)."""
    sig = inspect.signature(fn)
    params = ", ".join(p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
                       for p in sig.parameters.values())
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{fn.__name__}({params}){ret}"


def _normalize(text: str) -> str:
    return " ".join(text.replace("`", "").split())


# --- (a) entry points and plugin modules -----------------------------------------------------------


def test_hookspec_discovery_is_not_empty():
    assert len(HOOKSPECS) >= len(KINDS) and REGISTRATION_HOOKS


def test_entry_points_match_plugin_modules_exactly():
    values = list(ENTRY_POINTS.values())
    assert len(values) == len(set(values)), "two entry points name the same module"
    assert set(values) == _plugin_modules()


def test_every_package_is_listed_for_the_wheel():
    """pyproject names the packages one by one; one left out is missing from the wheel, though an
    editable install still finds it."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    roots = {Path(folder): name for name, folder in setuptools["package-dir"].items()}
    found = {".".join((name, *init.parent.relative_to(ROOT / folder).parts))
             for folder, name in roots.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert found == set(setuptools["packages"])


#: Import names whose distribution is named otherwise.
DISTRIBUTION_OF = {"sklearn": "scikit-learn"}


def test_every_third_party_import_is_a_declared_requirement():
    """An import of an undeclared library works here (it happens to be installed) and fails on a
    user's machine: every one, at module level or inside a function, must be a dependency or an extra."""
    import re

    project = PYPROJECT["project"]
    declared = {re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower()
                for req in [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values()
                                                       for r in reqs)]}
    missing = {}
    for folder in ("core", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top == "modalbag":
                        continue
                    if DISTRIBUTION_OF.get(top, top).lower() not in declared:
                        missing.setdefault(top, str(path.relative_to(ROOT)))
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_installed_metadata_matches_pyproject(fresh_catalog):
    installed = {r.module: (r.kind, r.name) for r in fresh_catalog.available() if r.distribution == "modalbag"}
    declared = {module: tuple(name.split(".", 1)) for name, module in ENTRY_POINTS.items()}
    assert installed == declared, "the editable install is stale: rerun pip install -e ."


@pytest.fixture(scope="module")
def fresh_catalog():
    return Catalog()


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_entry_point_name_matches_what_its_module_registers(entry_point, fresh_catalog):
    kind, dot, component = entry_point.partition(".")
    assert dot and kind in KINDS, f"{entry_point!r} is not '<kind>.<component>'"
    components = fresh_catalog.load_entry_point(entry_point)
    assert [(c.kind, c.name) for c in components] == [(kind, component)]
    assert components[0].source.value == ENTRY_POINTS[entry_point]


# --- (b) hookspecs are documented ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_hookspec_is_a_marked_spec_with_a_docstring(name):
    fn = HOOKSPECS[name]
    assert hasattr(fn, f"{NAME}_spec"), f"{name} lacks @hookspec"
    assert inspect.getdoc(fn) and len(inspect.getdoc(fn)) > 20, f"{name} needs a docstring"


EXPECTED_HEADINGS = {name: signature_text(fn) for name, fn in HOOKSPECS.items()}


@pytest.mark.xfail(not DOCS.exists(), strict=False, reason="docs/hooks.md not written yet")
@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_hookspec_has_a_heading_in_docs(name):
    headings = [_normalize(line.lstrip("#")) for line in DOCS.read_text(encoding="utf-8").splitlines()
                if re.match(r"#{1,6}\s", line)]
    expected = _normalize(EXPECTED_HEADINGS[name])
    assert any(expected in heading for heading in headings), f"no heading in docs/hooks.md contains {expected!r}"


def test_signature_text_is_the_written_signature():
    assert signature_text(hookspecs.modalbag_register_optimizers) == \
        "modalbag_register_optimizers(register: Register) -> None"
    assert signature_text(hookspecs.modalbag_backward) == \
        "modalbag_backward(run: Run, fit: FitState, loss: torch.Tensor) -> bool | None"


# --- (c) hookspecs are tested ----------------------------------------------------------------------


def _other_test_text() -> str:
    here = Path(__file__).resolve()
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py") if p.resolve() != here)


_TEST_TEXT = _other_test_text()


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(not re.search(rf"\b{n}\b", _TEST_TEXT), strict=False,
                                            reason="no test mentions this hook yet"))
    for n in sorted(HOOKSPECS)
])
def test_hookspec_is_mentioned_by_a_test(name):
    assert re.search(rf"\b{name}\b", _TEST_TEXT), f"no file under tests/ mentions {name}"


# --- (d) registration hooks and KINDS ---------------------------------------------------------------


def test_every_registration_hook_has_a_kind():
    assert sorted(KINDS.values()) == REGISTRATION_HOOKS
    for kind, hook in KINDS.items():
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        assert hook == f"{NAME}_register_{plural}"


# --- (e) the core never imports a plugin ------------------------------------------------------------


def _plugin_imports(path: Path) -> list[str]:
    return [f"{path.name}:{line}: {name}" for line, alternatives in imported_names(path)
            for name in {alternatives[0], alternatives[-1]}
            if name == "modalbag.plugins" or name.startswith("modalbag.plugins.")]


def test_plugin_import_detector_sees_every_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import modalbag.plugins.optimizers.sgd\nfrom modalbag import plugins\n"
                      "from .plugins.trainers import neural\nimport importlib\n"
                      "importlib.import_module('modalbag.plugins.x')\nimport modalbag.kernel.registry\n", encoding="utf-8")
    assert sorted({f.split(": ")[1] for f in _plugin_imports(sample)}) == [
        "modalbag.plugins", "modalbag.plugins.optimizers.sgd", "modalbag.plugins.trainers",
        "modalbag.plugins.trainers.neural", "modalbag.plugins.x"]


def test_core_never_imports_a_plugin_module():
    files = sorted((ROOT / "core").rglob("*.py"))
    assert files
    offenders = [hit for path in files for hit in _plugin_imports(path)]
    assert offenders == []


# --- (f) one atomic writer ----------------------------------------------------------------------------


def test_only_the_artifacts_module_renames_files_into_place():
    """Atomic writes have one home (`modalbag.io.artifacts`: temporary sibling, fsync, rename, directory
    fsync); a second hand-rolled writer is how a directory fsync gets forgotten."""
    home = ROOT / "core" / "io" / "artifacts.py"
    offenders = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_kind_table_is_the_one_list_of_kinds():
    """Every kind has a registration hook spec and a role; the options that name components are config keys."""
    from modalbag import TrainingConfig
    from modalbag.kernel.kinds import KIND_TABLE, ROLES

    config_keys = {f.name for f in attrs.fields(TrainingConfig)}
    for kind in KIND_TABLE:
        assert kind.hook in HOOKSPECS and kind.role in ROLES
        assert kind.option is None or kind.option in config_keys, kind
    executor = next(k for k in KIND_TABLE if k.name == "executor")
    assert executor.fallback in Catalog().names("executor")  # the declared fallback is installed
