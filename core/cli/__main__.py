"""``python -m modalbag.cli``: the same as the ``modalbag`` command."""

from modalbag.cli import main

main()
