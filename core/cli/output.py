"""Plain-text rendering of results for the terminal (stdout): tables and training summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart; ``None`` shows as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_summary(summary: Mapping[str, Any]) -> str:
    """A training summary (`MultiModalEnsembleModel.get_training_summary`) as text."""
    task = summary.get("task_type", "?")
    head = (f"run {summary.get('run_id') or '-'} ({task}): {summary.get('total_learners', 0)} learners, "
            f"{summary.get('trained', 0)} trained, {summary.get('failed', 0)} failed")
    lines = [head]
    average = {k: v for k, v in (summary.get("average_performance") or {}).items() if v is not None}
    if average:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in average.items())
        lines.append(f"average validation {shown}")
    status = summary.get("learner_status") or {}
    performance = summary.get("learner_performance") or {}
    metrics = list(average) or sorted({k for p in performance.values() for k in p})[:3]
    rows = []
    for lid in status:
        rows.append([lid, status[lid], (summary.get("epochs_trained") or {}).get(lid),
                     (summary.get("training_times") or {}).get(lid),
                     "+".join((summary.get("modalities") or {}).get(lid, []))]
                    + [(performance.get(lid) or {}).get(m) for m in metrics])
    if rows:
        lines += ["", table(["learner", "status", "epochs", "seconds", "modalities", *metrics], rows)]
    plugins = summary.get("active_plugins")
    if plugins:
        lines += ["", "active plugins: " + ", ".join(plugins)]
    unavailable = summary.get("unavailable_candidates") or {}
    if unavailable:
        lines += ["", "candidates not measured (not installed; installing them may change the choice):"]
        lines += [f"  {name}: {reason}" for name, reason in unavailable.items()]
    errors = summary.get("errors") or {}
    if errors:
        lines += ["", "errors:"] + [f"  {lid}: {err}" for lid, err in errors.items()]
    return "\n".join(lines)


__all__ = ["format_summary", "table"]
