"""The safety validation report on an ensemble shaped like the spec's autonomous-vehicle example."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from modalbag import ConfigError
from modalbag.plugins.reports import autonomous
from modalbag.reports.robustness import EnsembleScorer
from tests.plugins.test_reports_medical import train

VEHICLE = {"lidar_points": ((6, 3), "sequence"), "camera_rgb": (16, "image"), "radar_signals": (6, "tabular"),
           "gps_imu": (6, "tabular"), "weather_sensors": (4, "tabular"), "map_data": (8, "tabular")}


@pytest.fixture(scope="module")
def vehicle():
    model, (data, labels) = train(VEHICLE, n_classes=3, trainers=("neural", "sklearn_linear"), n_bags=4,
                                  adversarial_testing=True)
    return model, data, labels


@pytest.fixture(scope="module")
def safety(vehicle):
    model, data, labels = vehicle
    return model.get_safety_validation_report(data, labels, latency_samples=30, throughput_seconds=0.1,
                                              adversarial_epsilon=0.5)


def test_failure_scenarios_and_the_worst_case(vehicle, safety):
    model, data, labels = vehicle
    scorer = EnsembleScorer(model, data, labels)
    assert safety["driving_accuracy"] == pytest.approx(model.evaluate(data, labels)["accuracy"])
    missing = [s for s in safety["scenarios"] if s["kind"] == "missing"]
    assert len(missing) == 6 + 15  # every single failure and every pair (max_failures=2)
    pair = next(s for s in missing if s["modalities"] == ["lidar_points", "radar_signals"])
    assert pair["accuracy"] == pytest.approx(scorer.score(scorer.without(["lidar_points", "radar_signals"])))
    assert len([s for s in safety["scenarios"] if s["kind"] == "noised"]) == 6 * 2
    assert safety["worst_case_accuracy"] == min(s["accuracy"] for s in safety["scenarios"])
    single = model.get_safety_validation_report(data, labels, worst_case_analysis=False, latency_samples=5,
                                                throughput_seconds=0.0)
    assert all(len(s["modalities"]) == 1 for s in single["scenarios"])


def test_redundancy_level_is_the_failures_every_combination_survives(vehicle, safety):
    model, data, labels = vehicle
    scorer = EnsembleScorer(model, data, labels)
    threshold = 0.9 * safety["driving_accuracy"]
    assert safety["redundancy_threshold"] == pytest.approx(threshold)
    expected = 0
    for k in range(1, 6):
        worst = min(scorer.score(scorer.without(c)) for c in itertools.combinations(VEHICLE, k))
        assert safety["min_accuracy_by_failures"][str(k)] == pytest.approx(worst)
        if worst < threshold:
            break
        expected = k
    assert safety["redundancy_level"] == expected
    strict = model.get_safety_validation_report(data, labels, min_accuracy=0.999, latency_samples=5,
                                                throughput_seconds=0.0)
    assert strict["redundancy_level"] == 0


def test_latency_throughput_memory_are_measured(vehicle, safety):
    model, _, _ = vehicle
    latency = safety["latency_ms"]
    assert latency["n"] == 30 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert safety["inference_latency"] == latency["p50_ms"] and safety["throughput"] > 0
    params = sum(p.numel() * p.element_size() + 0 for r in model.ensemble.learners.values()
                 if r.spec.trainer == "neural" for p in r.model.model.parameters())
    assert safety["memory_footprint"] * 2 ** 20 >= params > 0
    assert safety.get("reaction_time") is None and "inference only" in safety["notes"]["reaction_time"]
    assert safety.get("safety_score") is None and safety["notes"]["safety_score"]


def test_power_reads_rapl_where_present_and_says_why_not(vehicle, tmp_path, monkeypatch):
    model, data, labels = vehicle
    monkeypatch.setattr(autonomous, "RAPL_ROOT", str(tmp_path / "none"))
    absent = model.get_safety_validation_report(data, labels, latency_samples=5, throughput_seconds=0.0)
    assert absent.get("power_usage") is None and "no RAPL energy counter" in absent["notes"]["power_usage"]
    package = tmp_path / "intel-rapl:0"
    package.mkdir()
    (package / "energy_uj").write_text("5000")  # a counter that does not move: 0 W measured
    monkeypatch.setattr(autonomous, "RAPL_ROOT", str(tmp_path))
    static = model.get_safety_validation_report(data, labels, latency_samples=5, throughput_seconds=0.05)
    assert static["power_usage"] == 0.0 and "RAPL" in static["notes"]["power_usage"]


def test_fgsm_lowers_accuracy_and_raises_each_neural_learners_loss(vehicle, safety):
    model, data, labels = vehicle
    adversarial = safety["adversarial"]
    assert adversarial["adversarial_accuracy"] <= adversarial["clean_accuracy"]
    neural = {lid: r for lid, r in model.ensemble.learners.items() if r.spec.trainer == "neural"}
    assert neural, "the fixture should train at least one neural learner"
    for lid, row in adversarial["learners"].items():
        if lid in neural:
            assert row["adversarial_accuracy"] < row["clean_accuracy"]
        else:
            assert row.get("adversarial_accuracy") is None and "no input gradients" in row["reason"]
    lid, record = next(iter(neural.items()))
    scorer = EnsembleScorer(model, data, labels)
    inputs = {m: scorer.dataset.arrays[m] for m in record.spec.modalities}
    grads = autonomous.SafetyReport._input_gradients(record.model.model, inputs, scorer.targets)
    y = torch.as_tensor(scorer.targets)

    def loss(x):
        return float(torch.nn.functional.cross_entropy(torch.log(torch.as_tensor(record.model.predict_output(x))), y))

    step = {m: inputs[m] + 0.05 * inputs[m].std(axis=0) * np.sign(grads[m]) for m in inputs}
    assert loss({m: v.astype(np.float32) for m, v in step.items()}) > loss(inputs)


def test_adversarial_testing_off_and_unknown_inputs(vehicle):
    model, data, labels = vehicle
    off = model.get_safety_validation_report(data, labels, adversarial_testing=False, latency_samples=5,
                                             throughput_seconds=0.0)
    assert off.get("adversarial") is None and "adversarial_testing=True" in off["notes"]["adversarial"]
    with pytest.raises(ConfigError, match="no option or input"):
        model.get_safety_validation_report(data, labels, adversarial=True)


def test_without_held_out_data_the_out_of_fold_rows_are_scored(vehicle):
    """The spec calls the report with no data: accuracies come from the out-of-fold training rows and
    the changed-input figures (noise, FGSM) are left out with the reason."""
    model, _, _ = vehicle
    report = model.get_safety_validation_report(latency_samples=10, throughput_seconds=0.05)
    assert report["measured_on"] == "out-of-fold predictions of the training rows"
    assert report["driving_accuracy"] == pytest.approx(model.performance_check()["score"])
    assert report["scenarios"] and all(s["kind"] == "missing" for s in report["scenarios"])
    assert "out-of-fold" in report["notes"]["noised_scenarios"] and dict(report)["adversarial"] is None
    assert format(report["adversarial"], ".3f").startswith("n/a (not measured on out-of-fold")
    assert report["inference_latency"] > 0 and report["throughput"] > 0
