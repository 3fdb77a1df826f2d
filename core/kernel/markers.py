"""The one name that ties modalbag's plugin system together.

`NAME` is the pluggy project name, the hook prefix and the entry-point group, so a third-party
package registers with ``[project.entry-points.modalbag]`` and marks its hooks with `hookimpl`.
"""

from __future__ import annotations

import pluggy

NAME = "modalbag"

hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)

__all__ = ["NAME", "hookimpl", "hookspec"]
