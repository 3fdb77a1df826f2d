"""``modalbag plugins``: what is installed, read from metadata; ``--verbose`` loads each to check it."""

from __future__ import annotations

import json
from typing import Any

import click

from modalbag.cli.output import table
from modalbag.kernel.kinds import KINDS
from modalbag.kernel.registry import default_catalog


def plugin_rows(kind: str | None = None, *, load: bool = False, catalog: Any = None) -> list[dict[str, Any]]:
    """One row per installed plugin: name, kind, distribution, version, module and load status.

    Without ``load`` nothing is imported and the status says so (``not loaded``). With ``load`` each
    plugin module is imported on its own (a failure is recorded against that plugin alone) and its
    components, summaries and option names are added.
    """

    catalog = catalog or default_catalog()
    rows = []
    for info in catalog.available(kind):
        row: dict[str, Any] = {"name": info.name, "kind": info.kind or "bundle", "distribution": info.distribution,
                               "version": info.version, "module": info.module, "status": "not loaded"}
        if load:
            entry_point = f"{info.kind}.{info.name}" if info.kind else info.name
            try:
                if info.distribution == "<direct>":
                    components = [catalog.get(info.kind, info.name)]
                else:
                    components = catalog.load_entry_point(entry_point)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not fatal
                row["status"] = f"failed: {exc}"
            else:
                row["status"] = "ok"
                row["components"] = [
                    {"name": c.qualified_name, "summary": c.summary,
                     "options": _options(c.options)} for c in components]
        rows.append(row)
    return rows


def _options(options_cls: type | None) -> dict[str, Any]:
    if options_cls is None:
        return {}
    import attrs

    out = {}
    for field in attrs.fields(options_cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else None
        out[field.name] = default if isinstance(default, (int, float, str, bool, type(None))) else repr(default)
    return out


@click.command()
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only plugins of this kind.")
@click.option("--verbose", is_flag=True, help="Load each plugin: check it imports, show its summary and options.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(kind: str | None, verbose: bool, as_json: bool) -> None:
    """List installed plugins (name, kind, distribution, version, load status).

    Installed is not active: a run uses only the components its configuration names. Listing reads
    package metadata and imports no plugin unless --verbose asks to load them.
    """

    rows = plugin_rows(kind, load=verbose)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(f"no {kind + ' ' if kind else ''}plugins installed")
        return
    click.echo(table(["name", "kind", "distribution", "version", "status"],
                     [[r["name"], r["kind"], r["distribution"], r["version"], r["status"]] for r in rows]))
    if verbose:
        for row in rows:
            for comp in row.get("components", []):
                options = ", ".join(f"{k}={v!r}" for k, v in comp["options"].items()) or "no options"
                click.echo(f"\n{comp['name']} ({row['distribution']} {row['version']}, {row['module']})")
                if comp["summary"]:
                    click.echo(f"  {comp['summary']}")
                click.echo(f"  options: {options}")
    failed = [r for r in rows if r["status"].startswith("failed")]
    if failed:
        click.echo(f"Error: {len(failed)} plugin(s) failed to load: {', '.join(r['name'] for r in failed)}", err=True)
        raise click.exceptions.Exit(1)


__all__ = ["plugin_rows", "plugins"]
