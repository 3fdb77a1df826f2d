"""The spec's helper workflows: strategy rules, machine-fitted options, quality-assured training."""

from __future__ import annotations

import numpy as np
import pytest

import modalbag
from modalbag import (
    EpochRecord,
    TrainingConfig,
    choose_training_strategy,
    describe_data,
    optimize_training_performance,
    quality_assured_training,
)
from modalbag.api.workflows import (
    QualityReport,
    denoising_effectiveness,
)
from tests.conftest import FAST, make_model


class _Learner:
    def __init__(self, losses, metrics=None):
        self.records = [EpochRecord(epoch=i + 1, train_loss=v, metrics=(metrics or [{}] * len(losses))[i])
                        for i, v in enumerate(losses)]


def test_describe_data_measures_counts_missing_share_and_balance():
    data = {"a": np.ones((6, 2)), "b": np.ones((6, 3))}
    data["b"][:2] = np.nan
    model = modalbag.create_model_from_arrays(data, np.array([0, 0, 0, 0, 1, 1]))
    found = describe_data(model)
    assert found["n_samples"] == 6 and found["n_modalities"] == 2
    assert found["missing_rate"] == {"a": 0.0, "b": pytest.approx(2 / 6)}
    assert found["class_balance"] == pytest.approx(2 / 4)
    assert found["multimodal"] and found["small_dataset"] and not found["large_scale"]


@pytest.mark.parametrize("requirements", [{}, {"real_time_required": True}, {"accuracy_critical": True},
                                          {"resource_constrained": True},
                                          {"real_time_required": True, "resource_constrained": True}])
@pytest.mark.parametrize("data", [{}, {"large_scale": True}, {"single_modality": True, "time_series": True}])
def test_every_strategy_is_a_valid_config(requirements, data):
    TrainingConfig.from_dict(choose_training_strategy(requirements, data))


def test_strategy_rules_follow_the_spec_and_hard_limits_win():
    medical = choose_training_strategy({"accuracy_critical": True}, {"multimodal": True})
    assert (medical["epochs"], medical["cross_validation_folds"], medical["denoising_weight"],
            medical["validation_split"], medical["early_stopping_patience"]) == (200, 10, 0.2, 0.3, 30)
    mobile = choose_training_strategy({"real_time_required": True, "resource_constrained": True},
                                      {"single_modality": True})
    assert (mobile["optimizer_type"], mobile["scheduler_type"]) == ("sgd", "onecycle")
    assert (mobile["batch_size"], mobile["epochs"], mobile["enable_denoising"]) == (16, 30, False)
    assert any(r.startswith("resource_constrained") for r in mobile.reasons)


def test_strategy_reads_measured_data():
    data = {"a": np.zeros((200, 2)), "b": np.zeros((200, 2))}
    labels = np.r_[np.zeros(190, int), np.ones(10, int)]  # balance 10/190 < 0.2
    strategy = choose_training_strategy({}, modalbag.create_model_from_arrays(data, labels))
    assert strategy["validation_strategy"] == "stratified"
    assert strategy["batch_size"] == 16  # 200 samples, 160 training rows: at most 1/10 per batch
    assert choose_training_strategy({}, {"time_series": True})["validation_strategy"] == "time_series"


def test_denoising_effectiveness_is_the_relative_drop_of_the_objective_losses():
    m = [{"reconstruction.loss": 2.0, "alignment.loss": 2.0}, {"reconstruction.loss": 1.0, "alignment.loss": 2.0}]
    learners = {"a": _Learner([1, 1], m), "b": _Learner([1, 1], [{"alignment.loss": 1.0}, {"alignment.loss": 0.5}]),
                "c": _Learner([1, 1])}
    # a: reconstruction (2-1)/2, alignment 0 -> 0.25; b: alignment 0.5
    assert denoising_effectiveness(learners, ("reconstruction", "alignment")) == pytest.approx((0.25 + 0.5) / 2)
    assert denoising_effectiveness({"c": _Learner([1, 1])}, ("alignment",)) is None
    # alignment enters at epoch 2 (curriculum): each objective from its own first epoch, 0.5 and 0.5;
    # a summed loss would read 2.0 -> 2.5 as a loss that grew
    staged = [{"reconstruction.loss": 2.0}, {"reconstruction.loss": 1.5, "alignment.loss": 3.0},
              {"reconstruction.loss": 1.0, "alignment.loss": 1.5}]
    assert denoising_effectiveness({"d": _Learner([1, 1, 1], staged)}, ("reconstruction", "alignment")) == \
        pytest.approx(0.5)


def test_optimize_training_performance_derives_from_the_machine_and_data():
    model = make_model(n_samples=300)
    model.create_ensemble(n_bags=3, random_state=0)
    options = optimize_training_performance(model, {"epochs": 3})
    assert options["epochs"] == 3 and options["mixed_precision"] is False  # no CUDA here
    assert 1 <= options["n_jobs"] <= 3 and options["threads_per_learner"] >= 1
    smallest = min(len(np.unique(b.rows)) for b in model.bags)
    assert 16 <= options["batch_size"] <= max(16, smallest * 0.8 / 10)
    TrainingConfig.from_dict(options)
    with pytest.raises(modalbag.ConfigError, match="epoch"):
        optimize_training_performance(model, {"epoch": 3})


def test_quality_assured_training_passes_and_fails_on_measured_values():
    model = make_model(n_samples=300)
    model.create_ensemble(n_bags=2, random_state=0)
    report = quality_assured_training(model, {**FAST, "epochs": 4, "min_performance": 0.0})
    assert isinstance(report, QualityReport) and report and report.trained == len(model.learners) >= 2
    checks = {c.name: c for c in report.checks}
    assert checks["performance"].value == pytest.approx(model.get_training_summary()["average_performance"]["accuracy"])
    assert checks["stability"].value == model.assess_training_stability()
    strict = quality_assured_training(model, {**FAST, "epochs": 4, "min_performance": 1.01})
    assert not strict and [c.name for c in strict.failed() if c.severity == "error"] == ["performance"]


def test_quality_assured_training_stops_before_training_on_bad_options():
    model = make_model(n_samples=200)
    report = quality_assured_training(model, {"epochs": 0, "batch_size": -1})
    assert not report and model.learners == {}
    assert report.checks[0].name == "config" and "epochs must be > 0" in report.checks[0].detail
    assert "batch_size must be > 0" in report.checks[0].detail
