"""The plugin kernel: what plugins are written against.

Markers, hook specs, the registry and the assembly of a run's active plugin set, the types hooks
receive (`Run`, `TaskInfo`, `BagData`, `FitState`, records, `ModalitySpec`), the trainer proposal
types, the schedule contract and the option validators. Every name below is importable from here
(``from modalbag.kernel import Run, hookimpl, positive``); each is loaded from its module on first
use, so importing one plugin loads only what it names.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the kernel module that defines it.
_HOMES: dict[str, str] = {
    "NAME": "markers", "hookimpl": "markers", "hookspec": "markers",
    "BagData": "run", "Run": "run", "TaskInfo": "run",
    "Control": "fit", "FitState": "fit", "Stash": "fit", "StashKey": "fit",
    "EpochRecord": "records", "LearnerSpec": "records", "TrainedLearner": "records",
    "MODALITY_TYPES": "modalities", "ModalitySpec": "modalities",
    "BagProfile": "proposals", "LearnerProposal": "proposals", "Learner": "protocols",
    "ConstantSchedule": "schedules", "LinearWarmup": "schedules", "Schedule": "schedules",
    "at_least_0_below_1": "options", "beta_pair": "options", "non_negative": "options", "positive": "options",
    "strictly_between_0_and_1": "options",
    "Catalog": "registry", "PluginInfo": "registry", "KIND_TABLE": "kinds", "Kind": "kinds", "default_catalog": "registry",
    "ActiveSet": "run", "Selected": "run", "build_options": "components", "Component": "component", "Register": "component",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'modalbag.kernel' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"modalbag.kernel.{home}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = sorted(_HOMES)
