"""The report's headline: the ensemble's score and its curve as modalities go missing."""

from __future__ import annotations

import pytest

from modalbag import NotFittedError
from modalbag.reports.headline import ALL_SUBSETS_MAX_MODALITIES, MISSING_SHARES, ensemble_headline, modality_subsets
from tests.conftest import make_model


def test_subsets_are_all_non_empty_ones_up_to_the_cap_and_a_few_beyond():
    assert modality_subsets(["a", "b", "c"]) == [("a", "b", "c"), ("a", "b"), ("a", "c"), ("b", "c"),
                                                  ("a",), ("b",), ("c",)]
    many = [f"m{i}" for i in range(ALL_SUBSETS_MAX_MODALITIES + 2)]
    found = modality_subsets(many)
    assert found[0] == tuple(many) and len(found) == 1 + 2 * len(many)  # all, all but each, each alone


def test_held_out_headline_equals_evaluate_and_its_curve_starts_there(trained_model, held_out):
    data, labels = held_out
    found = ensemble_headline(trained_model, data, labels)
    assert found["source"] == "held-out data" and found["rows"] == len(labels)
    assert found["score"] == pytest.approx(trained_model.evaluate(data, labels)["accuracy"])
    shares = [p["share_missing"] for p in found["by_share_missing"]]
    assert shares == list(MISSING_SHARES)
    assert found["by_share_missing"][0]["score"] == pytest.approx(found["score"])
    assert found["by_subset"][0]["score"] == pytest.approx(found["score"])  # every modality present
    # dropping 90% of the modalities costs accuracy on this task, where every modality carries signal
    assert found["by_share_missing"][-1]["score"] < found["score"]


def test_out_of_fold_headline_without_held_out_data(trained_model):
    found = ensemble_headline(trained_model)
    assert found["source"] == "out-of-fold training rows"
    assert any("optimistic" in note for note in found["notes"])
    assert 0.0 <= found["score"] <= 1.0
    # with nothing missing the expected curve is the all-present subset's score, which is the headline
    assert found["by_share_missing"][0]["score"] == pytest.approx(found["score"])
    assert found["by_subset"][0]["score"] == pytest.approx(found["score"])


def test_unfitted_model_has_no_headline():
    with pytest.raises(NotFittedError, match="train_ensemble"):
        ensemble_headline(make_model(n_samples=50))


def test_a_cpu_only_build_is_reported_under_its_library_name(monkeypatch):
    import importlib.metadata

    from modalbag.io import machine

    real = importlib.metadata.version

    def version(dist):
        if dist == "xgboost":
            raise importlib.metadata.PackageNotFoundError(dist)
        if dist == "xgboost-cpu":
            return "3.2.0"
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert machine.library_versions(("xgboost",)) == {"xgboost": "3.2.0 (xgboost-cpu)"}
