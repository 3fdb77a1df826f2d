"""The ``modalbag`` command line: train, validate, report, plugins, demo.

Importing this package imports click and the light parts of modalbag only; torch is imported when
a command trains or loads a model, so ``modalbag --help`` and ``modalbag plugins`` stay fast.
"""

from modalbag.cli.app import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, cli, main

__all__ = ["EXIT_CONFIG", "EXIT_OK", "EXIT_RUNTIME", "cli", "main"]
