"""Training-state checkpoints: layout, manifest checksums, interval, crash consistency, plugin state.

The hooks ``modalbag_checkpoint_state`` and ``modalbag_restore_state`` carry each plugin's per-fit
state (early stopping, the checkpoint validator, denoising weighting, the loss scaler).
"""

from __future__ import annotations

import gc
import hashlib
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from modalbag import ArtifactError, TrainingConfig
from modalbag.io.artifacts import safe_torch_load
from modalbag.plugins.validators.checkpoint import Checkpoint, CheckpointOptions
from modalbag.training.checkpoints import (
    LearnerCheckpoints,
    capture,
    checkpoint_root,
    flush,
    restore,
)
from tests.conftest import FAST, make_model

TINY = {**FAST, "threads_per_learner": 1, "save_checkpoints": True}


def _train(tmp_path: Path, **options):
    model = make_model(n_samples=150)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(instantiate=False, trainers=["neural"])
    model.train_ensemble(**{**TINY, **options})
    return model


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_root_follows_checkpoint_dir_then_run_dir(tmp_path):
    assert checkpoint_root(TrainingConfig()) is None
    assert checkpoint_root(TrainingConfig(run_dir=str(tmp_path))) == tmp_path / "checkpoints"
    assert checkpoint_root(TrainingConfig(run_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "c"))) == tmp_path / "c"


def test_interval_states_are_listed_with_checksums_and_pruned(tmp_path):
    _train(tmp_path, epochs=5, checkpoint_interval=2, keep_best_only=False, checkpoint_dir=str(tmp_path / "a"))
    folder = tmp_path / "a" / "bag_000"
    manifest = json.loads((folder / "manifest.json").read_text())
    states = sorted(name for name in manifest["files"] if name.startswith("state_"))
    assert states == ["state_0002.pt", "state_0004.pt", "state_0005.pt"]  # every 2nd epoch, and the last
    assert manifest["current"]["state"] == "state_0005.pt"
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha(folder / name) and entry["bytes"] == (folder / name).stat().st_size
    assert sorted(p.name for p in folder.iterdir()) == sorted([*manifest["files"], "manifest.json"])

    _train(tmp_path, epochs=5, checkpoint_interval=2, keep_best_only=True, checkpoint_dir=str(tmp_path / "b"))
    names = sorted(p.name for p in (tmp_path / "b" / "bag_000").iterdir())
    assert [n for n in names if n.startswith("state_")] == ["state_0005.pt"]
    assert len([n for n in names if n.startswith("best_")]) == 1


def test_state_holds_everything_a_resume_needs(tmp_path):
    model = _train(tmp_path, epochs=4, early_stopping_patience=3, enable_denoising=True, run_dir=str(tmp_path / "run"))
    state = safe_torch_load(next((tmp_path / "run" / "checkpoints" / "bag_000").glob("state_*.pt")))
    assert state["epoch"] == 4 and state["run_id"] == model.run_id
    assert len(state["records"]) == 4
    assert state["records"][0]["train_loss"] == model.learners["bag_000"].records[0].train_loss
    assert state["optimizer"]["state"], "the optimizer's moments are saved"
    assert any(k.startswith("aux.") for k in state["model"]), "the objective modules are saved with the model"
    assert {"validator.early_stopping", "validator.checkpoint", "denoising"} <= set(state["plugins"])
    assert isinstance(state["generator"], torch.Tensor) and isinstance(state["torch_rng"], torch.Tensor)
    assert state["numpy_rng"]["name"] == "MT19937" and state["schedule"] is not None
    assert state["step"] > 0 and state["step"] % 4 == 0  # four whole epochs of steps


def test_capture_and_restore_continue_a_schedule_exactly():
    from modalbag.kernel.schedules import LinearWarmup
    from modalbag.plugins.schedulers.cosine_restarts import (
        CosineRestarts,
        CosineRestartsOptions,
    )

    def build():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return optimizer, LinearWarmup(optimizer, CosineRestarts(optimizer, 2, CosineRestartsOptions(), 3), 4)

    opt_a, a = build()
    for _ in range(7):
        a.after_batch()
    snapshot, opt_state = capture(a), opt_a.state_dict()
    opt_b, b = build()
    restore(b, snapshot)
    opt_b.load_state_dict(opt_state)
    assert b.step == 4 and b.inner.steps == 3
    for _ in range(5):
        a.after_batch(), b.after_batch()
        assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]


def test_a_crash_before_the_manifest_update_leaves_the_previous_state(tmp_path, monkeypatch):
    store = LearnerCheckpoints(tmp_path, "bag_000", "run-1")
    store.add("state", 1, {"format": "modalbag.training_state", "epoch": 1})
    flush()
    import modalbag.training.checkpoints as checkpoints

    def crash(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(checkpoints, "atomic_write_json", crash)
    store.add("state", 2, {"format": "modalbag.training_state", "epoch": 2})  # queued: written in the background
    with pytest.raises(OSError, match="killed"):  # the write's error surfaces at the flush
        flush()
    monkeypatch.undo()
    assert store.load("state")["epoch"] == 1  # the manifest still names an intact file


def test_tampered_state_is_refused_naming_the_file(tmp_path):
    store = LearnerCheckpoints(tmp_path, "bag_000", "run-1")
    path = store.add("state", 3, {"format": "modalbag.training_state", "epoch": 3, "w": torch.ones(8)})
    flush()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"state_0003\.pt.*SHA-256"):
        store.load("state")
    path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(ArtifactError, match="state_0003"):
        store.load("state")


def test_state_of_another_run_is_ignored(tmp_path):
    LearnerCheckpoints(tmp_path, "bag_000", "run-1").add("state", 1, {"format": "modalbag.training_state"})
    assert LearnerCheckpoints(tmp_path, "bag_000", "run-2").load("state") is None


def test_plugin_state_hooks_round_trip_early_stopping(tmp_path):
    """modalbag_checkpoint_state / modalbag_restore_state: early stopping's patience and best weights."""
    from modalbag.kernel.fit import FitState
    from modalbag.kernel.records import EpochRecord
    from modalbag.plugins.validators.early_stopping import (
        BEST,
        EarlyStopping,
        EarlyStoppingOptions,
    )

    stopper = EarlyStopping(TrainingConfig(early_stopping_patience=2), EarlyStoppingOptions())
    fit = FitState(spec=None, bag=None, model=torch.nn.Linear(2, 1))
    for epoch, loss in enumerate([1.0, 0.5, 0.7], start=1):
        stopper.modalbag_epoch_end(run=None, fit=fit, record=EpochRecord(epoch=epoch, train_loss=loss))
    state = stopper.modalbag_checkpoint_state(run=None, fit=fit)
    fresh = FitState(spec=None, bag=None, model=torch.nn.Linear(2, 1))
    stopper.modalbag_restore_state(run=None, fit=fresh, state=state)
    assert (fresh.stash[BEST].value, fresh.stash[BEST].epoch) == (0.5, 2)
    stopper.modalbag_epoch_end(run=None, fit=fresh, record=EpochRecord(epoch=4, train_loss=0.6))
    assert fresh.control.should_stop  # patience counted across the resume: epochs 3 and 4 without improvement


def test_queued_writes_snapshot_tensors_and_keep_their_order(tmp_path):
    store = LearnerCheckpoints(tmp_path, "bag_000", "run-1")
    weights = torch.zeros(4)
    for epoch in (1, 2, 3):
        store.add("state", epoch, {"format": "modalbag.training_state", "epoch": epoch, "w": weights})
        weights += 1  # training mutates tensors in place right after queueing
    state = store.load("state")  # waits for the queue
    assert state["epoch"] == 3 and torch.equal(state["w"], torch.full((4,), 2.0))
    assert sorted(p.name for p in tmp_path.glob("state_*.pt")) == ["state_0003.pt"]


def test_a_run_without_a_place_to_keep_checkpoints_removes_its_temporary_folder(tmp_path, monkeypatch):
    made = []

    def recording_mkdtemp(*args, **kwargs):
        made.append(Path(real_mkdtemp(*args, **kwargs)))
        return str(made[-1])

    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    model = _train(tmp_path, epochs=2)
    ours = [p for p in made if p.name.startswith(f"modalbag-{model.run_id}-")]
    assert len(ours) == 1 and not ours[0].exists()  # made for the run, gone after it
    assert all(r.checkpoint is None for r in model.learners.values())  # no record points at removed files


def test_a_failed_run_removes_its_temporary_folder_too(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    plugin = Checkpoint(TrainingConfig(), CheckpointOptions())
    plugin.modalbag_run_start(run=SimpleNamespace(run_id="failed"))  # the run raises before run_end
    folder = plugin.directory
    assert folder is not None and folder.is_dir()
    del plugin
    gc.collect()
    assert not folder.exists()


def test_checkpoints_in_checkpoint_dir_are_kept(tmp_path):
    model = _train(tmp_path, epochs=2, checkpoint_dir=str(tmp_path / "keep"))
    kept = [Path(r.checkpoint) for r in model.learners.values() if r.checkpoint]
    assert kept and all(p.is_file() and p.is_relative_to(tmp_path / "keep") for p in kept)
