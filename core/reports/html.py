"""One self-contained HTML file per run: tables of the training reports and the PNG plots inline.

Images are embedded as ``data:image/png;base64`` URIs and there is no script, stylesheet or font to
fetch, so the file opens anywhere, offline, and can be mailed or archived as it is. Every piece of
text is HTML-escaped. The file is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modalbag.io.artifacts import atomic_write_bytes
from modalbag.reports.values import Unmeasured

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.note { color: #666; font-size: 0.85em; }
.headline { font-size: 1.25em; }
"""


def fmt(value: Any) -> str:
    """A value as table text: floats to 4 significant digits, None as an em dash."""
    if value is None or isinstance(value, Unmeasured):  # a report read through Report[key]
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) or "\u2014"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "\u2014"
    return str(value)


def key_value_table(values: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in values.items())
    return f"<table>{rows}</table>"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def notes(lines: Sequence[str]) -> str:
    """Small print under a table: what a figure was measured on, why one is missing."""
    return f"<p class='note'>{'<br>'.join(map(html.escape, lines))}</p>" if lines else ""


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """A complete HTML document: ``sections`` are (heading, already-safe HTML body) pairs."""
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{content}</section>" for h, content in sections)
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory, fsync, rename."""
    target = Path(path)
    atomic_write_bytes(target, text.encode("utf-8"))
    return target


__all__ = ["fmt", "image", "key_value_table", "notes", "page", "paragraph", "table", "write_atomic"]
