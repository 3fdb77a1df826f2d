"""Exporting a trained model for integration, loading it back, and the run directory's end and resume.

An export is a folder that another program (or another modalbag) can load without this Python
session and without running any code from the files (format: docs/export.md)::

    manifest.json          modalbag version, config, task, modality schema, bags, learner specs and
                           status, metrics, library versions, and every file's size and SHA-256
    ensemble.json/.npz     the ensemble's weighting state: out-of-bag predictions, targets, and the
                           greedy weights cached per availability pattern (JSON + arrays, no pickle)
    bags.npz               each bag's rows and out-of-bag rows
    learners/<id>/         each trained learner (`modalbag.store.learners`): neural weights as
                           safetensors, GBMs in their native formats, scikit-learn as arrays
    predictions/<id>.npz   each learner's predictions on its validation rows (rows, output, targets)

It is written to a temporary sibling folder and renamed into place, so a failure while exporting
leaves the previous export intact. `load_ensemble` verifies every checksum before it parses a file.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import EnsembleConfig, split_validation
from modalbag.data.dataset import MultimodalDataset, complete_rows, encode_labels
from modalbag.ensemble.combination import Combination
from modalbag.ensemble.ensemble import _OOB, Ensemble
from modalbag.errors import ArtifactError, ConfigError, ModalbagError, StorageError
from modalbag.io.artifacts import (
    atomic_directory,
    atomic_save_npz,
    atomic_write_json,
    check_format,
    file_entries,
    inside,
    load_npz,
    read_json,
    to_json,
    verify_files,
)
from modalbag.kernel.modalities import ModalitySpec
from modalbag.kernel.records import TrainedLearner
from modalbag.kernel.registry import default_catalog
from modalbag.kernel.run import TaskInfo
from modalbag.logs import get_logger
from modalbag.store.learners import load_learner, spec_from_dict, spec_to_dict, write_learner
from modalbag.store.runrecord import EXPORT_DIR, RUN_FILE, RunRecord, load_bags, merged_config, save_bags
from modalbag.version import __version__

log = get_logger("modalbag.persistence")

FORMAT = "modalbag.export"
VERSION = 1
MANIFEST = "manifest.json"
_CORE_LIBRARIES = ("numpy", "torch", "scikit-learn", "safetensors", "attrs", "pluggy", "structlog")
_DISTRIBUTION = {"sklearn": "scikit-learn"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class ModelStore:
    """A trained model's export, its reload check and its run-directory bookkeeping.

    Built over any object with the attributes these methods read (`modalbag.MultiModalEnsembleModel`
    delegates to it); it keeps no state of its own.
    """

    def __init__(self, model: Any):
        self.model = model

    # -- export -----------------------------------------------------------------------------------

    def export_training_artifacts(self, directory: str | Path) -> Path:
        """Write everything ensemble integration needs to ``directory`` (replaced atomically).

        Returns the directory. `modalbag.load_ensemble` reads it back into a model that predicts
        the same outputs; docs/export.md describes every file.
        """
        ensemble = self.model._require_ensemble()
        target = Path(directory)
        predictions = self.validation_predictions()
        with atomic_directory(target) as tmp:
            self._write_export(tmp, ensemble, predictions)
        self.model._export_dir = target
        log.info("model.exported", directory=str(target), learners=len(ensemble.learners))
        return target

    def validation_predictions(self) -> dict[str, dict[str, np.ndarray]]:
        """Each trained learner's output on its own validation rows: ``{id: {rows, output, targets}}``.

        Computed once from the training data (the same rows `get_training_summary` scores), or taken
        from the export a loaded model came from.
        """
        if self.model._validation_predictions is None:
            self.model._validation_predictions = self._compute_validation_predictions()
        return self.model._validation_predictions

    def _compute_validation_predictions(self) -> dict[str, dict[str, np.ndarray]]:

        cfg, dataset = self.model.training_config, self.model.dataset
        if cfg is None or dataset.labels is None or dataset.n_samples == 0:
            return {}
        targets, _ = encode_labels(dataset.labels, self.model.task_type, cfg.num_classes)
        bags = {b.id: b for b in self.model.bags or []}
        out = {}
        for lid, learner in self.model.learners.items():
            if not learner.ok or learner.spec.bag_id not in bags:
                continue
            bag = bags[learner.spec.bag_id]
            _, val_rows = split_validation(bag, cfg.validation_split, bag.seed, cfg.validation_strategy, targets)
            rows = complete_rows(val_rows, dataset.masks, learner.spec.modalities)
            inputs = {m: dataset.arrays[m][rows] for m in learner.spec.modalities}
            output = (np.asarray(learner.model.predict_output(inputs)) if len(rows)
                      else np.zeros((0, self.model.task.n_outputs)))
            out[lid] = {"rows": rows.astype(np.int64), "output": output, "targets": targets[rows]}
        return out

    def _write_export(self, root: Path, ensemble: Any, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> None:

        task, cfg = self.model.task, self.model.training_config
        learners = []
        libraries = {name: _version(name) for name in _CORE_LIBRARIES}
        for lid, learner in self.model.learners.items():
            entry: dict[str, Any] = {"learner_id": lid, "trainer": learner.spec.trainer, "status": learner.status,
                                     "modalities": list(learner.spec.modalities), "spec": spec_to_dict(learner.spec),
                                     "error": learner.error, "folder": None, "validation_predictions": None}
            if learner.ok:
                folder = root / "learners" / lid
                folder.mkdir(parents=True)
                write_learner(learner, folder)
                entry["folder"] = f"learners/{lid}"
                library = getattr(learner.model, "library", None)
                if isinstance(library, str):
                    name = _DISTRIBUTION.get(library.split(".")[0], library.split(".")[0])
                    libraries[name] = _version(name)
            if lid in predictions:
                atomic_save_npz(root / "predictions" / f"{lid}.npz", predictions[lid])
                entry["validation_predictions"] = f"predictions/{lid}.npz"
            learners.append(entry)
        if self.model.bags:
            save_bags(self.model.bags, root / "bags.npz")
        self._write_ensemble(root, ensemble)
        dataset = self.model.dataset
        manifest = {
            "format": FORMAT, "version": VERSION, "modalbag_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run_id": self.model.run_id,
            "task": {"task_type": task.task_type, "n_outputs": task.n_outputs,
                     "classes": None if task.classes is None else to_json(task.classes), "prior": to_json(task.prior)},
            "config": cfg.to_dict() if cfg is not None else None,
            "ensemble_config": (None if self.model.ensemble_config is None
                                else attrs.asdict(self.model.ensemble_config)),
            "modalities": {name: {"type": spec.type, "shape": list(spec.shape), "dtype": "float32",
                                  **({} if dataset.columns is None else {"columns": list(dataset.columns[name])})}
                           for name, spec in dataset.specs.items()},
            "bags": [{"id": b.id, "modalities": list(b.modalities), "seed": int(b.seed), "n_rows": int(len(b.rows)),
                      "n_oob_rows": int(len(b.oob_rows))} for b in self.model.bags or []],
            "learners": learners,
            "metrics": self._export_metrics(predictions),
            "libraries": {"python": platform.python_version(), **libraries},
        }
        manifest["files"] = file_entries(root)
        atomic_write_json(root / MANIFEST, to_json(manifest))

    def _export_metrics(self, predictions: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
        summary = self.model.get_training_summary()
        return {"average_performance": summary["average_performance"],
                "average_performance_source": summary["average_performance_source"],
                "learners": {lid: dict(r.validation) for lid, r in self.model.learners.items()},
                "validation_rows": {lid: int(len(p["rows"])) for lid, p in predictions.items()}}

    @staticmethod
    def _write_ensemble(root: Path, ensemble: Any) -> None:
        arrays: dict[str, np.ndarray] = {"targets": np.asarray(ensemble.targets)}
        if ensemble.row_weights is not None:  # domain_adaptation: combinations fitted later use them too
            arrays["row_weights"] = np.asarray(ensemble.row_weights, dtype=np.float64)
        oob = []
        for i, (lid, part) in enumerate(ensemble.oob.items()):
            arrays[f"oob_rows_{i}"], arrays[f"oob_output_{i}"] = part.rows, part.output
            oob.append({"learner_id": lid, "index": i})
        atomic_save_npz(root / "ensemble.npz", arrays)
        atomic_write_json(root / "ensemble.json", {
            "format": "modalbag.ensemble", "version": VERSION, "seed": ensemble.seed,
            "learners": list(ensemble.learners), "oob": oob, "cross_fitted": sorted(ensemble.cross_fitted),
            "combinations": [{"available": sorted(key), **combination.to_dict()}
                             for key, combination in ensemble.combinations.items()],
            "shared_combination": None if ensemble.shared is None else ensemble.shared.to_dict(),
            "diversity_weight": ensemble.diversity_weight})

    # -- integration check ------------------------------------------------------------------------

    def prepare_for_integration(self, directory: str | Path | None = None, *,
                                tolerance: float = 1e-6) -> dict[str, Any]:
        """Export (to ``directory``, else the last export, else a new temporary folder), reload the
        export, and check it: ``status``, ``compatibility_check`` per learner and
        ``performance_validation`` (reloaded predictions against this model's, on the learners'
        validation rows). ``status`` is "ready" when every learner loads with the same inputs and
        every prediction differs by at most ``tolerance``."""
        self.model._require_ensemble()
        if directory is not None:
            target = self.export_training_artifacts(directory)
        elif self.model._export_dir is not None and (self.model._export_dir / MANIFEST).is_file():
            target = self.model._export_dir
        else:
            target = self.export_training_artifacts(Path(tempfile.mkdtemp(prefix="modalbag-export-")) / "export")
        notes: list[str] = []
        try:
            reloaded = type(self.model).from_export(target, catalog=self.model.catalog)
        except ModalbagError as exc:
            return {"status": "failed", "export_dir": str(target), "compatibility_check": {},
                    "performance_validation": {}, "error": str(exc), "notes": [f"the export does not load: {exc}"]}
        compatibility = {lid: self._compatibility(lid, reloaded) for lid in self.model.learners}
        performance = self._performance(reloaded, notes)
        diffs = [v["max_abs_difference"] for v in performance["learners"].values()
                 if v["max_abs_difference"] is not None]
        if performance["ensemble"]["max_abs_difference"] is not None:
            diffs.append(performance["ensemble"]["max_abs_difference"])
        compatible = all(c["compatible"] for c in compatibility.values())
        ready = compatible and all(d <= tolerance for d in diffs)
        if not diffs:
            notes.append("no predictions could be compared (this model holds no training data): "
                         "performance_validation is unmeasured")
        return {"status": "ready" if ready else "not_ready", "export_dir": str(target),
                "compatibility_check": compatibility, "performance_validation": performance,
                "tolerance": tolerance, "notes": notes}

    def _compatibility(self, lid: str, reloaded: Any) -> dict[str, Any]:
        mine = self.model.learners[lid]
        theirs = reloaded.learners.get(lid)
        problems = []
        if theirs is None:
            problems.append("missing from the export")
        elif theirs.ok != mine.ok:
            problems.append(f"status {theirs.status!r} after reloading, {mine.status!r} here")
        elif mine.ok and type(theirs.model) is not type(mine.model):
            problems.append(f"reloaded as {type(theirs.model).__name__}, not {type(mine.model).__name__}")
        for m in mine.spec.modalities:
            here, there = self.model.dataset.specs.get(m), reloaded.dataset.specs.get(m)
            if there is None or (here.shape, here.type) != (there.shape, there.type):
                problems.append(f"modality {m!r}: {here} here, {there} in the export")
        return {"compatible": not problems, "trainer": mine.spec.trainer, "status": mine.status,
                "modalities": list(mine.spec.modalities), "problems": problems}

    def _performance(self, reloaded: Any, notes: list[str]) -> dict[str, Any]:
        dataset = self.model.dataset
        predictions = self.validation_predictions()
        learners: dict[str, Any] = {}
        for lid, stored in predictions.items():
            rows = stored["rows"]
            entry = {"n_rows": int(len(rows)), "max_abs_difference": None}
            if dataset.n_samples and len(rows) and lid in reloaded.learners:
                model = reloaded.learners[lid].model
                spec = reloaded.learners[lid].spec
                again = np.asarray(model.predict_output({m: dataset.arrays[m][rows] for m in spec.modalities}))
                entry["max_abs_difference"] = float(np.max(np.abs(again - stored["output"])))
            learners[lid] = entry
        ensemble = {"n_rows": 0, "max_abs_difference": None, "prediction_agreement": None}
        rows = np.unique(np.concatenate([p["rows"] for p in predictions.values()])) if predictions else np.zeros(0, int)
        if dataset.n_samples and len(rows):
            data = {m: np.where(dataset.masks[m][rows].reshape(-1, *[1] * (dataset.arrays[m].ndim - 1)),
                                dataset.arrays[m][rows], np.nan) for m in dataset.arrays}
            here, there = self.model.predict_details(data), reloaded.predict_details(data)
            ensemble = {"n_rows": int(len(rows)),
                        "max_abs_difference": float(np.max(np.abs(here.output - there.output))),
                        "prediction_agreement": float(np.mean(_same(here.predictions, there.predictions)))}
        elif not dataset.n_samples:
            notes.append("ensemble predictions were not compared: this model holds no training data")
        return {"learners": learners, "ensemble": ensemble,
                "source": "each learner's validation rows of the training data, predicted by this model and by the "
                          "reloaded export"}

    # -- the run directory ------------------------------------------------------------------------

    def resume_record(self, config: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """``train_ensemble(resume=True)``: the recorded run, and the configuration it continues with."""
        if not config.get("run_dir"):
            raise ConfigError("resume=True continues the run recorded in run_dir: pass run_dir=<the run directory>")
        record = RunRecord.read(config["run_dir"])
        return record, merged_config(record, config)

    def run_finished(self) -> None:
        """After training with ``run_dir``: export to ``<run_dir>/export`` and mark the run complete."""
        self.model._export_dir = self.model._validation_predictions = None  # they described the previous training
        cfg = self.model.training_config
        if cfg is None or not cfg.run_dir:
            return
        target = Path(cfg.run_dir) / EXPORT_DIR
        try:
            self.export_training_artifacts(target)
            record = RunRecord.read(cfg.run_dir)
            record.data["status"], record.data["export"] = "complete", EXPORT_DIR
            record.write()
        except OSError as exc:
            raise StorageError(target, "the ensemble is trained and ready in memory (predict works), but its "
                                       "export could not be written: free space or fix the permissions, then call "
                                       "model.export_training_artifacts(path), or resume the run "
                                       "(train_ensemble(resume=True, run_dir=...)) to write it there", exc) from exc


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return (a == b).reshape(len(a), -1).all(axis=1) if len(a) else np.zeros(0, bool)


# -- loading ------------------------------------------------------------------------------------


def export_directory(path: str | Path) -> Path:
    """The export folder for ``path``: an export itself, or a run directory holding one."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    if (path / EXPORT_DIR / MANIFEST).is_file():
        return path / EXPORT_DIR
    if (path / RUN_FILE).is_file():
        raise ArtifactError(path / RUN_FILE, "this run has no export yet (it did not finish): resume it with "
                                             "train_ensemble(resume=True, run_dir=...) to complete it")
    raise ArtifactError(path, f"holds no {MANIFEST}: not a modalbag export or run directory")


@attrs.frozen
class SavedEnsemble:
    """What an export holds, read and verified: what `modalbag.load_ensemble` rebuilds a model from."""

    root: Path
    catalog: Any
    dataset: Any  # a MultimodalDataset with the modalities' specs and no rows
    task: Any
    training_config: Any
    ensemble_config: Any
    bags: list[Any] | None
    learners: dict[str, Any]
    validation_predictions: dict[str, dict[str, np.ndarray]]
    ensemble: Any
    run_id: str | None


def read_export(path: str | Path, *, catalog: Any = None) -> SavedEnsemble:
    """Read an export folder (or a run directory's export) for `modalbag.load_ensemble`.

    Every file's checksum is verified before it is parsed; a missing, tampered, truncated or
    other-version file is an `ArtifactError` naming it.
    """
    root = export_directory(path)
    manifest_path = root / MANIFEST
    manifest = check_format(manifest_path, read_json(manifest_path, what="export manifest"), FORMAT, VERSION)
    verify_files(root, manifest.get("files"), manifest_path)
    catalog = catalog or default_catalog()
    try:
        return _read(root, manifest, catalog)
    except ModalbagError:
        raise
    except Exception as exc:  # noqa: BLE001 - a field of the right checksum but the wrong shape
        raise ArtifactError(manifest_path, f"does not describe a loadable ensemble "
                                           f"({type(exc).__name__}: {exc})") from exc


def _read(root: Path, manifest: Mapping[str, Any], catalog: Any) -> SavedEnsemble:
    manifest_path = root / MANIFEST
    t = manifest["task"]
    classes = None if t["classes"] is None else np.asarray(t["classes"])
    task = TaskInfo(str(t["task_type"]), int(t["n_outputs"]), classes, np.asarray(t["prior"], dtype=np.float64))
    specs = {name: ModalitySpec(name, s["type"], tuple(int(d) for d in s["shape"]))
             for name, s in manifest["modalities"].items()}
    # a model trained on a DataFrame's column groups reads them from a table again by these names
    columns = {name: [str(c) for c in s["columns"]] for name, s in manifest["modalities"].items() if "columns" in s}
    dataset = MultimodalDataset({n: np.zeros((0, *s.shape), np.float32) for n, s in specs.items()},
                                {n: np.zeros(0, dtype=bool) for n in specs}, specs, None,
                                columns if len(columns) == len(specs) else None)
    try:
        training_config = (None if manifest["config"] is None
                           else TrainingConfig.from_dict(manifest["config"], catalog=catalog))
    except ConfigError as exc:
        raise ArtifactError(manifest_path, f"its configuration is not valid here: {exc}") from exc
    ensemble_config = EnsembleConfig(**manifest["ensemble_config"]) if manifest.get("ensemble_config") else None
    bags = load_bags(manifest["bags"], root / "bags.npz") if (root / "bags.npz").is_file() else None
    learners: dict[str, TrainedLearner] = {}
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for entry in manifest["learners"]:
        lid = str(entry["learner_id"])
        if entry["folder"]:
            learners[lid] = load_learner(inside(root, entry["folder"], named_in=manifest_path), catalog)
        else:
            learners[lid] = TrainedLearner(spec_from_dict(entry["spec"]), str(entry["status"]), error=entry["error"])
        if entry.get("validation_predictions"):
            predictions[lid] = load_npz(inside(root, entry["validation_predictions"], named_in=manifest_path))
    return SavedEnsemble(root, catalog, dataset, task, training_config, ensemble_config, bags, learners, predictions,
                         _load_ensemble_state(root, task, learners), manifest.get("run_id"))


def _load_ensemble_state(root: Path, task: Any, learners: Mapping[str, Any]) -> Any:

    path = root / "ensemble.json"
    state = check_format(path, read_json(path, what="ensemble state"), "modalbag.ensemble", VERSION)
    arrays = load_npz(root / "ensemble.npz")
    missing = [lid for lid in state["learners"] if lid not in learners or not learners[lid].ok]
    if missing:
        raise ArtifactError(path, f"weighs learners {missing} that the export does not hold as trained")
    oob = {str(o["learner_id"]): _OOB(arrays[f"oob_rows_{o['index']}"], arrays[f"oob_output_{o['index']}"])
           for o in state["oob"]}
    # an export written before the combination rules kept only mean weights: those are refitted from `oob`
    combinations = {frozenset(c["available"]): Combination.from_dict(c) for c in state.get("combinations", [])}
    trained = {lid: learners[lid] for lid in state["learners"]}
    shared = state.get("shared_combination")  # absent before shared combinations: fitted again when needed
    return Ensemble(task, trained, arrays["targets"], oob, int(state.get("seed", 0)), combinations,
                    cross_fitted=frozenset(state.get("cross_fitted", ())),
                    shared=None if shared is None else Combination.from_dict(shared),
                    diversity_weight=float(state.get("diversity_weight", 0.0)),
                    row_weights=arrays.get("row_weights"))


__all__ = ["ModelStore", "SavedEnsemble", "export_directory", "read_export"]
