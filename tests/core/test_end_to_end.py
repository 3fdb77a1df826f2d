"""End to end: bags -> learners -> training -> predictions with modalities missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalbag import (
    DataError,
    MissingPluginError,
    NotFittedError,
    TrainingFailedError,
    UnknownPluginError,
    create_model_from_arrays,
    hookimpl,
)
from tests.conftest import FAST, catalog_without, make_model, with_missing


def test_trains_every_bag_and_reports_measured_summary(trained_model):
    summary = trained_model.get_training_summary()
    assert summary["total_learners"] == 7 and summary["failed"] == 0
    assert set(summary["training_times"]) == {f"bag_{i:03d}" for i in range(7)}
    assert all(t > 0 for t in summary["training_times"].values())
    acc = summary["average_performance"]["accuracy"]
    assert 1 / 3 + 0.1 < acc <= 1.0  # measured on validation rows, well above chance
    assert "trainer.neural" in summary["active_plugins"] and "optimizer.adamw" in summary["active_plugins"]
    for record in trained_model.learners.values():
        assert record.records and record.records[0].val_loss is not None
        assert all(np.isfinite(r.train_loss) for r in record.records)


def test_ensemble_beats_chance_and_uses_every_modality(trained_model, held_out):
    data, y = held_out
    metrics = trained_model.evaluate(data, y)
    assert metrics["accuracy"] > 0.6 and metrics["n_fallback"] == 0
    single = trained_model.evaluate(with_missing(data, "image", slice(None)) | {}, y)
    assert single["accuracy"] < metrics["accuracy"]  # losing a modality costs accuracy


def test_absent_modality_and_missing_rows_predict_without_nan(trained_model, held_out):
    data, y = held_out
    absent = {k: v for k, v in data.items() if k != "image"}
    proba = trained_model.predict_proba(absent)
    assert proba.shape == (len(y), 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    partial = with_missing(data, "text", np.arange(0, len(y), 2))
    details = trained_model.predict_details(partial)
    assert np.isfinite(details.output).all() and not details.fallback.any()
    assert (details.n_learners > 0).all()


def test_sample_without_any_modality_gets_prior_and_is_flagged(trained_model, held_out):
    data, _ = held_out
    none = {k: v[:5].copy() for k, v in data.items()}
    for v in none.values():
        v[:2] = np.nan
    details = trained_model.predict_details(none)
    assert details.fallback.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(details.output[0], trained_model.task.prior)


def test_ensemble_not_below_best_learner_that_sees_what_is_present(trained_model, held_out):
    """Per availability pattern, the ensemble stays close to (or above) the best eligible learner."""
    data, y = held_out
    for present in (("text", "image", "meta"), ("text",), ("image", "meta")):
        view = {k: v for k, v in data.items() if k in present}
        ensemble = trained_model.evaluate(view, y)["accuracy"]
        eligible = [r for r in trained_model.learners.values() if set(r.spec.modalities) <= set(present)]
        best = max(np.mean(trained_model.classes_[r.model.predict_output(
            {m: view[m] for m in r.spec.modalities}).argmax(1)] == y) for r in eligible)
        assert ensemble >= best - 0.03, (present, ensemble, best)


def test_same_seed_same_predictions(held_out):
    data, _ = held_out
    runs = []
    for _ in range(2):
        model = make_model(n_samples=300)
        model.create_ensemble(n_bags=3, random_state=5)
        model.select_base_learners(trainers=["neural"], instantiate=False)
        model.train_ensemble(**{**FAST, "epochs": 4, "random_state": 5})
        runs.append(model.predict_proba(data))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_failing_learner_is_isolated(held_out):
    class Boom:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            if fit.spec.learner_id == "bag_001":
                raise RuntimeError("disk on fire")

    model = make_model(n_samples=300, plugins=[Boom()])
    model.create_ensemble(n_bags=3, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    trained = model.train_ensemble(**{**FAST, "epochs": 3})
    summary = model.get_training_summary()
    assert set(trained) == {"bag_000", "bag_002"}
    assert summary["learner_status"]["bag_001"] == "failed"
    assert "disk on fire" in summary["errors"]["bag_001"]
    assert np.isfinite(model.predict_proba(held_out[0])).all()


def test_nan_loss_fails_that_learner_only():
    import torch

    class Poison:
        @hookimpl
        def modalbag_auxiliary_losses(self, run, fit, batch, output):
            if fit.spec.learner_id == "bag_000":
                return {"poison": torch.tensor(float("nan"))}
            return None

    model = make_model(n_samples=300, plugins=[Poison()])
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 2})
    summary = model.get_training_summary()
    assert summary["learner_status"] == {"bag_000": "failed", "bag_001": "trained"}
    assert "TrainingDivergedError" in summary["errors"]["bag_000"]


def test_every_learner_failing_raises_with_each_error():
    class AlwaysBoom:
        @hookimpl
        def modalbag_fit_start(self, run, fit):
            raise ValueError(f"no {fit.spec.learner_id}")

    model = make_model(n_samples=200, plugins=[AlwaysBoom()])
    model.create_ensemble(n_bags=2)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    with pytest.raises(TrainingFailedError, match="bag_000: ValueError: no bag_000"):
        model.train_ensemble(**FAST)


def test_plugin_errors_surface_before_training():
    model = make_model(n_samples=200, catalog=catalog_without("precision.amp"))
    with pytest.raises(MissingPluginError, match="mixed_precision=True needs the precision plugin 'amp'"):
        model.train_ensemble(**{**FAST, "mixed_precision": True})
    with pytest.raises(UnknownPluginError, match="did you mean 'adamw'"):
        model.train_ensemble(**{**FAST, "optimizer_type": "adam"})
    assert model.learners == {}  # nothing trained halfway


def test_predict_before_training_is_a_clear_error():
    with pytest.raises(NotFittedError, match="train_ensemble"):
        make_model(n_samples=100).predict({"text": np.zeros((2, 16))})


def test_prediction_data_errors(trained_model, held_out):
    data, _ = held_out
    with pytest.raises(DataError, match="did you mean 'text'"):
        trained_model.predict({"txt": data["text"]})
    with pytest.raises(DataError, match=r"trained on \(24,\)"):
        trained_model.predict({"image": data["image"][:, :10]})


@pytest.mark.parametrize("optimizer,scheduler", [("sgd", "onecycle"), ("radam", "plateau"), ("adamw", "none")])
def test_optimizer_and_scheduler_plugins_train(optimizer, scheduler):
    model = make_model(n_samples=300)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 4, "optimizer_type": optimizer, "scheduler_type": scheduler,
                            "learning_rate": 1e-2 if optimizer == "sgd" else 1e-3})
    records = model.learners["bag_000"].records
    assert records[-1].train_loss < records[0].train_loss
    if scheduler == "onecycle":
        assert records[-1].learning_rate < records[1].learning_rate


def test_regression_end_to_end():
    model = make_model(n_samples=400, task_type="regression")
    model.create_ensemble(n_bags=4)
    model.train_ensemble(**{**FAST, "task_type": "regression"})
    data, y = model.synthetic_task.sample(300, random_state=7)
    metrics = model.evaluate(data, y)
    assert metrics["r2"] > 0.3
    assert model.predict(data).shape == (300,)
    assert "mse" in model.get_training_summary()["average_performance"]


def test_multilabel_end_to_end():
    model = make_model(n_samples=400, n_classes=4, task_type="multilabel")
    model.create_ensemble(n_bags=4)
    model.train_ensemble(**{**FAST, "task_type": "multilabel"})
    data, y = model.synthetic_task.sample(300, random_state=7)
    proba = model.predict_proba(data)
    assert proba.shape == (300, 4) and ((proba >= 0) & (proba <= 1)).all()
    baseline = max(y.mean(), 1 - y.mean())
    assert model.evaluate(data, y)["accuracy"] > baseline


def test_string_labels_and_class_weights_round_trip():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    labels = np.where(x[:, 0] + 0.3 * rng.normal(size=300) > 0, "cat", "dog")
    model = create_model_from_arrays({"a": x[:, :3], "b": (x[:, 3:], "text")}, labels)
    model.create_ensemble(n_bags=3)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "class_weights": {0: 1.0, 1: 2.0}})
    assert set(model.predict({"a": x[:20, :3]})) <= {"cat", "dog"}
    assert model.evaluate({"a": x[:, :3], "b": x[:, 3:]}, labels)["accuracy"] > 0.7


def test_raw_images_and_sequences_train():
    from modalbag import create_synthetic_model

    model = create_synthetic_model({"img": ((3, 8, 8), "image"), "seq": ((10, 4), "sequence"), "tab": (5, "tabular")},
                                   n_samples=300, n_classes=3)
    model.create_ensemble(n_bags=3)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 5, "sequence_encoder": "transformer"})
    data, y = model.synthetic_task.sample(200, random_state=3)
    assert model.get_training_summary()["failed"] == 0
    assert model.evaluate(data, y)["accuracy"] > 1 / 3


def test_checkpoints_are_written_atomically(tmp_path):
    from modalbag.io.artifacts import safe_torch_load

    model = make_model(n_samples=200)
    model.create_ensemble(n_bags=2)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 3, "save_checkpoints": True, "checkpoint_dir": str(tmp_path)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag_000", "bag_001"]  # one folder per learner
    best = Path(model.learners["bag_000"].checkpoint)
    assert best.parent == tmp_path / "bag_000" and best.name.startswith("best_")
    assert not [p for p in best.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    saved = safe_torch_load(best)
    assert saved["learner_id"] == "bag_000" and "state_dict" in saved


def test_early_stopping_stops_and_restores_best_weights():
    model = make_model(n_samples=200)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(**{**FAST, "epochs": 200, "early_stopping_patience": 2, "learning_rate": 3e-2,
                            "scheduler_type": "none", "warmup_epochs": 0})
    learner = model.learners["bag_000"]
    assert len(learner.records) < 200
    best = min(learner.records, key=lambda r: r.val_loss)
    assert any("restored the weights of epoch" in n for n in learner.notes) or best is learner.records[-1]
    assert learner.validation["log_loss"] == pytest.approx(best.val_loss, rel=0.05)
