"""Every option of every built-in plugin has help text: docs/configuration.md (written by
docs/gen_config.py) shows it as the option's meaning, so a field without ``metadata={"help": ...}``
would leave an empty cell there."""

from __future__ import annotations

import attrs

from modalbag.kernel.kinds import KINDS
from modalbag.kernel.registry import Catalog


def test_every_builtin_plugin_option_has_help_text() -> None:
    catalog = Catalog()
    checked, missing = 0, []
    for kind in KINDS:
        for component in catalog.components(kind):
            if component.source.distribution != "modalbag" or component.options is None:
                continue
            for field in attrs.fields(component.options):
                checked += 1
                help_text = field.metadata.get("help")
                if not (isinstance(help_text, str) and help_text.strip()):
                    missing.append(f"{kind} {component.name}: {field.name}")
    assert checked, "no option of a built-in plugin was found: is modalbag installed with its plugins?"
    assert not missing, (f"{len(missing)} built-in plugin options have no help text (add "
                         f"metadata={{'help': ...}} to the attrs field):\n" + "\n".join(missing))
