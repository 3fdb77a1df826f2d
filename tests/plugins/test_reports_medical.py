"""The medical validation report on an ensemble shaped like the spec's healthcare example."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from sklearn.metrics import (
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from modalbag import ConfigError, create_synthetic_model, modality_ablation
from modalbag.reports.robustness import EnsembleScorer
from tests.conftest import FAST

MEDICAL = {"patient_vitals": (8, "tabular"), "medical_images": (16, "image"), "clinical_notes": (12, "text"),
           "lab_results": (6, "tabular"), "genetic_data": (10, "tabular")}


def train(modalities, *, n_classes=2, task_type="classification", trainers=("sklearn_linear",), n_bags=5, **cfg):
    """A small ensemble of fast learners over the given modalities, and held-out samples of its task."""
    model = create_synthetic_model(modalities, n_samples=400, n_classes=n_classes, task_type=task_type,
                                   random_state=3)
    model.create_ensemble(n_bags=n_bags, random_state=0)
    model.select_base_learners(instantiate=False, trainers=list(trainers))
    # each bag keeps the trainer its proposal ranks first (no measurement): these tests need a known mix
    model.learner_specs = [attrs.evolve(spec, candidates=()) for spec in model.learner_specs]
    model.train_ensemble(**{**FAST, "epochs": 3, **cfg})
    return model, model.synthetic_task.sample(300, random_state=11)


@pytest.fixture(scope="module")
def medical():
    model, (data, labels) = train(MEDICAL, interpretability_required=True, regulatory_compliance=True)
    report = model.get_medical_validation_report(data, labels, intended_use="triage of adult outpatients",
                                                 n_bootstrap=50)
    return model, data, labels, report


def test_binary_rates_auroc_and_brier_match_sklearn(medical):
    model, data, labels, report = medical
    proba = model.predict_proba(data)
    pred = proba.argmax(axis=1)
    assert report["clinical_accuracy"] == pytest.approx(np.mean(pred == labels))
    assert report["sensitivity"] == pytest.approx(recall_score(labels, pred))
    assert report["specificity"] == pytest.approx(recall_score(labels, pred, pos_label=0))
    assert report["ppv"] == pytest.approx(precision_score(labels, pred))
    assert report["npv"] == pytest.approx(precision_score(labels, pred, pos_label=0))
    assert report["auroc"] == pytest.approx(roc_auc_score(labels, proba[:, 1]))
    assert report["brier_score"] == pytest.approx(brier_score_loss(labels, proba[:, 1]))
    assert 0.0 <= report["expected_calibration_error"] <= 1.0
    assert report["per_class"]["1"]["sensitivity"] == report["sensitivity"]


def test_bootstrap_intervals_bracket_the_point_estimates(medical):
    _, _, _, report = medical
    for name, key in (("accuracy", "clinical_accuracy"), ("sensitivity", "sensitivity"), ("auroc", "auroc")):
        ci = report["confidence_intervals"][name]
        assert ci["n_boot"] == 50 and ci["low"] <= report[key] <= ci["high"]


def test_training_config_switches_turn_on_importance_and_checklist(medical):
    model, data, labels, report = medical
    ablation = modality_ablation(model, data, labels)
    assert report["clinical_importance"] == pytest.approx({m: row["drop"] for m, row in ablation.items()})
    for m, row in report["robustness"].items():
        assert row["accuracy_missing"] == pytest.approx(ablation[m]["score_without"])
        assert row["kept_missing"] == pytest.approx(row["accuracy_missing"] / report["clinical_accuracy"])
    items = {item["item"]: item for item in report["reporting_checklist"]}
    assert items["evaluation data separate from training data"]["documented"]
    assert items["intended use and clinical setting"]["evidence"] == "triage of adult outpatients"
    assert not items["external validation (another site or period)"]["documented"]
    done = sum(item["documented"] for item in report["reporting_checklist"])
    assert report["compliance_status"].startswith(f"{done} of {len(items)}")
    assert "not a regulatory assessment" in report["compliance_status"]


def test_sections_are_off_by_option_and_training_rows_are_caught(medical):
    model, data, labels, _ = medical
    off = model.get_medical_validation_report(data, labels, interpretability_required=False,
                                              regulatory_compliance=False, n_bootstrap=5)
    assert off.get("clinical_importance") is None and off.get("reporting_checklist") is None
    assert f"{off['compliance_status']}" == "n/a (not computed: pass regulatory_compliance=True)"
    assert "interpretability_required=True" in off["notes"]["clinical_importance"]
    train_rows = {m: model.dataset.arrays[m][:50] for m in MEDICAL}
    leaked = model.get_medical_validation_report(train_rows, model.dataset.labels[:50], n_bootstrap=5)
    first = leaked["reporting_checklist"][0]
    assert not first["documented"] and first["evidence"].startswith("50 of 50")


def test_threshold_and_positive_class(medical):
    model, data, labels, _ = medical
    strict = model.get_medical_validation_report(data, labels, threshold=0.9, n_bootstrap=5)
    p1 = model.predict_proba(data)[:, 1]
    assert strict["sensitivity"] == pytest.approx(recall_score(labels, p1 >= 0.9))
    flipped = model.get_medical_validation_report(data, labels, positive_class=0, n_bootstrap=5)
    assert flipped["sensitivity"] == pytest.approx(recall_score(labels == 0, p1 < 0.5))
    # robustness and importance use the same operating point as clinical_accuracy
    scorer = EnsembleScorer(model, data, labels)
    for m, row in strict["robustness"].items():
        p1_missing = scorer.output(scorer.without([m]))[:, 1]
        assert row["accuracy_missing"] == pytest.approx(np.mean((p1_missing >= 0.9) == labels))
        assert row["kept_missing"] == pytest.approx(row["accuracy_missing"] / strict["clinical_accuracy"])
    assert flipped["auroc"] == pytest.approx(roc_auc_score(labels == 0, 1 - p1))
    with pytest.raises(ConfigError, match="positive_class=7"):
        model.get_medical_validation_report(data, labels, positive_class=7)


def test_multiclass_rates_are_macro_one_vs_rest(trained_model, held_out):
    data, labels = held_out
    report = trained_model.get_medical_validation_report(data, labels, n_bootstrap=5)
    proba = trained_model.predict_proba(data)
    pred = proba.argmax(axis=1)
    assert report["sensitivity"] == pytest.approx(recall_score(labels, pred, average="macro"))
    assert report["ppv"] == pytest.approx(precision_score(labels, pred, average="macro", zero_division=0))
    assert report["auroc"] == pytest.approx(roc_auc_score(labels, proba, multi_class="ovr"))
    assert "macro averages" in report["notes"]["sensitivity"]
    assert report.get("clinical_importance") is None  # the session model trained without the switch
