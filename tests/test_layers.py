"""The core's subpackages are layers: each imports only from the layers below it.

Counted with the project's import reader (`tests/import_reader.py`): imports inside functions and
under ``TYPE_CHECKING`` count like any other, since they are dependencies all the same. The known
exceptions are listed below with why each is there; the list may only shrink (an entry that no
longer occurs fails the test until it is removed).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.import_reader import imported_names, module_imports, module_name

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

#: Each subpackage's layer, lowest first: a module may import from its own subpackage and from lower
#: layers only. ``modalbag/__init__.py`` (the public facade) stands above them all.
LAYERS: dict[str, int] = {
    "errors": 0, "logs": 0, "version": 0,
    "io": 1,
    "config": 2,
    "kernel": 3,
    "data": 4,
    "training": 5, "denoising": 5,
    "ensemble": 6, "execution": 6,
    "store": 7,
    "engine": 8,
    "reports": 9,
    "api": 10, "sklearn": 10,
    "cli": 11,
}

#: Imports that still point up, and why. Each is debt: fix it and delete the line.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

#: Import cycles that remain, as sets of modules; none may grow and no other may appear. None is left:
#: keep it that way.
KNOWN_CYCLES: list[frozenset[str]] = []


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _graph() -> dict[str, set[tuple[int, str]]]:
    return module_imports(CORE, "modalbag")


def test_every_core_subpackage_has_a_layer():
    found = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found |= {p.stem for p in CORE.glob("*.py") if p.stem != "__init__"}
    assert found == set(LAYERS), "give the new subpackage a layer in tests/test_layers.py and docs/architecture.md"


def test_layers_point_one_way():
    upward: dict[tuple[str, str], list[int]] = {}
    for source, imports in _graph().items():
        if _layer(source) is None:  # the facade
            continue
        for line, target in imports:
            if _layer(target) is None:
                upward.setdefault((source, target), []).append(line)  # the facade imports every layer
            elif _layer(target) != _layer(source) and LAYERS[_layer(target)] > LAYERS[_layer(source)]:
                upward.setdefault((source, target), []).append(line)
    new = {f"{s} -> {t} (line {min(lines)})" for (s, t), lines in upward.items() if (s, t) not in KNOWN_UPWARD}
    assert not new, "imports pointing up a layer:\n" + "\n".join(sorted(new))
    stale = set(KNOWN_UPWARD) - set(upward)
    assert not stale, f"no longer imported, remove from KNOWN_UPWARD: {sorted(stale)}"


def _cycles(graph: dict[str, set[tuple[int, str]]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted({t for _, t in deps if t in graph}) for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_new_import_cycle():
    cycles = _cycles(_graph())
    unexpected = [sorted(c) for c in cycles if not any(c <= known for known in KNOWN_CYCLES)]
    assert not unexpected, f"new import cycles: {unexpected}"
    shrunk = [sorted(known) for known in KNOWN_CYCLES if known not in cycles]
    assert not shrunk, f"a known cycle shrank or broke: write what remains in KNOWN_CYCLES: {shrunk}"


def test_the_reader_sees_every_form_of_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import modalbag.kernel.run\nfrom modalbag.data import bags\n"
                      "def f():\n    from modalbag.engine.engine import Engine\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from modalbag.api.model import X\n"
                      "import importlib\nimportlib.import_module('modalbag.reports.plots')\n", encoding="utf-8")
    seen = sorted(alternatives[0] for _, alternatives in imported_names(sample))
    assert seen == ["importlib", "modalbag.api.model.X", "modalbag.data.bags", "modalbag.engine.engine.Engine",
                    "modalbag.kernel.run", "modalbag.reports.plots", "typing.TYPE_CHECKING"]


def test_a_cycle_is_found():
    graph = {"a": {(1, "b")}, "b": {(1, "c")}, "c": {(1, "a")}, "d": {(1, "a")}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


# -- what plugins may import ----------------------------------------------------------------------------

#: The parts of the core a plugin is written against: the kernel, the toolkits, and the foundation.
PLUGIN_API = ("kernel", "training", "denoising", "execution", "reports", "data", "io", "config", "errors", "logs",
              "version")

#: Plugins that still reach past the plugin API, and why. Each is debt: fix it and delete the line. None is
#: left: keep it that way.
KNOWN_PLUGIN_REACH: dict[tuple[str, str], str] = {}


def _plugin_reach() -> dict[tuple[str, str], int]:
    core = set(_graph())
    found: dict[tuple[str, str], int] = {}
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        name = module_name(path, ROOT / "plugins", "modalbag.plugins")
        for line, alternatives in imported_names(path, "modalbag.plugins"):
            target = next((a for a in alternatives if a in core), None)
            if target is None:
                target = next((a.rpartition(".")[0] for a in alternatives if a.rpartition(".")[0] in core), None)
            if target is None or target == "modalbag":
                continue
            if target.split(".")[1] not in PLUGIN_API:
                found.setdefault((name, target), line)
    return found


def test_plugins_import_only_the_plugin_api():
    reach = _plugin_reach()
    new = {f"{s} -> {t} (line {line})" for (s, t), line in reach.items() if (s, t) not in KNOWN_PLUGIN_REACH}
    assert not new, "plugins importing past modalbag's plugin API:\n" + "\n".join(sorted(new))
    stale = set(KNOWN_PLUGIN_REACH) - set(reach)
    assert not stale, f"no longer imported, remove from KNOWN_PLUGIN_REACH: {sorted(stale)}"


def test_the_kernel_names_resolve_to_their_homes():
    import modalbag.kernel as kernel

    for name in kernel.__all__:
        value = getattr(kernel, name)
        assert value is not None
    assert kernel.Run is __import__("modalbag.kernel.run", fromlist=["Run"]).Run
    try:
        kernel.no_such_name  # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown kernel name must raise AttributeError")


def test_the_model_delegates_instead_of_inheriting():
    """Its concerns are objects it delegates to (buildable over any object with its attributes), not mixins."""
    from modalbag import MultiModalEnsembleModel

    assert MultiModalEnsembleModel.__bases__ == (object,)


def test_an_import_inside_a_function_says_why():
    """Imports of modalbag modules belong at the top of the module, where the reader sees the
    dependency; the few that must wait (a heavy library, a layer up) carry the reason on their line."""
    silent = []
    for path in sorted(CORE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modalbag")
                        and "#" not in lines[node.lineno - 1]):
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert silent == [], "move these imports to the top of the module, or give the reason in a comment"
