"""Selection by measurement: candidates scored on held-out rows, the best kept, skips reported."""

from __future__ import annotations

import numpy as np
import pytest

import modalbag
from modalbag.cli.output import format_summary
from modalbag.engine.selection import PORTFOLIOS, prune
from tests.conftest import catalog_without

QUIET = {"epochs": 3, "mixed_precision": False, "save_checkpoints": False, "threads_per_learner": 1,
         "random_state": 0}


def _two_views(n: int, seed: int = 0):
    """View ``signal`` carries the label linearly; view ``noise`` carries nothing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = (rng.normal(size=(n, 5)) + 1.2 * (2 * y[:, None] - 1) * np.array([1, 0.8, 0.6, 0, 0])).astype("float32")
    noise = rng.normal(size=(n, 8)).astype("float32")
    return {"signal": signal, "noise": noise}, y


def _model(data, y, n_bags=3, **kwargs):
    model = modalbag.create_model_from_arrays({k: (v, "tabular") for k, v in data.items()}, labels=y, **kwargs)
    model.create_ensemble(n_bags=n_bags, random_state=0)
    return model


def test_the_planted_informative_view_wins_on_forty_samples():
    data, y = _two_views(40)
    model = _model(data, y)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False)
    model.train_ensemble(**QUIET)
    summary = model.get_training_summary()
    for subset, chosen in summary["selection"].items():  # every candidate measured, the best kept
        losses = {n: s["loss"] for n, s in chosen["measured"].items() if "loss" in s}
        assert len(losses) >= 2, chosen
        assert chosen["trainer"] == min(losses, key=losses.get), (subset, chosen)
        assert chosen["trainer"] != "neural"  # never forced on forty rows
    test, y_test = _two_views(400, seed=1)
    accuracy = np.mean(model.predict(test) == y_test)
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression().fit(data["signal"], y).score(test["signal"], y_test)
    assert accuracy >= reference - 0.05, (accuracy, reference)
    noise_only = {"signal": np.full_like(test["signal"], np.nan), "noise": test["noise"]}
    assert abs(np.mean(model.predict(noise_only) == y_test) - 0.5) < 0.1  # no invented signal


def test_the_weaker_learner_is_not_chosen():
    """A non-linear view (the label is the sign of x0 * x1): a kernel or neighbour method wins, not
    the linear model ranked first by the rules; on a linear view the linear model wins."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    model = modalbag.create_model_from_arrays({"xor": (x, "tabular")}, labels=y)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               trainers=["logistic", "svm", "knn"])
    model.train_ensemble(**QUIET)
    chosen = model.get_training_summary()["selection"]["xor"]
    assert chosen["trainer"] in ("svm", "knn"), chosen
    # the linear model is clearly worse on the first two folds' held-out rows: raced out, not fitted on the rest
    assert chosen["measured"]["logistic"]["stopped"].startswith("stopped after 2 folds"), chosen
    assert chosen["measured"]["logistic"]["seconds"] >= 0


def test_racing_stops_only_a_clearly_worse_candidate_and_accuracy_runs_every_fold():
    from modalbag.engine.portfolio import _Partial, race

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    margin = 2.0 * (2 * y - 1) + rng.normal(size=200)  # an informative score, overlapping classes

    def probabilities(score):
        p = 1 / (1 + np.exp(-score))
        return np.column_stack([1 - p, p])

    good = probabilities(margin)
    close = probabilities(margin + 0.3 * rng.normal(size=200))
    coin = probabilities(rng.normal(size=200))

    def partial(out):
        return _Partial(out, np.arange(200) < 120, {})  # the first two folds' rows are predicted

    stopped = race("classification", y, {"good": partial(good), "close": partial(close), "coin": partial(coin)})
    assert list(stopped) == ["coin"] and "against good's" in stopped["coin"]
    assert race("classification", y, {"good": partial(good), "close": partial(close)}) == {}

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype(int)
    model = modalbag.create_model_from_arrays({"xor": (x, "tabular")}, labels=y)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               trainers=["logistic", "knn"], optimization_strategy="accuracy")
    model.train_ensemble(**QUIET)
    measured = model.get_training_summary()["selection"]["xor"]["measured"]
    assert all("loss" in s for s in measured.values()), measured  # accuracy: every candidate on every fold


def test_racing_stops_a_costly_candidate_that_is_merely_behind():
    """At several times the leader's estimated cost, being behind is enough; a cheap candidate, or a
    costly one whose fits are negligible in absolute terms, still needs to be clearly worse."""
    from modalbag.engine.portfolio import RACE_COSTLY_MIN_SECONDS, _Partial, race

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    margin = 2.0 * (2 * y - 1) + rng.normal(size=200)

    def probabilities(score):
        p = 1 / (1 + np.exp(-score))
        return np.column_stack([1 - p, p])

    running = {"good": _Partial(probabilities(margin), np.arange(200) < 120, {}),
               "behind": _Partial(probabilities(margin + 0.7 * rng.normal(size=200)), np.arange(200) < 120, {})}
    assert race("classification", y, running) == {}  # not clearly worse: no cost, no stop
    assert race("classification", y, running, {"good": 0.1, "behind": 0.1}) == {}
    stopped = race("classification", y, running, {"good": 0.01, "behind": 0.1})
    assert list(stopped) == ["behind"] and "estimated 10.0x its cost per fit" in stopped["behind"]
    tiny = RACE_COSTLY_MIN_SECONDS / 2
    assert race("classification", y, running, {"good": tiny / 10, "behind": tiny}) == {}
    # the leader is never stopped, however costly
    assert race("classification", y, running, {"good": 1.0, "behind": 0.01}) == {}


def test_boosted_trees_cost_several_svms_on_small_dense_data_by_the_trainers_own_estimates():
    """The estimates racing uses come from the profile alone (deterministic), and order the trainers
    as their measured fits do on a few hundred dense rows: boosting well above the SVM and logistic."""
    from modalbag.kernel.modalities import ModalitySpec
    from modalbag.kernel.proposals import BagProfile
    from modalbag.plugins.trainers.hist_gradient_boosting import HistGradientBoostingLearner
    from modalbag.plugins.trainers.logistic import LogisticLearner
    from modalbag.plugins.trainers.svm import SVMLearner

    specs = {"a": ModalitySpec("a", "tabular", (10,))}
    for classes in (2, 10):
        profile = BagProfile(("a",), specs, 450, "classification", classes)
        costs = {cls.trainer: cls.propose(profile, "balanced").cost
                 for cls in (HistGradientBoostingLearner, SVMLearner, LogisticLearner)}
        assert costs["hist_gradient_boosting"] >= 4 * max(costs["svm"], costs["logistic"]), costs
        assert costs == {cls.trainer: cls.propose(profile, "balanced").cost
                         for cls in (HistGradientBoostingLearner, SVMLearner, LogisticLearner)}


def test_svm_fold_models_share_one_calibration_fitted_on_their_out_of_fold_scores(monkeypatch):
    """A fold-bagged SVM subset fits one SVC per fold (no calibration folds each) and calibrates the k
    models together on all their out-of-fold scores; the cross-fitted outputs are the calibrated ones."""
    from sklearn.svm import SVC

    from modalbag.plugins.trainers.sklearn_linear import design_matrix
    from modalbag.plugins.trainers.svm import CROSS_FITTED, fit_calibration

    fits = []
    real_fit = SVC.fit

    def counting(self, *args, **kwargs):
        fits.append(1)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(SVC, "fit", counting)
    data, y = _two_views(90)
    model = _model({"signal": data["signal"]}, y, n_bags=1)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False, trainers=["svm"])
    model.train_ensemble(**QUIET)
    learners = [model.learners[b.learner_id] for b in model.bags]
    assert [b.fold for b in model.bags] == list(range(5))
    assert len(fits) == 5  # one SVC per fold model (internal calibration would be 6 each)
    calibration = learners[0].spec.architecture["calibration"]
    for record in learners:
        assert record.model.info["calibration"] == CROSS_FITTED
        assert record.spec.architecture["calibration"] == calibration  # recorded: a refit is identical
        np.testing.assert_allclose(record.model.model.temperature, [calibration["a"]])
    # the calibration is the one fitted on the fold models' raw scores, every row out of fold
    scores, labels = np.zeros((90, 2)), np.zeros(90, dtype=int)
    for bag, record in zip(model.bags, learners, strict=True):
        machine = record.model.model.machines[0]
        z = record.model.layout.transform({"signal": data["signal"][bag.oob_rows]}, None)
        m = record.model.model
        scores[bag.oob_rows] = machine.scores(design_matrix(z, m.mean, m.scale, m.presence), m.gamma)
        labels[bag.oob_rows] = y[bag.oob_rows]
    a, b = fit_calibration(scores, labels, None)
    assert abs(a - calibration["a"]) < 1e-4 * max(1.0, abs(a)) and np.allclose(b, calibration["b"], atol=1e-4)


def test_same_seed_same_choice_and_a_missing_library_is_reported_not_replaced():
    data, y = _two_views(120)
    first = _model(data, y, n_bags=2)
    first.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               optimization_strategy="speed")
    first.train_ensemble(**QUIET)
    again = _model(data, y, n_bags=2)
    again.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               optimization_strategy="speed")
    again.train_ensemble(**QUIET)
    def choices(model):  # what was chosen and every measured loss (seconds vary, losses must not)
        return {k: (v["trainer"], {n: s.get("loss") for n, s in v["measured"].items()})
                for k, v in model.get_training_summary()["selection"].items()}

    assert choices(first) == choices(again)
    np.testing.assert_array_equal(first.predict_proba(data), again.predict_proba(data))

    without = _model(data, y, n_bags=1, catalog=catalog_without("trainer.hist_gradient_boosting"))
    without.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                                 optimization_strategy="speed")
    without.train_ensemble(**QUIET)
    (chosen,) = without.get_training_summary()["selection"].values()
    assert "hist_gradient_boosting" in chosen["candidates"]
    assert "skipped" in chosen["measured"]["hist_gradient_boosting"]
    assert chosen["trainer"] == "logistic"
    # the run says plainly which candidates could not compete, in its summary and the CLI's text of it
    unavailable = without.get_training_summary()["unavailable_candidates"]
    assert list(unavailable) == ["hist_gradient_boosting"] and "hist_gradient_boosting" in unavailable[
        "hist_gradient_boosting"]
    assert "hist_gradient_boosting" in format_summary(without.get_training_summary()).split("not measured")[1]
    assert first.get_training_summary()["unavailable_candidates"] == {}


def test_portfolios_follow_the_strategy_and_the_data_size():
    assert prune(PORTFOLIOS["balanced"], "balanced", 200, 10, raw=False) == ["logistic", "svm", "knn",
                                                                            "hist_gradient_boosting"]
    assert "neural" in prune(PORTFOLIOS["balanced"], "balanced", 5000, 512, raw=False)
    assert "svm" not in prune(PORTFOLIOS["balanced"], "balanced", 50_000, 10, raw=False)
    assert "hist_gradient_boosting" not in prune(PORTFOLIOS["balanced"], "balanced", 1000, 2866, raw=False)
    assert "hist_gradient_boosting" in prune(PORTFOLIOS["accuracy"], "accuracy", 1000, 2866, raw=False)
    assert "neural" in prune(PORTFOLIOS["balanced"], "balanced", 100, 10, raw=True)  # raw images: the network
    assert len(prune(PORTFOLIOS["speed"], "speed", 200, 10, raw=False)) <= 2
    assert set(PORTFOLIOS["balanced"]) <= set(PORTFOLIOS["accuracy"])


def test_a_resumed_measured_run_combines_exactly_as_the_original(tmp_path):
    """Resume keeps the measured winners and re-derives the same cross-fits (same folds, same seeds)."""
    data, y = _two_views(160)
    original = _model(data, y, n_bags=3)
    original.train_ensemble(run_dir=str(tmp_path), **QUIET)
    assert original.ensemble.cross_fitted  # the measured subsets carry cross-fits
    resumed = _model(data, y, n_bags=3)
    resumed.train_ensemble(resume=True, run_dir=str(tmp_path), **QUIET)
    assert resumed.ensemble.cross_fitted == original.ensemble.cross_fitted
    test, _ = _two_views(100, seed=3)
    np.testing.assert_array_equal(resumed.predict_proba(test), original.predict_proba(test))


def test_capped_measurement_rows_nest_across_subsets(monkeypatch):
    """Past the cap the experts of a pattern must still share their evidence rows."""
    from modalbag.engine import portfolio

    data, y = _two_views(300)
    model = _model(data, y)
    monkeypatch.setattr(portfolio, "MAX_ROWS", 50)
    one = portfolio.measurement_rows(model.dataset, ("signal",), 7)
    both = portfolio.measurement_rows(model.dataset, ("noise", "signal"), 7)
    assert len(one) == 50 and np.array_equal(one, both)
    assert not np.array_equal(one, portfolio.measurement_rows(model.dataset, ("signal",), 8))


def test_time_series_measurement_never_predicts_a_row_from_later_rows():
    from modalbag.engine.portfolio import folds_for

    folds = folds_for(np.arange(120) % 2, "classification", 0, time_series=True)
    assert len(folds) == 5
    for train, test in folds:
        assert train.max() < test.min()


def _three_views(n: int, seed: int = 0):
    data, y = _two_views(n, seed)
    rng = np.random.default_rng(seed + 100)
    data["weak"] = (rng.normal(size=(n, 3)) + 0.4 * (2 * y[:, None] - 1)).astype("float32")
    return data, y


def test_a_small_measured_subset_is_bagged_by_its_folds_without_refitting(monkeypatch):
    """Its bags are the k cross-validation splits, validated on their held-out fold, and its learners
    are the winner's measured fold models: no fit happens after the measurement."""
    from modalbag.engine import portfolio
    from modalbag.execution import work, workers

    calls = []
    real_fit = portfolio.fit_learner

    def counting(spec, bag, *args, **kwargs):
        calls.append((spec.trainer, bag.fold))
        return real_fit(spec, bag, *args, **kwargs)

    monkeypatch.setattr(portfolio, "fit_learner", counting)
    monkeypatch.setattr(work, "fit_learner", counting)
    monkeypatch.setattr(workers, "fit_learner", counting)
    data, y = _two_views(120)
    model = _model(data, y, n_bags=6)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               trainers=["logistic", "knn"])
    model.train_ensemble(**QUIET)
    subsets = {tuple(b.modalities) for b in model.bags}
    assert all(b.fold is not None for b in model.bags)
    for subset in subsets:
        bags = [b for b in model.bags if tuple(b.modalities) == subset]
        assert sorted(b.fold for b in bags) == list(range(5))  # k = 5 on 120 rows
        held_out = np.concatenate([b.oob_rows for b in bags])
        assert np.array_equal(np.sort(held_out), np.arange(120))  # the held-out folds partition the rows
        for b in bags:
            assert not np.intersect1d(b.rows, b.oob_rows).size and len(np.unique(b.rows)) == len(b.rows)
    assert len(calls) == 2 * 5 * len(subsets)  # two candidates, five folds, per subset; nothing refitted
    assert [b.id for b in model.bags] == list(range(len(model.bags)))
    assert sorted(model.learners) == sorted(b.learner_id for b in model.bags)
    for record in model.learners.values():  # the record's spec is the final one, with what was measured
        assert record.spec.trainer in ("logistic", "knn") and set(record.spec.measured) == {"logistic", "knn"}
        assert record.validation  # scored on its held-out fold
    assert model.ensemble.cross_fitted == set(model.learners)


@pytest.mark.parametrize("trainers", [None, ["svm"]])
def test_a_resumed_fold_bagged_run_refits_a_lost_fold_model_identically(tmp_path, trainers):
    """A fold learner that must be trained again (here: forgotten by run.json) is fitted by the engine
    on the same fold bag with the same seed, so the resumed ensemble predicts exactly as the original
    (an SVM fold model with the cross-fit's calibration, which its recorded architecture holds)."""
    import json

    data, y = _two_views(100)
    original = _model(data, y, n_bags=3)
    if trainers:
        original.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                                      trainers=trainers)
    original.train_ensemble(run_dir=str(tmp_path), **QUIET)
    record = json.loads((tmp_path / "run.json").read_text())
    lost = sorted(record["learners"])[1]
    record["learners"][lost] = {"status": "pending"}
    record["status"] = "running"
    (tmp_path / "run.json").write_text(json.dumps(record))
    resumed = _model(data, y, n_bags=3)
    if trainers:
        resumed.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                                     trainers=trainers)
    resumed.train_ensemble(resume=True, run_dir=str(tmp_path), **QUIET)
    assert [b.fold for b in resumed.bags] == [b.fold for b in original.bags]
    assert resumed.ensemble.cross_fitted == original.ensemble.cross_fitted
    test, _ = _two_views(80, seed=3)
    np.testing.assert_allclose(resumed.predict_proba(test), original.predict_proba(test), rtol=0, atol=1e-12)


def test_subsets_past_the_measurement_cap_keep_bootstrap_bags(monkeypatch):
    from modalbag.engine import portfolio

    monkeypatch.setattr(portfolio, "MAX_ROWS", 60)
    data, y = _two_views(120)
    model = _model(data, y, n_bags=3)
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               trainers=["logistic", "knn"])
    model.train_ensemble(**QUIET)
    assert len(model.bags) == 3 and all(b.fold is None for b in model.bags)
    assert all(len(v["measured"]) == 2 for v in model.get_training_summary()["selection"].values())


def test_balanced_narrows_the_portfolio_to_the_probe_winners_and_accuracy_does_not():
    """The whole portfolio on each modality alone and on all of them; a pair fits only the candidate
    with the lowest loss relative to each probe's best, on average."""
    data, y = _three_views(150)
    for strategy, narrowed in (("balanced", True), ("accuracy", False)):
        model = _model(data, y, n_bags=7)
        model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                                   trainers=["logistic", "knn"], optimization_strategy=strategy)
        model.train_ensemble(**QUIET)
        selection = model.get_training_summary()["selection"]
        probes = {k: v for k, v in selection.items() if k.count("+") in (0, 2)}
        pairs = {k: v for k, v in selection.items() if k.count("+") == 1}
        assert len(probes) == 4 and len(pairs) == 3
        for chosen in probes.values():
            assert all("loss" in s for s in chosen["measured"].values())
        ratio = {n: np.mean([v["measured"][n]["loss"] / min(s["loss"] for s in v["measured"].values())
                             for v in probes.values()]) for n in ("logistic", "knn")}
        kept = min(ratio, key=ratio.get)
        for chosen in pairs.values():
            measured = {n for n, s in chosen["measured"].items() if "loss" in s}
            if narrowed:
                assert measured == {kept} and chosen["trainer"] == kept, chosen
                (other,) = {"logistic", "knn"} - {kept}
                assert "narrowed away" in chosen["measured"][other]["narrowed"]
                assert model.get_training_summary()["unavailable_candidates"] == {}  # narrowed is not missing
            else:
                assert measured == {"logistic", "knn"}


def test_the_callers_plugins_shape_the_measured_models_that_become_learners():
    """k-fold bagging keeps measured models, so a plugin instance passed by the caller must see those fits."""
    from modalbag import hookimpl

    class SeesFits:
        def __init__(self):
            self.fits = []

        @hookimpl
        def modalbag_fit_start(self, run, fit):
            self.fits.append((fit.spec.learner_id, fit.spec.trainer, fit.bag.fold))

    seen = SeesFits()
    data, y = _two_views(80)
    model = _model(data, y, n_bags=1, plugins=[seen])
    model.select_base_learners(task_type="classification", num_classes=2, instantiate=False,
                               trainers=["logistic", "knn"])
    model.train_ensemble(**QUIET)
    for lid, record in model.learners.items():
        assert (lid, record.spec.trainer, model.bags[int(lid[-3:])].fold) in seen.fits
    measured = next(iter(model.get_training_summary()["selection"].values()))["measured"]
    folds = {n: (len(model.learners) if "loss" in s else 2) for n, s in measured.items()}  # raced out: two folds
    assert len(seen.fits) == sum(folds.values())
