"""Loading never unpickles untrusted data: planted pickles are refused without running, even with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1; every torch.load in the code base says weights_only=True."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from modalbag import ArtifactError, load_ensemble
from modalbag.io.artifacts import load_npz, safe_torch_load, sha256_file
from modalbag.kernel.registry import default_catalog
from modalbag.store.learners import load_learner
from tests.conftest import FAST, make_model

ROOT = Path(__file__).resolve().parents[2]


class Planted:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(params=["0", "1"], ids=["default", "force-no-weights-only"])
def env(request, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", request.param)
    return request.param


def test_the_planted_payload_is_live(tmp_path, monkeypatch):
    """Control: the payload does run when unpickled, and torch.load without an explicit
    weights_only runs it once the environment variable flips the default."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Planted(marker)))
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pt"
    torch.save({"model": Planted(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning):
        torch.load(path)  # what modalbag never does
    assert marker.exists()


@pytest.mark.parametrize("as_zip", [True, False], ids=["torch-zip", "raw-pickle"])
def test_planted_checkpoint_is_refused_without_running(tmp_path, env, as_zip):
    marker = tmp_path / "ran"
    path = tmp_path / "state_0001.pt"
    if as_zip:
        torch.save({"format": "modalbag.training_state", "model": Planted(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"model": Planted(marker)}, protocol=2))
    with pytest.raises(ArtifactError, match=r"state_0001\.pt: refused"):
        safe_torch_load(path)
    assert not marker.exists()


def test_planted_training_state_fails_the_learner_not_the_machine(tmp_path, env):
    """An attacker who rewrites a run's checkpoint *and* its manifest still cannot run code."""
    options = {**FAST, "epochs": 2, "save_checkpoints": True, "threads_per_learner": 1, "enable_denoising": False}
    model = make_model(n_samples=120)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(run_dir=str(tmp_path / "run"), **options)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    record["learners"]["bag_000"] = {"status": "pending"}  # as if it had been interrupted
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    folder = tmp_path / "run" / "checkpoints" / "bag_000"
    manifest = json.loads((folder / "manifest.json").read_text())
    state = folder / manifest["current"]["state"]
    marker = tmp_path / "ran"
    torch.save({"format": "modalbag.training_state", "model": Planted(marker)}, state)
    manifest["files"][state.name]["sha256"] = sha256_file(state)
    manifest["files"][state.name]["bytes"] = state.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resumed = make_model(n_samples=120)
    resumed.create_ensemble(n_bags=1, random_state=0)
    resumed.select_base_learners(trainers=["neural"], instantiate=False)
    with pytest.raises(Exception, match="refused"):
        resumed.train_ensemble(resume=True, run_dir=str(tmp_path / "run"), **options)
    assert not marker.exists()
    assert "refused" in resumed.learners["bag_000"].error


def test_pickled_arrays_are_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "predictions.npz"
    np.savez(path, rows=np.array([Planted(marker)], dtype=object))
    with pytest.raises(ArtifactError, match="predictions.npz"):
        load_npz(path)
    assert not marker.exists()


def test_skops_model_with_an_unreviewed_type_is_refused(tmp_path):
    skops_io = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    from modalbag import create_model_from_arrays
    from modalbag.data.synthetic import SyntheticTask

    task = SyntheticTask.create({"a": (4, "tabular")}, n_classes=2, random_state=0)
    data, labels = task.sample(100, random_state=0)
    model = create_model_from_arrays(data, labels)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["random_forest"])
    model.train_ensemble(**{**FAST, "threads_per_learner": 1})
    root = model.export_training_artifacts(tmp_path / "export")
    folder = root / "learners" / "bag_000"
    # a forest saved in skops format, as modalbag's first releases did, whose file holds another type
    skops_io.dump(FunctionTransformer(func=print), folder / "model" / "model.skops")
    learner_json = folder / "model" / "learner.json"
    learner_json.write_text(json.dumps(json.loads(learner_json.read_text()) | {"model_files": ["model.skops"]}))
    manifest = json.loads((folder / "manifest.json").read_text())  # the attacker fixes the checksums too
    for name in ("model/model.skops", "model/learner.json"):
        manifest["files"][name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="refusing to load"):
        load_learner(folder, default_catalog())


def _calls(tree: ast.AST, owner: str, names: tuple[str, ...]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names:
            value = node.func.value
            if isinstance(value, ast.Name) and value.id == owner:
                yield node


def test_every_torch_load_is_explicitly_weights_only_and_no_model_file_is_unpickled():
    sources = [p for folder in ("core", "plugins") for p in (ROOT / folder).rglob("*.py")]
    torch_loads, unpickles = [], []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree, "torch", ("load",)):
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            torch_loads.append((path.name, isinstance(flag, ast.Constant) and flag.value is True))
        for owner in ("pickle", "cloudpickle", "joblib", "dill"):
            unpickles += [f"{path.relative_to(ROOT)}:{c.lineno}" for c in _calls(tree, owner, ("load", "loads"))]
    assert torch_loads and all(ok for _, ok in torch_loads), torch_loads
    # the only unpickling: executors' in-memory transport of jobs between processes (never a file)
    assert all(u.startswith("core/execution/workers.py") for u in unpickles), unpickles


def test_export_with_a_damaged_safetensors_header_names_the_file(tmp_path):
    model = make_model(n_samples=120)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 2, "threads_per_learner": 1})
    root = model.export_training_artifacts(tmp_path / "export")
    weights = root / "learners" / "bag_000" / "model" / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + b"{not json")
    folder = root / "learners" / "bag_000"
    for manifest_path, names in ((folder / "manifest.json", ["model/model.safetensors"]),
                                 (root / "manifest.json", ["learners/bag_000/model/model.safetensors",
                                                           "learners/bag_000/manifest.json"])):
        manifest = json.loads(manifest_path.read_text())  # checksums made to match: the parser must cope
        for name in names:
            path = manifest_path.parent / name
            manifest["files"][name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: is not a valid safetensors file"):
        load_ensemble(root)


def test_export_manifest_cannot_point_outside_its_folder(tmp_path):
    (tmp_path / "secret").write_text("x")
    root = tmp_path / "export"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({
        "format": "modalbag.export", "version": 1,
        "files": {"../secret": {"sha256": sha256_file(tmp_path / "secret"), "bytes": 1}}}))
    with pytest.raises(ArtifactError, match="outside its directory"):
        load_ensemble(root)
