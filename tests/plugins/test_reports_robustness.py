"""The robustness report, `modality_ablation` and reaching reports by name, on the session ensemble."""

from __future__ import annotations

import copy
import json

import attrs
import numpy as np
import pytest

from modalbag import (
    Catalog,
    ConfigError,
    DataError,
    UnknownPluginError,
    hookimpl,
    modality_ablation,
)
from modalbag.reports.robustness import EnsembleScorer
from tests.conftest import with_missing


@pytest.fixture(scope="module")
def robustness(trained_model, held_out, tmp_path_factory):
    data, labels = held_out
    path = tmp_path_factory.mktemp("plots") / "robustness.png"
    report = trained_model.get_robustness_report(data, labels, noise_levels=[0.0, 1.0, 3.0], missing_repeats=2,
                                                 plot_path=str(path))
    return report


def test_scorer_matches_the_models_own_predictions(trained_model, held_out):
    data, labels = held_out
    scorer = EnsembleScorer(trained_model, data, labels)
    assert np.allclose(scorer.output(), trained_model.predict_proba(data))
    rows = np.arange(0, 600, 3)
    for m in scorer.modalities:
        masks = {m: ~np.isin(np.arange(600), rows)}
        assert np.allclose(scorer.output(masks), trained_model.predict_proba(with_missing(data, m, rows)))
    noised = scorer.noised("image", 1.0, np.random.default_rng(0))
    assert np.allclose(scorer.output_with({"image": noised}), trained_model.predict_proba({**data, "image": noised}),
                       atol=1e-6)


def test_noise_scales_with_each_features_spread(trained_model, held_out):
    data, labels = held_out
    scorer = EnsembleScorer(trained_model, data, labels)
    x = scorer.dataset.arrays["meta"]
    delta = scorer.noised("meta", 0.5, np.random.default_rng(1)) - x
    assert np.allclose(delta.std(axis=0) / x.std(axis=0), 0.5, rtol=0.15)
    assert np.array_equal(scorer.noised("meta", 0.0, np.random.default_rng(1)), x)


def test_modality_ablation_is_evaluate_with_the_modality_missing(trained_model, held_out):
    data, labels = held_out
    ablation = modality_ablation(trained_model, data, labels)
    full = trained_model.evaluate(data, labels)["accuracy"]
    assert set(ablation) == {"text", "image", "meta"}
    for m, row in ablation.items():
        without = trained_model.evaluate(with_missing(data, m, slice(None)), labels)["accuracy"]
        assert row["score_all"] == pytest.approx(full)
        assert row["score_without"] == pytest.approx(without)
        assert row["drop"] == pytest.approx(full - without)
    log_loss = modality_ablation(trained_model, data, labels, metric="log_loss")["image"]
    assert log_loss["drop"] == pytest.approx(log_loss["score_without"] - log_loss["score_all"])
    with pytest.raises(ConfigError, match="choose one of"):
        modality_ablation(trained_model, data, labels, metric="r2")


def test_every_subset_is_scored_and_the_worst_is_the_minimum(robustness, trained_model, held_out):
    data, labels = held_out
    subsets = robustness["subset_scores"]
    assert len(subsets) == 7 and not robustness["subsets_sampled"]
    full = next(s for s in subsets if len(s["modalities"]) == 3)
    assert full["score"] == pytest.approx(robustness["full_score"])
    assert robustness["full_score"] == pytest.approx(trained_model.evaluate(data, labels)["accuracy"])
    only_text = next(s for s in subsets if s["modalities"] == ["text"])
    text_alone = with_missing(with_missing(data, "image", slice(None)), "meta", slice(None))
    assert only_text["score"] == pytest.approx(trained_model.evaluate(text_alone, labels)["accuracy"])
    assert robustness["worst_subset"]["score"] == min(s["score"] for s in subsets)
    assert robustness["worst_subset_by_size"]["3"]["score"] == full["score"]


def test_missing_share_curve_and_multibench_metrics(robustness):
    curve = robustness["missing_share_curve"]
    assert [c["missing_share"] for c in curve] == pytest.approx([0.1 * i for i in range(10)])
    assert curve[0]["score"] == pytest.approx(robustness["full_score"])
    for c in curve[1:]:
        assert c["measured_missing_share"] == pytest.approx(c["missing_share"], abs=0.06)
    f = np.array([c["score"] for c in curve])
    assert robustness["relative_robustness"] == pytest.approx(np.sum((f[1:] + f[:-1]) / 2 * 0.1))
    g = np.array(robustness["reference_curve"])
    assert robustness["effective_robustness"] == pytest.approx(np.sum(f - (g + f[0] - g[0])))
    assert robustness["effective_robustness_reference"] in robustness["notes"]["effective_robustness"]
    assert curve[-1]["score"] < curve[0]["score"]  # losing 90% of the modalities costs accuracy


def test_noise_levels_per_modality(robustness):
    for rows in robustness["noise"].values():
        assert [r["level"] for r in rows] == [0.0, 1.0, 3.0]
        assert rows[0]["score"] == pytest.approx(robustness["full_score"])  # zero noise changes nothing


def test_the_plot_is_a_png(robustness):
    with open(robustness["plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reports_by_name_with_clear_errors(trained_model, held_out):
    data, labels = held_out
    with pytest.raises(UnknownPluginError, match="did you mean 'robustness'"):
        trained_model.report("robustnes", data, labels)
    with pytest.raises(ConfigError, match="did you mean 'noise_levels'"):
        trained_model.report("robustness", data, labels, noise_level=[1.0])
    with pytest.raises(ConfigError, match="max_subsets"):
        trained_model.report("robustness", data, labels, max_subsets=0)
    with pytest.raises(DataError, match="give both or neither"):
        trained_model.get_robustness_report(data)
    with pytest.raises(DataError, match="labels have 10 rows"):
        trained_model.get_robustness_report(data, labels[:10])


def test_without_held_out_data_subsets_are_scored_out_of_fold(trained_model):
    report = trained_model.get_robustness_report()
    assert report["measured_on"].startswith("out-of-fold")
    by_subset = {tuple(r["modalities"]): r["score"] for r in report["subset_scores"]}
    assert by_subset[tuple(report["modalities"])] == report["full_score"]
    assert len(by_subset) == 2 ** len(report["modalities"]) - 1
    assert all(0.0 <= score <= 1.0 for score in by_subset.values())
    # Changed inputs cannot be scored without held-out data: None, with the reason.
    assert report.get("missing_share_curve") is None and report.get("noise") is None
    assert "held-out" in report["notes"]["missing_share_curve"]


def test_a_run_dir_receives_the_report_as_json(trained_model, held_out, tmp_path):
    data, labels = held_out
    model = copy.copy(trained_model)  # same ensemble, its own config
    model.training_config = trained_model.training_config.replace(run_dir=str(tmp_path))
    report = model.report("robustness", data, labels, missing_rates=[0.0, 0.5], missing_repeats=1,
                          noise_levels=[1.0], max_subsets=3)
    written = json.loads((tmp_path / "reports" / "robustness.json").read_text())
    assert written["full_score"] == report["full_score"]
    assert report["subsets_sampled"] and len(report["subset_scores"]) == 7  # the required subsets stay
    assert (tmp_path / "reports" / "robustness.png").exists()


class _CountReport:
    """A third-party report: registered through modalbag_register_reports, options from keywords."""

    @hookimpl
    def modalbag_register_reports(self, register):
        register("count", lambda options: self, options=_CountOptions, summary="counts samples")

    def generate(self, model, data, labels, *, extra=0):
        return {"n": len(labels) + extra, "notes": {}}


@attrs.frozen
class _CountOptions:
    scale: int = 1


def test_a_report_registered_through_the_hook_is_reached_by_name(trained_model, held_out):
    data, labels = held_out
    model = copy.copy(trained_model)
    model.catalog = Catalog()
    model.catalog.register_plugin(_CountReport(), name="count-report")
    assert model.report("count", data, labels, extra=2, scale=3) == {"n": 602, "notes": {}}
    with pytest.raises(ConfigError, match="It accepts: extra, scale"):
        model.report("count", data, labels, other=1)
