"""The project's own import reader: which modules a source file imports, in every form.

Counts imports at module level, inside functions and under ``TYPE_CHECKING`` alike, relative
imports, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. The
meta-tests build on it: the core never imports a plugin (`tests/test_meta.py`) and the core's
layers point one way (`tests/test_layers.py`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


def imported_names(path: Path, package: str = "modalbag") -> Iterator[tuple[int, tuple[str, ...]]]:
    """``(line, alternatives)`` for every import in ``path``: ``import a.b`` gives ``("a.b",)``,
    ``from a import b`` gives ``("a.b", "a")`` (``a.b`` where it is a module, else a name in ``a``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, (alias.name,)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the package the file's folder stands for
                base = f"{package}.{base}".strip(".") if node.level == 1 else base
            for alias in node.names:
                yield node.lineno, (f"{base}.{alias.name}".strip("."), base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            yield node.lineno, (node.args[0].value,)


def module_name(path: Path, root: Path, package: str) -> str:
    """The dotted module name of ``path`` in the package whose source folder is ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def module_imports(root: Path, package: str) -> dict[str, set[tuple[int, str]]]:
    """Per module of the package in ``root``: the package's modules it imports, as ``(line, module)``.

    ``from a import b`` counts as importing module ``a.b`` where that is a module, else ``a``.
    """
    files = {module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    out: dict[str, set[tuple[int, str]]] = {}
    for name, path in files.items():
        found: set[tuple[int, str]] = set()
        for line, alternatives in imported_names(path, package):
            dotted = next((a for a in alternatives if a in files), alternatives[-1])
            while dotted and dotted not in files:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != name:
                found.add((line, dotted))
        out[name] = found
    return out
