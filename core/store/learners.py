"""One trained learner as a folder: its model in its trainer's own safe format, its record as JSON.

    <folder>/model/        what the trainer's ``save(path)`` writes (neural: safetensors + JSON;
                           GBMs: their native files; scikit-learn: arrays) - never pickle
    <folder>/record.json   spec, status, epoch records, validation metrics, notes, training time
    <folder>/manifest.json every file above with its size and SHA-256

A trainer makes its learners storable by giving them ``save(path)`` and a classmethod
``load(path)``. The folder is written to a temporary sibling and renamed into place, and loading
checks every checksum before any file is parsed. The run directory keeps finished learners this
way (so a resumed run loads them instead of retraining), and exports hold one per learner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from modalbag.errors import ArtifactError, ModalbagError, PluginError
from modalbag.io.artifacts import (
    atomic_directory,
    atomic_write_json,
    check_format,
    file_entries,
    read_json,
    to_json,
    verify_files,
)
from modalbag.kernel.records import EpochRecord, LearnerSpec, TrainedLearner

FORMAT = "modalbag.learner"
VERSION = 1
MODEL_DIR = "model"
RECORD_FILE = "record.json"
MANIFEST = "manifest.json"


def spec_to_dict(spec: LearnerSpec) -> dict[str, Any]:
    return to_json(attrs.asdict(spec))


def spec_from_dict(data: Mapping[str, Any]) -> LearnerSpec:
    data = dict(data)
    data["modalities"] = tuple(data["modalities"])
    data["modality_types"] = dict(data.get("modality_types") or {})
    data["architecture"] = dict(data.get("architecture") or {})
    data["candidates"] = tuple(data.get("candidates") or ())
    data["measured"] = {str(k): dict(v) for k, v in (data.get("measured") or {}).items()}
    return LearnerSpec(**data)


def learner_record(learner: TrainedLearner) -> dict[str, Any]:
    """Everything about a learner but its model, as plain data."""
    return {"format": FORMAT, "version": VERSION, "spec": spec_to_dict(learner.spec), "status": learner.status,
            "records": [to_json(r.to_dict()) for r in learner.records], "training_time": learner.training_time,
            "error": learner.error, "validation": dict(learner.validation), "notes": list(learner.notes),
            "checkpoint": learner.checkpoint}


def write_learner(learner: TrainedLearner, folder: Path) -> None:
    """Write the learner's files into ``folder`` (which exists and is empty), manifest last."""
    model = learner.model
    if learner.ok:
        if not callable(getattr(model, "save", None)) or not callable(getattr(type(model), "load", None)):
            raise PluginError(f"trainer {learner.spec.trainer!r} gives its learners no save(path)/load(path), so "
                              f"learner {learner.learner_id!r} cannot be written to disk")
        model.save(folder / MODEL_DIR)
    atomic_write_json(folder / RECORD_FILE, learner_record(learner))
    atomic_write_json(folder / MANIFEST, {"format": FORMAT, "version": VERSION, "files": file_entries(folder)})


def save_learner(learner: TrainedLearner, folder: str | Path) -> Path:
    """Write ``learner`` to ``folder`` atomically (the previous folder stays until the new one is whole)."""
    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        write_learner(learner, tmp)
    return folder


def load_learner(folder: str | Path, catalog: Any) -> TrainedLearner:
    """A learner written by `save_learner`, checksums verified before anything is parsed."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = check_format(manifest_path, read_json(manifest_path, what="saved learner"), FORMAT, VERSION)
    verify_files(folder, manifest.get("files"), manifest_path)
    record_path = folder / RECORD_FILE
    data = check_format(record_path, read_json(record_path, what="learner record"), FORMAT, VERSION)
    try:
        spec = spec_from_dict(data["spec"])
        records = [EpochRecord.from_dict(r) for r in data["records"]]
        learner = TrainedLearner(spec, str(data["status"]), records=records,
                                 training_time=float(data["training_time"]), error=data["error"],
                                 validation=dict(data["validation"]), notes=list(data["notes"]),
                                 checkpoint=data.get("checkpoint"))
    except Exception as exc:  # noqa: BLE001 - a field missing or mistyped: a damaged record
        raise ArtifactError(record_path, f"is not a valid learner record ({type(exc).__name__}: {exc})") from exc
    if learner.ok:
        component = catalog.get("trainer", spec.trainer)
        loader = getattr(component.factory, "load", None)
        if loader is None:
            raise PluginError(f"trainer {spec.trainer!r} cannot load saved learners (its factory has no load)")
        try:
            learner.model = loader(folder / MODEL_DIR)
        except ModalbagError:
            raise
        except Exception as exc:  # noqa: BLE001 - the library's own parse errors: a damaged model file
            raise ArtifactError(folder / MODEL_DIR, f"the {spec.trainer!r} model cannot be loaded "
                                                     f"({type(exc).__name__}: {exc})") from exc
    return learner


__all__ = ["load_learner", "save_learner", "spec_from_dict", "spec_to_dict", "write_learner"]
