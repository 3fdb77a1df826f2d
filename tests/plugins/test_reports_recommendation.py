"""The recommendation report on a multilabel ensemble shaped like the spec's e-commerce example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from modalbag import ConfigError
from modalbag.reports import metrics as rm
from tests.plugins.test_reports_medical import train

SHOP = {"user_profiles": (8, "tabular"), "product_features": (10, "tabular"), "behavioral_data": (12, "tabular"),
        "contextual_data": (4, "tabular"), "social_signals": (6, "tabular"), "visual_features": (16, "image")}


@pytest.fixture(scope="module")
def shop():
    model, (data, labels) = train(SHOP, n_classes=12, task_type="multilabel", n_bags=4)
    cold = np.zeros(len(labels), bool)
    cold[:40] = True
    data = {**data, "behavioral_data": data["behavioral_data"].copy()}
    data["behavioral_data"][:40] = np.nan  # new users: no behaviour yet
    return model, data, labels, cold


@pytest.fixture(scope="module")
def report(shop):
    model, data, labels, _ = shop
    return model.get_recommendation_report(data, labels, k=5, behavioral_modality="behavioral_data")


def test_ranking_metrics_follow_the_models_scores(shop, report):
    model, data, labels, _ = shop
    scores = model.predict_proba(data)
    assert report["precision_at_5"] == pytest.approx(rm.precision_at_k(labels, scores, 5))
    assert report["recall_at_5"] == pytest.approx(rm.recall_at_k(labels, scores, 5))
    rows = labels.sum(axis=1) > 0
    assert report["ndcg_at_5"] == pytest.approx(ndcg_score(labels[rows], scores[rows], k=5))
    assert report["map"] == pytest.approx(rm.mean_average_precision(labels, scores))
    assert report["coverage"] == pytest.approx(len(np.unique(rm.top_k(scores, 5))) / 12)
    assert report["diversity_score"] == pytest.approx(rm.intra_list_diversity(rm.top_k(scores, 5), labels.T))


def test_cold_start_rows_from_the_missing_behaviour_or_flags(shop, report):
    model, data, labels, cold = shop
    scores = model.predict_proba(data)
    assert report["cold_start"]["n_users"] == 40 and "behavioral_data" in report["cold_start"]["rows"]
    assert report["cold_start_accuracy"] == pytest.approx(np.mean((scores[:40] >= 0.5) == labels[:40]))
    flagged = model.get_recommendation_report(data, labels, k=5, cold_start=cold[::-1])
    assert flagged["cold_start"]["n_users"] == 40
    assert flagged["cold_start_accuracy"] == pytest.approx(np.mean((scores[-40:] >= 0.5) == labels[-40:]))
    none = model.get_recommendation_report(data, labels, k=5)
    assert none.get("cold_start_accuracy") is None and "cold_start=" in none["notes"]["cold_start_accuracy"]


def test_modality_contributions_are_ndcg_lost(shop, report):
    model, data, labels, _ = shop
    for m, contribution in report["modality_contributions"].items():
        without = model.predict_proba({k: v for k, v in data.items() if k != m})
        assert contribution == pytest.approx(report["ndcg_at_5"] - rm.ndcg_at_k(labels, without, 5))


def test_business_uplift_only_from_an_experiment(shop, report):
    model, data, labels, _ = shop
    assert report.get("ctr_improvement") is None and "experiment" in report["notes"]["ctr_improvement"]
    measured = model.get_recommendation_report(data, labels, experiment={
        "control": {"impressions": 2000, "clicks": 80}, "treatment": {"impressions": 2000, "clicks": 100}})
    assert measured["ctr_improvement"] == pytest.approx(0.25)
    assert measured.get("conversion_impact") is None and measured["notes"]["conversion_impact"]


def test_item_features_and_bad_inputs(shop, trained_model, held_out):
    model, data, labels, _ = shop
    features = np.eye(12)
    report = model.get_recommendation_report(data, labels, k=3, item_features=features)
    assert report["diversity_score"] == pytest.approx(1.0)  # orthogonal items are all maximally apart
    with pytest.raises(ConfigError, match="did you mean 'behavioral_data'"):
        model.get_recommendation_report(data, labels, behavioral_modality="behavioural_data")
    with pytest.raises(ConfigError, match="multilabel"):
        trained_model.get_recommendation_report(*held_out)


def test_online_validation_scores_windows_in_arrival_order_and_cold_start_testing_simulates(shop):
    model, data, labels, _ = shop
    full = {k: np.asarray(v)[40:] for k, v in data.items()}  # every user has behaviour
    y = labels[40:]
    out = model.get_recommendation_report(full, y, k=5, behavioral_modality="behavioral_data",
                                          online_validation=True, online_windows=3, cold_start_testing=True)
    windows = out["online_validation"]
    assert len(windows) == 3 and windows[0]["start"] == 0 and windows[-1]["end"] == len(y) - 1
    first = slice(windows[0]["start"], windows[0]["end"] + 1)
    scores = model.predict_proba(full)
    assert windows[0]["precision_at_5"] == pytest.approx(rm.precision_at_k(y[first], scores[first], 5))
    # no cold rows in the data: every user is scored with the behaviour hidden
    assert out["cold_start"]["rows"].startswith("simulated") and out["cold_start"]["n_users"] == len(y)
    hidden = model.predict_proba({k: v for k, v in full.items() if k != "behavioral_data"})
    assert out["cold_start"]["precision_at_5"] == pytest.approx(rm.precision_at_k(y, hidden, 5))
    plain = model.get_recommendation_report(full, y, k=5, behavioral_modality="behavioral_data")
    assert plain.get("online_validation") is None and plain.get("cold_start") is None
