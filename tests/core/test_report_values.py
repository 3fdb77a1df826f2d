"""Report values that print: a `Report` keeps ``None`` for what was not measured, and reading such a
value through ``report[key]`` gives an `Unmeasured` that formats as "n/a (reason)". The spec's print
blocks then run as written against the reports modalbag returns."""

from __future__ import annotations

import contextlib
import io
import json
import pickle

from modalbag import EpochRecord, LearnerSpec, TrainedLearner
from modalbag.reports.training import learner_cross_modal
from modalbag.reports.values import Report, Unmeasured


def test_an_unmeasured_value_formats_as_its_reason_under_any_format_spec():
    r = Report({"gpu_utilization": None, "throughput": 12.5, "notes": ["gpu_utilization: no GPU on this machine"]})
    assert f"{r['gpu_utilization']:.1%}" == "n/a (no GPU on this machine)"
    assert f"{r['gpu_utilization']}" == "n/a (no GPU on this machine)"
    assert f"{r['throughput']:.1f}" == "12.5"  # measured values are returned untouched
    assert r["gpu_utilization"] == None and not r["gpu_utilization"]  # noqa: E711 - None-like on purpose


def test_stored_values_stay_none_for_get_copies_json_and_pickle():
    r = Report({"x": None, "notes": {"x": "why"}})
    assert r.get("x") is None and dict(r)["x"] is None and {**r}["x"] is None
    assert json.loads(json.dumps(r))["x"] is None
    again = pickle.loads(pickle.dumps(r))
    assert again.get("x") is None and f"{again['x']:.3f}" == "n/a (why)"


def test_a_none_without_a_note_says_it_was_not_measured():
    assert f"{Report({'x': None})['x']:.2f}" == "n/a (not measured)"


def test_nested_values_print_with_their_own_or_their_parents_reason():
    r = Report({"contrib": {"text": 0.25, "image": None},
                "importance": None,
                "feature_importance": {"top_features": None},
                "rows": {"l1": {"accuracy": None, "reason": "no input gradients"}},
                "notes": {"contrib.image": "NDCG undefined", "feature_importance": "not measured by this trainer"}})
    assert [f"{k}: {v:.3f}" for k, v in r["contrib"].items()] == ["text: 0.250", "image: n/a (NDCG undefined)"]
    assert list(r["importance"].items()) == [] and list(r["importance"]) == []  # the spec loops over it
    assert f"{r['importance']['text']:.3f}" == "n/a (not measured)"
    assert f"{r['feature_importance']['top_features']}" == "n/a (not measured by this trainer)"
    assert f"{r['rows']['l1']['accuracy']:.2f}" == "n/a (no input gradients)"


def test_unmeasured_is_a_null_object():
    u = Unmeasured("r")
    assert len(u) == 0 and "a" not in u and u.get("a", 3) == 3 and u["any"] is u and repr(u) == "Unmeasured('r')"


def test_epoch_record_has_the_spec_comprehensive_training_metrics_fields():
    record = EpochRecord(epoch=1, train_loss=1.0, memory_usage_mb=321.0,
                         metrics={"reconstruction.text": 0.5, "reconstruction.image": 0.25, "reconstruction.loss": 0.4,
                                  "alignment.score": 0.75, "alignment.loss": 2.0, "consistency.score": 0.9})
    assert record.memory_usage == 321.0
    assert record.modal_reconstruction_loss == {"text": 0.5, "image": 0.25}
    assert record.modal_alignment_score == {"all_pairs": 0.75}
    assert record.modal_consistency_score == 0.9
    bare = EpochRecord(epoch=1, train_loss=1.0)
    assert (bare.modal_reconstruction_loss, bare.modal_alignment_score, bare.modal_consistency_score) == ({}, {}, None)


def test_learner_cross_modal_reads_the_last_epoch_that_recorded_each_objective():
    spec = LearnerSpec("bag_000", 0, "neural", ("text", "image"), {"text": "text", "image": "image"})
    records = [EpochRecord(epoch=1, train_loss=1.0, metrics={"reconstruction.text": 0.9, "alignment.score": 0.0}),
               EpochRecord(epoch=2, train_loss=0.8, metrics={"reconstruction.text": 0.6})]
    out, reasons = learner_cross_modal(TrainedLearner(spec, "trained", records=records))
    assert out == {"multimodal": True, "reconstruction_scores": {"text": 0.6}, "alignment_score": 0.0,
                   "consistency_score": None}
    assert list(reasons) == ["consistency_score"] and "consistency" in reasons["consistency_score"]
    single = TrainedLearner(LearnerSpec("bag_001", 1, "neural", ("text",), {"text": "text"}), "trained", records=records[:1])
    out, reasons = learner_cross_modal(single)
    assert out["multimodal"] is False and "single-modality" in reasons["consistency_score"]


def _run(block, **names) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(block, dict(names))
    return buffer.getvalue()


# The spec's "Detailed Training Analytics" and "Learner-Specific Performance Analysis" blocks, verbatim.
DETAILED = '''
training_report = model.get_detailed_training_report()
print(f"  Total Training Time: {training_report['total_time']:.1f}s")
print(f"  Average Epoch Time: {training_report['avg_epoch_time']:.2f}s")
print(f"  Memory Peak Usage: {training_report['peak_memory']:.1f}MB")
print(f"  GPU Utilization: {training_report['gpu_utilization']:.1%}")
print(f"  Best Accuracy: {training_report['best_accuracy']:.4f}")
print(f"  Final Loss: {training_report['final_loss']:.4f}")
print(f"  Convergence Epoch: {training_report['convergence_epoch']}")
print(f"  Overfitting Score: {training_report['overfitting_score']:.3f}")
for objective, effectiveness in training_report['denoising_analysis'].items():
    print(f"  {objective.title()}: {effectiveness:.3f}")
print(f"  Samples/Second: {training_report['throughput']:.1f}")
print(f"  Parameter Updates/Second: {training_report['update_rate']:.1f}")
print(f"  Training Stability: {training_report['stability_score']:.3f}")
print(f"  Cross-Modal Denoising Effectiveness: {training_report['denoising_impact']:.3f}")
'''

LEARNERS = '''
learner_analysis = model.get_learner_training_analysis()
for learner_id, analysis in learner_analysis.items():
    print(f"\\n{learner_id} Analysis:")
    print(f"  Architecture: {analysis['architecture']}")
    print(f"  Training Time: {analysis['training_time']:.2f}s")
    print(f"  Final Accuracy: {analysis['final_accuracy']:.4f}")
    print(f"  Convergence Rate: {analysis['convergence_rate']:.3f}")
    print(f"  Memory Usage: {analysis['memory_usage']:.1f}MB")
    if analysis.get('multimodal', False):
        print(f"  Modality Reconstruction:")
        for modality, score in analysis['reconstruction_scores'].items():
            print(f"    {modality}: {score:.3f}")
        print(f"  Cross-Modal Alignment: {analysis['alignment_score']:.3f}")
        print(f"  Consistency Score: {analysis['consistency_score']:.3f}")
    if 'feature_importance' in analysis:
        print(f"  Top Features: {analysis['feature_importance']['top_features']}")
        print(f"  Modality Contributions: {analysis['feature_importance']['modality_weights']}")
'''


def test_the_spec_detailed_report_block_prints_reasons_for_what_was_not_measured(trained_model):
    printed = _run(DETAILED, model=trained_model)
    report = trained_model.get_detailed_training_report()
    assert report.get("denoising_impact") is None  # never measured in the session run
    assert "Cross-Modal Denoising Effectiveness: n/a (not measured; model.measure_denoising_impact" in printed
    if report.get("gpu_utilization") is None:
        assert "GPU Utilization: n/a (not measured; the learners trained without a GPU" in printed
    assert report["memory_usage"] == report["peak_memory"]


def test_the_spec_learner_block_prints_the_cross_modal_keys(trained_model):
    printed = _run(LEARNERS, model=trained_model)
    analysis = trained_model.get_learner_training_analysis()
    multimodal = [lid for lid, a in analysis.items() if len(a["modalities"]) > 1]
    assert multimodal and all(analysis[lid]["multimodal"] for lid in multimodal)
    assert printed.count("Modality Reconstruction:") == len(multimodal)
    # the session model trained without denoising: the objectives' scores are None, and say why
    assert all(analysis[lid].get("alignment_score") is None for lid in multimodal)
    assert "Cross-Modal Alignment: n/a (the alignment objective did not run on this learner" in printed
    for a in analysis.values():
        assert a["memory_usage"] == a["peak_memory_mb"]
