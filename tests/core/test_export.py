"""Export for integration: the manifest, per-library formats, reloading, integration checks, and
atomic replacement (a failed export leaves the previous one intact)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest

import modalbag
from modalbag import ArtifactError, load_ensemble
from modalbag.data.synthetic import SyntheticTask
from tests.conftest import FAST, make_model

TINY = {**FAST, "epochs": 3, "threads_per_learner": 1}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Neural learners plus one xgboost learner (the tabular-only bag), trained with a run_dir."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    model = make_model(n_samples=180)
    model.create_ensemble(n_bags=3, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.learner_specs = [attrs.evolve(s, trainer="xgboost", architecture={}) if s.modalities == ("meta",) else s
                           for s in model.learner_specs]
    model.train_ensemble(**TINY, run_dir=str(run_dir))
    return model, run_dir


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_ends_with_an_export_and_a_complete_record(mixed):
    model, run_dir = mixed
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["format"] == "modalbag.export" and manifest["version"] == 1
    assert manifest["modalbag_version"] == modalbag.__version__ and manifest["run_id"] == model.run_id
    assert manifest["config"]["epochs"] == 3
    assert manifest["modalities"]["image"] == {"type": "image", "shape": [24], "dtype": "float32"}
    assert [b["modalities"] for b in manifest["bags"]] == [list(b.modalities) for b in model.bags]
    assert {e["trainer"] for e in manifest["learners"]} == {r.spec.trainer for r in model.learners.values()}
    assert manifest["libraries"]["torch"] and manifest["libraries"]["safetensors"]
    assert manifest["metrics"]["learners"]["bag_000"] == model.learners["bag_000"].validation
    root = run_dir / "export"
    listed = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == listed
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha(root / name)


def test_each_library_keeps_its_safe_format(mixed):
    model, run_dir = mixed
    learners = run_dir / "export" / "learners"
    for lid, learner in model.learners.items():
        files = {p.name for p in (learners / lid / "model").iterdir()}
        if learner.spec.trainer == "neural":
            assert "model.safetensors" in files
        else:
            assert learner.spec.trainer == "xgboost" and "model.json" in files
        assert not [f for f in files if f.endswith((".pt", ".pkl", ".pickle", ".joblib"))]


def test_reloaded_model_predicts_the_same_and_keeps_its_reports(mixed):
    model, run_dir = mixed
    data, labels = model.synthetic_task.sample(120, random_state=5)
    data["text"][:30] = np.nan  # some samples lack a modality
    for path in (run_dir, run_dir / "export"):
        reloaded = load_ensemble(path)
        np.testing.assert_array_equal(reloaded.predict_proba(data), model.predict_proba(data))
        np.testing.assert_array_equal(reloaded.predict(data), model.predict(data))
    summary = reloaded.get_training_summary()
    assert summary["epochs_trained"] == model.get_training_summary()["epochs_trained"]
    assert summary["learner_performance"] == model.get_training_summary()["learner_performance"]
    assert reloaded.evaluate(data, labels) == model.evaluate(data, labels)
    predictions = reloaded.validation_predictions()["bag_000"]
    assert len(predictions["rows"]) == len(predictions["output"]) > 0


def test_prepare_for_integration_reloads_and_checks(mixed, tmp_path):
    model, _ = mixed
    result = model.prepare_for_integration(tmp_path / "integration")
    assert result["status"] == "ready"
    assert set(result["compatibility_check"]) == set(model.learners)
    assert all(c["compatible"] for c in result["compatibility_check"].values())
    validation = result["performance_validation"]
    assert all(v["max_abs_difference"] == 0.0 for v in validation["learners"].values())
    assert validation["ensemble"]["prediction_agreement"] == 1.0 and validation["ensemble"]["n_rows"] > 0
    reloaded = load_ensemble(tmp_path / "integration")
    again = reloaded.prepare_for_integration()  # no training data here: measured where possible
    assert again["status"] == "ready" and again["performance_validation"]["ensemble"]["max_abs_difference"] is None
    assert any("no training data" in n for n in again["notes"])


def test_a_failed_export_leaves_the_previous_export_intact(mixed, tmp_path, monkeypatch):
    model, _ = mixed
    target = tmp_path / "export"
    model.export_training_artifacts(target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    from modalbag.store.persistence import ModelStore

    def fail(root, ensemble):
        (root / "half-written").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setattr(ModelStore, "_write_ensemble", staticmethod(fail))
    with pytest.raises(OSError, match="disk full"):
        model.export_training_artifacts(target)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary folder left behind
    load_ensemble(target)


@pytest.mark.parametrize("trainer", ["random_forest", "sklearn_linear", "lightgbm", "catboost"])
def test_tabular_learners_round_trip(trainer, tmp_path):
    task = SyntheticTask.create({"a": (5, "tabular"), "b": (4, "tabular")}, n_classes=3, random_state=1)
    data, labels = task.sample(150, random_state=0)
    model = modalbag.create_model_from_arrays(data, labels)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(instantiate=False, trainers=[trainer])
    model.train_ensemble(**TINY)
    model.export_training_artifacts(tmp_path)
    reloaded = load_ensemble(tmp_path)
    test, _ = task.sample(60, random_state=1)
    np.testing.assert_allclose(reloaded.predict_proba(test), model.predict_proba(test), rtol=0, atol=1e-6)
    if trainer == "random_forest":
        assert (tmp_path / "learners" / "bag_000" / "model" / "model.npz").is_file()


def test_forest_exports_and_reloads_without_skops(tmp_path, monkeypatch):
    """A core install (no skops) chose random forests, trained them, then could not store them."""
    task = SyntheticTask.create({"a": (5, "tabular")}, n_classes=2, random_state=1)
    data, labels = task.sample(120, random_state=0)
    model = modalbag.create_model_from_arrays(data, labels)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["random_forest"])
    model.train_ensemble(**TINY)
    monkeypatch.setitem(sys.modules, "skops", None)  # as if skops were not installed
    monkeypatch.setitem(sys.modules, "skops.io", None)
    root = model.export_training_artifacts(tmp_path / "export")
    test, _ = task.sample(50, random_state=2)
    np.testing.assert_allclose(load_ensemble(root).predict_proba(test), model.predict_proba(test), rtol=0, atol=1e-12)


def test_tampered_truncated_missing_and_other_version_files_are_named(mixed, tmp_path):
    model, _ = mixed

    def fresh(name: str) -> Path:
        return model.export_training_artifacts(tmp_path / name)

    root = fresh("tampered")
    weights = root / "learners" / "bag_000" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.safetensors.*SHA-256"):
        load_ensemble(root)

    root = fresh("truncated")
    target = root / "ensemble.npz"
    target.write_bytes(target.read_bytes()[:50])
    with pytest.raises(ArtifactError, match=r"ensemble\.npz.*truncated"):
        load_ensemble(root)

    root = fresh("missing")
    (root / "predictions" / "bag_001.npz").unlink()
    with pytest.raises(ArtifactError, match=r"bag_001\.npz.*missing"):
        load_ensemble(root)

    root = fresh("version")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["version"] = 99
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"manifest\.json.*version 99"):
        load_ensemble(root)

    with pytest.raises(ArtifactError, match="not a modalbag export"):
        load_ensemble(tmp_path / "nowhere")
