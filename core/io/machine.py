"""The machine a run or a benchmark ran on, read from the machine itself: its figures are re-measured
elsewhere, so every report and benchmark says where they came from.

Library versions come from the installed distributions' metadata, so describing the machine imports
none of them (no torch import for a report written without training).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from modalbag.version import __version__

#: CPU flags that change which precision is fast (bf16 units, AMX tiles).
PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
#: Distributions whose versions a report names beside modalbag's.
LIBRARIES = ("torch", "numpy", "scikit-learn", "scipy", "xgboost", "lightgbm", "catboost", "ray")


def _cpu() -> tuple[str | None, set[str]]:
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the model from platform, the flags unknown
        pass
    return model or platform.processor() or None, flags


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


#: Other distributions that install a library under its import name (CPU-only builds).
ALTERNATIVES = {"xgboost": ("xgboost-cpu",)}


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names`` (absent distributions are left out); a library installed from
    an alternative distribution (``xgboost-cpu``) is reported under its name with that version."""
    out = {}
    for name in names:
        for dist in (name, *ALTERNATIVES.get(name, ())):
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            out[name] = version if dist == name else f"{version} ({dist})"
            break
    return out


def describe_machine() -> dict[str, Any]:
    """CPU model and precision flags (``None`` where they cannot be read), cores, memory, OS, Python,
    and the versions of modalbag and the libraries it trains with."""
    model, flags = _cpu()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": model,
        "flags": {flag: (flag in flags) if flags else None for flag in PRECISION_FLAGS},
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "modalbag": __version__,
        "libraries": library_versions(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """`describe_machine` as one line of text."""
    flags = ", ".join(f"{k} {'?' if v is None else 'yes' if v else 'no'}" for k, v in info["flags"].items())
    libraries = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return (f"{info['cpu'] or 'unknown CPU'} ({flags}); {info['usable_cores']} usable of {info['cpu_count']} cores, "
            f"{info['memory_gib']} GiB; {info['platform']}; python {info['python']}, modalbag {info['modalbag']}, "
            f"{libraries}")


__all__ = ["LIBRARIES", "PRECISION_FLAGS", "describe_machine", "library_versions", "machine_line"]
