"""The command group, its global options and how errors become exit codes.

Exit codes: 0 success; 1 a runtime failure (training failed, a plugin failed to load, a bug);
2 a usage or configuration error (bad option, invalid config file, unreadable data). Errors go to
stderr as one message; the traceback of a `ModalbagError` is shown only with ``--debug``.
"""

from __future__ import annotations

import traceback
from typing import Any

import click

from modalbag.cli import demo, plugins, runs
from modalbag.cli.logsetup import configure_logging
from modalbag.errors import (
    ConfigError,
    DataError,
    MissingPluginError,
    ModalbagError,
    UnknownPluginError,
)

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2

#: Errors that mean "the input is wrong" (exit 2) rather than "running it failed" (exit 1).
_INPUT_ERRORS = (ConfigError, DataError, UnknownPluginError, MissingPluginError)


def exit_code(error: BaseException) -> int:
    """The exit code for an error a command raised."""
    return EXIT_CONFIG if isinstance(error, _INPUT_ERRORS) else EXIT_RUNTIME


class _Group(click.Group):
    """Turns a `ModalbagError` into a message on stderr and an exit code, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModalbagError as exc:
            if (ctx.obj or {}).get("debug"):
                click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
            click.echo(f"Error: {exc}", err=True)
            for note in getattr(exc, "__notes__", ()):
                click.echo(note, err=True)
            ctx.exit(exit_code(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modalbag", prog_name="modalbag")
@click.option("--debug", is_flag=True, help="Show tracebacks for modalbag errors and log at debug level.")
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr instead of console lines.")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", count=True, help="Less log output (-q: warnings only, -qq: errors only).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_json: bool, verbose: int, quiet: int) -> None:
    """Multimodal ensembles that stay accurate when modalities go missing.

    Train from a TOML run config, check one, report on a finished run, list installed plugins, or
    run the Quick Start demo. Logs go to stderr; results to stdout.
    """

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["quiet"] = quiet
    steps = ["debug", "info", "warning", "error"]
    level = steps[max(0, min(3, 1 - (verbose + debug) + quiet))]
    ctx.call_on_close(configure_logging(level, json=log_json))


def _register_commands() -> None:
    for command in (runs.train, runs.validate, runs.report, plugins.plugins, demo.demo):
        cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``modalbag = "modalbag.cli:main"``)."""
    cli.main(args=argv, prog_name="modalbag")


__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_RUNTIME", "cli", "exit_code", "main"]
