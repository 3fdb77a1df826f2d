"""Structured logging for the library: silent until the application configures logging.

Unconfigured, ``structlog.get_logger()`` prints to stdout; a library must not. So modalbag wraps
stdlib loggers named ``modalbag.<module>``: the CLI (or the user) decides where they go.
"""

from __future__ import annotations

import logging

import structlog


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger over the stdlib logger ``name`` (for example ``modalbag.engine.engine``)."""
    return structlog.wrap_logger(logging.getLogger(name), wrapper_class=structlog.stdlib.BoundLogger)


__all__ = ["get_logger"]
