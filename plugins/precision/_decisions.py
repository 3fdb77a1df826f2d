"""Precision decisions kept per machine (not a plugin: the ``amp`` plugin's memory).

A decision measured by timing would otherwise change with the machine's load from one run to the
next, and with it the trained weights: two runs of the same config and seed must predict the same.
So the first measurement of a learner's training step on a machine is written to a small JSON file
and every later run on that machine (a rerun, a resume) reads it instead of measuring again.

The key names what the timing depends on: the CPU model and its bf16 flags, the torch version and
thread count, the device, and the learner's step (every parameter's name and shape, the batch size,
the run's active plugins). The file lives in ``$MODALBAG_CACHE_DIR``, else
``$XDG_CACHE_HOME/modalbag``, else ``~/.cache/modalbag``; it is written atomically, and a cache that
cannot be read or written leaves the decision to this run alone (the learner's notes say so).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from modalbag.io.artifacts import atomic_write_json

FILE_NAME = "precision-decisions.json"


def cache_path() -> Path:
    root = os.environ.get("MODALBAG_CACHE_DIR")
    if root:
        return Path(root) / FILE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modalbag" / FILE_NAME


def decision_key(machine: dict[str, Any], step: dict[str, Any]) -> str:
    """A stable digest of what the measured timing depends on (see the module docstring)."""
    text = json.dumps({"machine": machine, "step": step}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def read_decision(key: str) -> dict[str, Any] | None:
    """The kept decision for ``key``, or None (none kept, or the file unreadable)."""
    try:
        with open(cache_path(), encoding="utf-8") as fh:
            found = json.load(fh).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, dict) and "dtype" in found else None


def keep_decision(key: str, decision: dict[str, Any]) -> str | None:
    """Add ``decision`` to the machine's file; the reason it could not be kept, or None."""
    path = cache_path()
    try:
        try:
            with open(path, encoding="utf-8") as fh:
                kept = json.load(fh)
            if not isinstance(kept, dict):
                kept = {}
        except (OSError, ValueError):
            kept = {}
        kept[key] = decision
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, kept)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


__all__ = ["cache_path", "decision_key", "keep_decision", "read_decision"]
