"""Every code block in README.md, CONTRIBUTING.md and docs/*.md runs; the generated references are current;
the plugin author's guide is enough to write, install and test a new plugin.

How blocks run (docs/ authors: see CONTRIBUTING.md):

- ```python blocks of one file run in order in one namespace, in a scratch directory that has
  ``examples/`` linked in. Training is shrunk so the suite stays fast (at most 1 epoch, 2 bags and
  200 synthetic samples); only that the code runs is checked, not its numbers.
- A block whose first line is ``# file: PATH`` is written to PATH in the scratch directory instead
  (a TOML config a later command reads, a plugin package's module); a Python file under ``src/``
  becomes importable for the rest of the document.
- ```toml blocks must parse; ```bash / ```console lines that run ``modalbag ...`` are run through
  click's CliRunner and must exit 0; other command lines must name files that exist in the repository.
- ```text blocks are output and are skipped. Any other language fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import modalbag
from modalbag.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.DOTALL | re.MULTILINE)
KNOWN = {"python", "toml", "bash", "console", "sh", "text"}
FILE_MARK = re.compile(r"^#\s*file:\s*(\S+)\s*$")

#: Caps on training while docs run: (function, argument, cap).
SHRINK = {"epochs": 1, "n_bags": 2, "n_samples": 200}


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of every fenced block, with the fence's indentation removed."""
    text = path.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["body"].splitlines())
        out.append((match["lang"] or "", code, text.count("\n", 0, match.start()) + 1))
    return out


def test_fence_parser_finds_blocks_and_languages(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("a\n```python\nx = 1\n```\n- item\n  ```bash\n  modalbag --help\n  ```\n```text\nout\n```\n",
                   encoding="utf-8")
    assert blocks(doc) == [("python", "x = 1", 2), ("bash", "modalbag --help", 6), ("text", "out", 9)]


@pytest.fixture
def shrunk_training(monkeypatch):
    model_cls = modalbag.MultiModalEnsembleModel
    train, create = model_cls.train_ensemble, model_cls.create_ensemble
    synthetic = modalbag.create_synthetic_model

    def small_train(self, *args, **kwargs):
        kwargs["epochs"] = min(kwargs.get("epochs", 100), SHRINK["epochs"])
        return train(self, *args, **kwargs)

    def small_ensemble(self, n_bags=20, *args, **kwargs):
        return create(self, min(n_bags, SHRINK["n_bags"]), *args, **kwargs)

    def small_synthetic(modalities, n_samples=1000, *args, **kwargs):
        return synthetic(modalities, min(n_samples, SHRINK["n_samples"]), *args, **kwargs)

    monkeypatch.setattr(model_cls, "train_ensemble", small_train)
    monkeypatch.setattr(model_cls, "create_ensemble", small_ensemble)
    monkeypatch.setattr(modalbag, "create_synthetic_model", small_synthetic)


def _command_lines(code: str, lang: str) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if lang == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line and not line.startswith("#"):
            lines.extend(part.strip() for part in line.split("&&"))
    return lines


def _check_command(line: str, scratch: Path) -> None:
    args = shlex.split(line, comments=True)
    if not args:
        return
    if args[0] == "modalbag":
        result = CliRunner().invoke(cli, args[1:], catch_exceptions=False)
        assert result.exit_code == 0, f"{line!r} exited {result.exit_code}:\n{result.stderr}"
        return
    for arg in args[1:]:  # a command other than modalbag: the repository files it names must exist
        candidate = arg.split("[")[0].strip("'\"")
        if arg.startswith("-") or "/" not in candidate and not candidate.endswith((".py", ".txt", ".toml")):
            continue
        if candidate.startswith(("http", "runs/", "my_")) or candidate in (".", "./"):
            continue
        assert (ROOT / candidate).exists() or (scratch / candidate).exists(), f"{line!r}: {candidate} does not exist"


def _write(scratch: Path, target: str, code: str, added: list[str]) -> None:
    path = scratch / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code + "\n", encoding="utf-8")
    parts = Path(target).parts
    if path.suffix == ".py" and "src" in parts:
        src = str(scratch.joinpath(*parts[:parts.index("src") + 1]))
        if src not in sys.path:
            sys.path.insert(0, src)
            added.append(src)


def run_document(path: Path, scratch: Path) -> None:
    os.symlink(ROOT / "examples", scratch / "examples")
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    added: list[str] = []
    try:
        for lang, code, line in blocks(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            assert lang in KNOWN, f"{where}: unknown code block language {lang!r}; tag output blocks as text"
            first = code.splitlines()[0] if code.strip() else ""
            mark = FILE_MARK.match(first)
            if mark and lang in ("python", "toml"):
                if lang == "toml":
                    tomllib.loads(code)
                _write(scratch, mark.group(1), code, added)
            elif lang == "python":
                try:
                    exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the docs are ours
                except Exception as exc:
                    raise AssertionError(f"{where}: the python block raised {type(exc).__name__}: {exc}") from exc
            elif lang == "toml":
                try:
                    tomllib.loads(code)
                except tomllib.TOMLDecodeError as exc:
                    raise AssertionError(f"{where}: invalid TOML: {exc}") from exc
            elif lang in ("bash", "console", "sh"):
                for command in _command_lines(code, lang):
                    _check_command(command, scratch)
    finally:
        for src in added:
            sys.path.remove(src)
            for name in [m for m, mod in sys.modules.items() if str(getattr(mod, "__file__", "")).startswith(src)]:
                del sys.modules[name]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_runs(path, tmp_path, monkeypatch, shrunk_training):
    monkeypatch.chdir(tmp_path)
    run_document(path, tmp_path)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(path):
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith(("http://", "https://", "mailto:")):
            assert (path.parent / target).exists(), f"{path.relative_to(ROOT)} links to missing {target}"


# -- generated references ------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["gen_config.py", "gen_hooks.py"])
def test_generated_reference_is_current(script):
    done = subprocess.run([sys.executable, str(ROOT / "docs" / script), "--check"], capture_output=True, text=True,
                          check=False, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"docs/{script} --check failed: rerun python docs/{script}\n{done.stderr}"


def test_configuration_reference_covers_every_option():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    import attrs

    for field in attrs.fields(modalbag.TrainingConfig):
        if not field.metadata.get("internal"):
            assert f"| `{field.name}` |" in text, field.name
    for key in ("[data.synthetic]", "[data.modalities.<name>]", "`n_bags`", "`optimization_strategy`", "`betas`"):
        assert key in text


# -- the plugin author's guide ---------------------------------------------------------------------------


def test_a_new_plugin_can_be_written_installed_and_tested_from_the_guide(tmp_path):
    """Write the files docs/plugin_guide.md shows, pip-install the package, and run its own tests."""
    written = []
    for lang, code, _ in blocks(ROOT / "docs" / "plugin_guide.md"):
        mark = FILE_MARK.match(code.splitlines()[0]) if code.strip() else None
        if mark and lang in ("python", "toml"):
            target = tmp_path / mark.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code + "\n", encoding="utf-8")
            written.append(target.relative_to(tmp_path).as_posix())
    package = {p.split("/")[0] for p in written}
    assert len(package) == 1, f"the guide's files should form one package, got {sorted(package)}"
    root = tmp_path / package.pop()
    assert (root / "pyproject.toml").is_file() and any("tests/" in p for p in written)
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--target", str(site), str(root)], capture_output=True, text=True, check=False,
                             timeout=300)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                           capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path, env=env)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert re.search(r"\b[2-9] passed\b", tests.stdout), tests.stdout[-500:]
