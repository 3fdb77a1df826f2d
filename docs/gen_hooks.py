"""Write docs/hooks.md from the hook specifications' signatures and docstrings.

    python docs/gen_hooks.py          # rewrite docs/hooks.md
    python docs/gen_hooks.py --check  # exit 1 when docs/hooks.md is out of date (the tests run this)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from modalbag.kernel import hookspecs
from modalbag.kernel.kinds import KIND_TABLE
from modalbag.kernel.markers import NAME

PER_STEP = ("modalbag_autocast", "modalbag_auxiliary_losses", "modalbag_backward", "modalbag_optimizer_step")
TARGET = Path(__file__).with_name("hooks.md")

INTRO = """\
# Hook reference

modalbag's plugin contract, generated from `modalbag.kernel.hookspecs` (`core/kernel/hookspecs.py`) by
`docs/gen_hooks.py`. A plugin marks its implementations with `modalbag.hookimpl`.

- **Registration hooks** are implemented by plugin *modules* found through the `modalbag` entry-point
  group. Each is called once when the module loads, with a `register(name, factory, *, options=None,
  summary="")` callable, and builds nothing: installed is not active.
- **Run hooks** are implemented by component *instances* that a run's configuration activates. The
  engine registers them, in configuration order, into a plugin manager that belongs to that run only.
  Broadcast hooks collect every result in that order; *firstresult* hooks stop at the first
  implementation that returns something other than `None`.
- **Per-step hooks** are the four the training loop calls on every step; each costs one pluggy call.

## When a hook raises

One plugin's exception never discards a run (`modalbag.kernel.isolation`):

- A hook that **owns behaviour** (`fit_setup`, `fit_start`, `epoch_end` of a validator, `fit_end`,
  the per-step hooks, ...) fails the learner being fitted: it is recorded as failed with the error,
  the other learners train, and the ensemble is built from those that did.
- An **observing** hook (`run_end`, `fit_error`, `log_step`) only reports: its exception is
  logged (`plugin.hook_failed`, once per plugin and hook), recorded in `run.json` under
  `plugin_failures`, and the other plugins are still called. The trained learners and the export
  are kept.
- An **observer** (a kind marked *observer* below: sinks) is isolated in every hook: its first
  exception (a full disk, a revoked permission, a lost tracking server) disables that instance for
  the rest of the run with one warning, and training goes on without it.
- The run's own record (`run.json`, the learners' folders) is written by modalbag itself: a run
  directory that cannot be written at the start is a `StorageError` before training; once training
  runs, a failed write is logged once and training goes on in memory, and an export that cannot be
  written raises a `StorageError` that says the trained ensemble is ready in memory.
"""


def signature_text(fn: object) -> str:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(p.name if p.annotation is p.empty else f"{p.name}: {p.annotation}"
                       for p in sig.parameters.values())
    ret = "" if sig.return_annotation is sig.empty else f" -> {sig.return_annotation}"
    return f"{fn.__name__}({params}){ret}"  # type: ignore[attr-defined]


def render() -> str:
    specs = {n: f for n, f in vars(hookspecs).items() if n.startswith(f"{NAME}_") and inspect.isfunction(f)}
    groups = [
        ("Registration hooks", [n for n in specs if n.startswith(f"{NAME}_register_")]),
        ("Run hooks", [n for n in specs if not n.startswith(f"{NAME}_register_") and n not in PER_STEP]),
        ("Per-step hooks", [n for n in specs if n in PER_STEP]),
    ]
    lines = [INTRO, "## Component kinds", "",
             "One row per kind (`modalbag.kernel.kinds.KIND_TABLE`): adding a kind is a row there and a "
             "registration hook spec.", "",
             "| kind | registration hook | named by | role | what it does |", "|---|---|---|---|---|"]
    for kind in KIND_TABLE:
        named = f"`{kind.option}`" if kind.option else "-"
        fallback = f" (default `{kind.fallback}`)" if kind.fallback else ""
        role = f"{kind.role}, observer" if kind.observer else kind.role
        lines.append(f"| `{kind.name}` | `{kind.hook}` | {named}{fallback} | {role} | {kind.summary} |")
    lines.append("")
    for title, names in groups:
        lines += [f"## {title}", ""]
        for name in names:
            fn = specs[name]
            first = " (firstresult)" if getattr(fn, f"{NAME}_spec", {}).get("firstresult") else ""
            lines += [f"### `{signature_text(fn)}`{first}", "", inspect.cleandoc(fn.__doc__ or ""), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if TARGET.read_text(encoding="utf-8") == text else 1)
    TARGET.write_text(text, encoding="utf-8")
