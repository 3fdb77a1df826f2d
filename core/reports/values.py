"""Report dicts that print: an unmeasured value stays ``None``, and reading it shows why.

Reports keep ``None`` for what was not measured, with the reason under ``notes``: nothing is
invented. The spec's examples format report values directly (``f"{r['gpu_utilization']:.1%}"``), and
``format(None, ".1%")`` raises. A `Report` is a plain dict (``.get``, ``dict(r)``, iteration, JSON and
pickling see the stored ``None``), except that subscripting an unmeasured key returns `Unmeasured`:
a falsy null object that formats as ``"n/a (reason)"`` under any format spec, compares equal to
``None``, iterates as empty and subscripts to itself, so ``for k, v in r['clinical_importance'].items()``
prints nothing and ``r['feature_importance']['top_features']`` prints the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: The reason given for a ``None`` whose report left no note.
NO_NOTE = "not measured"


class Unmeasured:
    """A report value that was not measured: ``None`` with its reason, printable under any format spec."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __format__(self, spec: str) -> str:
        return f"n/a ({self.reason})"

    def __str__(self) -> str:
        return f"n/a ({self.reason})"

    def __repr__(self) -> str:
        return f"Unmeasured({self.reason!r})"

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, Unmeasured)

    def __hash__(self) -> int:
        return hash(None)

    # an unmeasured mapping or list: empty, and its parts are unmeasured for the same reason
    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, item: object) -> bool:
        return False

    def __getitem__(self, key: Any) -> Unmeasured:
        return self

    def get(self, key: Any, default: Any = None) -> Any:
        return default

    def items(self) -> tuple[()]:
        return ()

    def keys(self) -> tuple[()]:
        return ()

    def values(self) -> tuple[()]:
        return ()


def reasons_from_notes(notes: Any) -> dict[str, str]:
    """``{key: reason}`` from a report's ``notes``: a dict already, or ``"key: reason"`` lines."""
    if isinstance(notes, Mapping):
        return {str(k): str(v) for k, v in notes.items()}
    out: dict[str, str] = {}
    for line in notes or ():
        key, sep, reason = str(line).partition(": ")
        if sep and key not in out:
            out[key] = reason
    return out


class Report(dict):
    """A report's dict whose unmeasured values print as ``n/a (reason)`` when subscripted.

    Stored values are untouched (``None`` stays ``None`` for ``.get``, ``.items()``, ``dict(r)`` and
    JSON); ``r[key]`` returns `Unmeasured` for a ``None``, with the reason from ``reasons`` (else
    from the report's own ``notes``), and a nested dict as a `Report` whose reasons are the
    ``"key.sub"`` notes, falling back to the parent key's reason.
    """

    def __init__(self, data: Mapping[str, Any] = (), reasons: Mapping[str, str] | None = None):
        super().__init__(data)
        self.reasons: dict[str, str] = dict(reasons) if reasons is not None else reasons_from_notes(self.get("notes"))

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if value is None:
            return Unmeasured(self.reasons.get(str(key), NO_NOTE))
        if isinstance(value, dict) and not isinstance(value, Report):
            prefix = f"{key}."
            inherited = self.reasons.get(str(key))
            nested = {k[len(prefix):]: v for k, v in self.reasons.items() if k.startswith(prefix)}
            view = _NestedReport(value, nested)
            own = value.get("reason")  # a row that says why its values are missing (``{"reason": ...}``)
            view.fallback = inherited or (own if isinstance(own, str) else None)
            return view
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self), self.reasons))


class _NestedReport(Report):
    """A dict inside a report, as read through ``report[key]``: its iterated values print too (the spec
    loops ``for modality, score in r['modality_contributions'].items()``). Only handed to callers,
    never stored, so JSON writers never meet its `Unmeasured` values."""

    fallback: str | None = None

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Unmeasured) and str(key) not in self.reasons and self.fallback:
            return Unmeasured(self.fallback)
        return value

    def items(self):  # type: ignore[override]
        return [(k, self[k]) for k in self.keys()]

    def values(self):  # type: ignore[override]
        return [self[k] for k in self.keys()]


def as_report(data: Mapping[str, Any], reasons: Mapping[str, str] | None = None) -> Report:
    """``data`` as a `Report` (its ``notes`` give the reasons unless ``reasons`` does)."""
    return data if isinstance(data, Report) and reasons is None else Report(data, reasons)
