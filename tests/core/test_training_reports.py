"""Training reports: each value checked against numbers worked out by hand from fixed records, and
against a real small run's own records."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import (
    EpochRecord,
    LearnerSpec,
    NotFittedError,
    TrainedLearner,
    TrainingConfig,
)
from modalbag.ensemble.combination import Combination
from modalbag.ensemble.ensemble import _OOB, Ensemble
from modalbag.kernel.run import TaskInfo
from modalbag.reports import analytics as A
from tests.conftest import make_model, with_missing


def _spec(lid: str, modalities: tuple[str, ...]) -> LearnerSpec:
    return LearnerSpec(lid, int(lid[-1]), "neural", modalities, {m: "tabular" for m in modalities})


def _epoch(epoch, train, val, acc, seconds, sps, memory=None, metrics=None, terms=None):
    return EpochRecord(epoch=epoch, train_loss=train, val_loss=val, accuracy=acc, training_time=seconds,
                       samples_per_second=sps, memory_usage_mb=memory, metrics=metrics or {}, loss_terms=terms or {})


def _learners() -> dict[str, TrainedLearner]:
    a = [  # two modalities, one denoising objective, gradient norms, an overfitting tail
        _epoch(1, 1.0, 0.9, 0.5, 2.0, 100, 100, {"grad_norm": 1.0, "grad_norm_max": 1.5, "optimizer_steps": 10,
                                                  "reconstruction.loss": 0.8}, {"denoising.reconstruction": 0.08}),
        _epoch(2, 0.6, 0.5, 0.7, 2.0, 100, 120, {"grad_norm": 1.0, "grad_norm_max": 1.2, "optimizer_steps": 10,
                                                  "reconstruction.loss": 0.6}, {"denoising.reconstruction": 0.06}),
        _epoch(3, 0.7, 0.45, 0.8, 1.0, 200, 110, {"grad_norm": 1.0, "grad_norm_max": 12.0, "optimizer_steps": 5,
                                                   "reconstruction.loss": 0.5}),
        _epoch(4, 0.5, 0.6, 0.75, 1.0, 200, 90, {"grad_norm": 1.0, "grad_norm_max": 1.1, "optimizer_steps": 5,
                                                  "reconstruction.loss": 0.4}),
    ]
    b = [_epoch(1, 2.0, 1.5, 0.4, 1.0, 50), _epoch(2, 1.0, 1.2, 0.6, 1.0, 50)]
    c = [_epoch(1, 1.0, None, None, 0.5, None)]
    return {
        "bag_000": TrainedLearner(_spec("bag_000", ("text", "image")), "trained", records=a, training_time=6.5,
                                  validation={"accuracy": 0.75}),
        "bag_001": TrainedLearner(_spec("bag_001", ("text",)), "trained", records=b, training_time=2.5,
                                  validation={"accuracy": 0.5}),
        "bag_002": TrainedLearner(_spec("bag_002", ("image",)), "failed", records=c, training_time=0.5,
                                  error="TrainingDivergedError: training loss became non-finite at epoch 2"),
    }


@pytest.fixture
def model():
    """A model whose run is replaced by the hand-written records above."""
    m = make_model(n_samples=60)
    m.learners = _learners()
    m.training_config = TrainingConfig(memory_limit_mb=140)
    m.task = TaskInfo("classification", 3, np.array([0, 1, 2]), np.array([0.5, 0.3, 0.2]))
    return m


# -- one learner's formulas --------------------------------------------------------------------


def test_per_learner_formulas_by_hand():
    a = _learners()["bag_000"].records
    # monitored = val losses [0.9, 0.5, 0.45, 0.6]; 95% of the improvement: <= 0.45 + 0.05 * 0.45 = 0.4725
    assert A.convergence_epoch(a) == 3
    assert A.convergence_rate(a) == pytest.approx((0.9 - 0.45) / (0.9 * 2))
    assert A.overfitting_score(a) == pytest.approx((0.6 - 0.45) / 0.6)
    assert A.generalization_gap(a) == pytest.approx((0.45 - 0.7) / 0.45)  # best epoch 3: train 0.7
    # train losses 1.0 0.6 0.7 0.5: down 0.4 + 0.2, up 0.1
    assert A.stability_score(a) == pytest.approx(0.6 / 0.7)
    assert A.throughput(a) == pytest.approx((100 * 2 + 100 * 2 + 200 + 200) / 6)
    assert A.update_rate(a) == pytest.approx(30 / 6)
    assert A.objective_effectiveness(a) == pytest.approx({"reconstruction": (0.8 - 0.4) / 0.8})
    assert A.denoising_share(a) == pytest.approx(np.mean([0.08 / 1.08, 0.06 / 0.66]))


def test_formulas_on_degenerate_curves():
    flat = [_epoch(1, 1.0, None, None, 1.0, None), _epoch(2, 1.0, None, None, 1.0, None)]
    assert A.stability_score(flat) == 1.0 and A.convergence_epoch(flat) == 1
    assert A.stability_score(flat[:1]) is None
    assert A.overfitting_score(flat) is None and A.generalization_gap(flat) is None
    rising = [_epoch(1, 1.0, None, None, 1, None), _epoch(2, 2.0, None, None, 1, None)]
    assert A.stability_score(rising) == 0.0
    assert A.throughput(flat) is None and A.update_rate(flat) is None


# -- the run's reports --------------------------------------------------------------------------


def test_detailed_training_report_by_hand(model):
    r = model.get_detailed_training_report()
    assert (r["total_learners"], r["trained"], r["failed"]) == (3, 2, 1)
    assert r["success_rate"] == pytest.approx(2 / 3)
    assert r["best_learner_id"] == "bag_000" and r["best_validation_score"] == 0.75
    assert r["total_time"] == pytest.approx(6.5 + 2.5 + 0.5)
    assert r["total_epochs"] == 7
    assert r["avg_epoch_time"] == pytest.approx((2 + 2 + 1 + 1 + 1 + 1 + 0.5) / 7)
    assert r["peak_memory"] == 120
    assert r.get("gpu_utilization") is None and any(n.startswith("gpu_utilization") for n in r["notes"])
    assert r["best_accuracy"] == 0.8
    assert r["final_loss"] == pytest.approx((0.6 + 1.2) / 2)  # last monitored loss of the trained learners
    assert r["convergence_epoch"] == 2.5  # median of 3 (bag_000) and 2 (bag_001: 1.2 <= 1.2 + 0.015)
    assert r["overfitting_score"] == pytest.approx((0.25 + 0.0) / 2)
    assert r["denoising_analysis"] == pytest.approx({"reconstruction": 0.5})
    assert r["objective_effectiveness"] == pytest.approx(0.5)
    assert r.get("denoising_impact") is None and any(n.startswith("denoising_impact") for n in r["notes"])
    assert r["throughput"] == pytest.approx((800 + 50 + 50) / 8)  # the failed learner's epoch has no rate
    assert r["update_rate"] == pytest.approx(5.0)
    assert r["stability_score"] == pytest.approx((6 / 7 + 1.0) / 2)


def test_learner_training_analysis(model):
    out = model.get_learner_training_analysis()
    assert list(out) == ["bag_000", "bag_001", "bag_002"]
    a = out["bag_000"]
    assert a["architecture"] == "neural" and a["modalities"] == ["text", "image"]
    assert a["training_time"] == 6.5 and a["final_accuracy"] == 0.75 and a["epochs"] == 4
    assert a["best_epoch"] == 3 and a["convergence_rate"] == pytest.approx(0.25)
    assert out["bag_001"]["convergence_rate"] == pytest.approx((1.5 - 1.2) / 1.5)
    assert out["bag_002"]["status"] == "failed" and "Diverged" in out["bag_002"]["error"]


def test_stability_report_and_assessment(model):
    s = model.get_training_stability_report()
    assert s["per_learner"]["bag_000"] == pytest.approx(6 / 7) and s["per_learner"]["bag_001"] == 1.0
    kinds = {(i["type"], i["learner_id"]) for i in s["issues"]}
    assert kinds == {("diverged", "bag_002"), ("gradient_spike", "bag_000")}  # 12 > 10 x median 1.0
    assert s["unstable_training"] is True  # a diverged learner is high severity
    assert model.assess_training_stability() == pytest.approx((6 / 7 + 1.0) / 2)


def test_diagnostics(model):
    d = model.get_training_diagnostics()
    assert d["denoising_issues"] == []  # terms were 8% and 9% of the task loss, and the objective learned
    assert {(i["type"], i["learner_id"]) for i in d["loss_issues"]} == {  # bag_001: 1.5 -> 1.2, lowest at the end
        ("diverged", "bag_002"), ("validation_loss_rising", "bag_000"), ("still_improving", "bag_001")}
    (still,) = [i for i in d["loss_issues"] if i["type"] == "still_improving"]
    assert "fell 20.0% over the last 1 of 2 epochs" in still["description"]
    model.learners["bag_000"].records[0] = _epoch(1, 0.1, 0.9, 0.5, 2.0, 100, metrics={"reconstruction.loss": 0.8},
                                                  terms={"denoising.reconstruction": 0.5})
    model.learners["bag_000"].records[3] = _epoch(4, 0.5, 0.6, 0.75, 1.0, 200, metrics={"reconstruction.loss": 0.9})
    d = model.get_training_diagnostics()
    assert {i["type"] for i in d["denoising_issues"]} == {"denoising_dominates", "objective_not_improving"}


def test_validation_report(model):
    v = model.get_validation_report()
    assert v["overfitting_detected"] and v["overfitting_learners"] == ["bag_000"]
    assert v["per_learner"]["bag_001"]["generalization_gap"] == pytest.approx((1.2 - 1.0) / 1.2)
    assert v["mean_generalization_gap"] == pytest.approx(((0.45 - 0.7) / 0.45 + 0.2 / 1.2) / 2)
    assert v["poor_generalization"] is False


def test_validate_training_results(model):
    out = model.validate_training_results()
    assert out["average_performance"] == pytest.approx((0.75 + 0.5) / 2)
    assert out["chance_level"] == 0.5  # the most frequent class's share
    assert out["issues"] == ["bag_001: validation accuracy 0.5000 is not above chance (0.5000)"]
    assert not out["valid"]
    only = model.validate_training_results({"bag_000": model.learners["bag_000"]})
    assert only["valid"] and only["n_learners"] == 1


def test_multimodal_analysis_and_cross_modal_validation(model):
    m = model.get_multimodal_learning_analysis()
    assert (m["unimodal_learners"], m["multimodal_learners"]) == (1, 1)
    assert m["cross_modal_gain"] == pytest.approx(0.25) and m["poor_cross_modal_learning"] is False
    assert m["per_modality"]["image"] == {"learners": 1, "mean_score_with": 0.75, "mean_score_without": 0.5}
    c = model.validate_cross_modal_learning()
    assert c["effectiveness"] == pytest.approx(0.5) and c["denoising_enabled"] is True


def test_resource_constraints(model):
    r = model.check_resource_constraints()
    assert r["peak_memory_mb"] == 120 and r["memory_limit_mb"] == 140
    assert r["memory_fraction"] == pytest.approx(120 / 140)
    assert [i["type"] for i in r["memory_issues"]] == ["near_memory_limit"]  # 120 > 0.8 * 140
    assert r["throughput_per_learner"]["bag_001"] == pytest.approx(50.0)
    assert r["speed_issues"] == []
    model.learners["bag_001"].records[:] = [_epoch(1, 2.0, 1.5, 0.4, 1.0, 10)]  # 10 < 0.25 * median 71.7
    assert [i["learner_id"] for i in model.check_resource_constraints()["speed_issues"]] == ["bag_001"]


def test_pipeline_status_follows_the_workflow():
    m = make_model(n_samples=60)
    status = m.get_pipeline_status()
    assert status["data_loaded"] and not status["bags_generated"] and status["next_step"] == "create_ensemble()"
    m.create_ensemble(n_bags=3)
    m.generate_bags()
    status = m.get_pipeline_status()
    assert status["bags_generated"] and status["n_bags"] == 3 and status["next_step"] == "select_base_learners()"
    with pytest.raises(NotFittedError, match="train_ensemble"):
        m.get_detailed_training_report()


# -- the ensemble's out-of-bag ablation --------------------------------------------------------


def test_oob_combination_by_hand():
    task = TaskInfo("classification", 2, np.array([0, 1]), np.array([0.5, 0.5]))
    learners = {"a": TrainedLearner(_spec("bag_000", ("x",)), "trained"),
                "b": TrainedLearner(_spec("bag_001", ("y",)), "trained")}
    oob = {"a": _OOB(np.array([0, 1, 2]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])),
           "b": _OOB(np.array([1, 2, 3]), np.array([[0.6, 0.4], [0.2, 0.8], [0.3, 0.7]]))}
    ensemble = Ensemble(task, learners, np.array([0, 1, 1, 1]), oob, combinations={
        frozenset({"a", "b"}): Combination(("a", "b"), "mean", np.array([0.75, 0.25])),
        frozenset({"a"}): Combination(("a",), "mean", np.array([1.0]))})
    rows, out = A.oob_combined(ensemble, ["a", "b"])
    assert rows.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(out, [[0.9, 0.1], [0.75 * 0.2 + 0.25 * 0.6, 0.75 * 0.8 + 0.25 * 0.4],
                                     [0.75 * 0.6 + 0.25 * 0.2, 0.75 * 0.4 + 0.25 * 0.8], [0.3, 0.7]])
    rows, out = A.oob_combined(ensemble, ["a"])
    assert rows.tolist() == [0, 1, 2] and out.tolist() == oob["a"].output.tolist()


# -- a real run -------------------------------------------------------------------------------


def test_reports_agree_with_a_real_runs_records(trained_model):
    m = trained_model
    r = m.get_detailed_training_report()
    records = [e for learner in m.learners.values() for e in learner.records]
    assert r["total_time"] == pytest.approx(sum(x.training_time for x in m.learners.values()))
    assert r["total_epochs"] == len(records)
    assert r["best_accuracy"] == max(e.accuracy for e in records if e.accuracy is not None)
    best = max((x.validation["accuracy"], lid) for lid, x in m.learners.items() if x.ok)[0]
    assert r["best_validation_score"] == best
    neural = [e for x in m.learners.values() if x.spec.trainer == "neural" for e in x.records]
    assert neural and all(e.memory_usage_mb > 0 and e.metrics["grad_norm"] > 0 for e in neural)
    assert r["peak_memory"] == max(e.memory_usage_mb for e in records if e.memory_usage_mb is not None)
    assert 0.0 <= r["stability_score"] <= 1.0
    assert r.get("gpu_utilization") is None


def test_modality_importance_on_held_out_data_is_the_score_drop(trained_model, held_out):
    data, labels = held_out
    out = trained_model.analyze_modality_importance(data, labels)
    full = trained_model.evaluate(data, labels)["accuracy"]
    assert out["baseline_score"] == pytest.approx(full) and out["source"] == "held-out data"
    for m in ("text", "image", "meta"):
        without = trained_model.evaluate(with_missing(data, m, slice(None)), labels)["accuracy"]
        assert out["importance"][m] == pytest.approx(full - without)


def test_modality_importance_on_out_of_bag_rows(trained_model):
    out = trained_model.analyze_modality_importance()
    ens = trained_model.ensemble
    rows_all, out_all = A.oob_combined(ens, list(ens.learners))
    kept = [lid for lid, r in ens.learners.items() if "image" not in r.spec.modalities]
    rows_m, out_m = A.oob_combined(ens, kept)
    common = np.intersect1d(rows_all, rows_m)
    y = ens.targets[common]
    acc_all = np.mean(out_all[np.searchsorted(rows_all, common)].argmax(1) == y)
    acc_without = np.mean(out_m[np.searchsorted(rows_m, common)].argmax(1) == y)
    assert out["source"] == "out-of-bag rows"
    assert out["importance"]["image"] == pytest.approx(acc_all - acc_without)
