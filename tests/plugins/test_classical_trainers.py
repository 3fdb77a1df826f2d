"""The classical trainer plugins (``svm``, ``knn``, ``hist_gradient_boosting``, ``logistic``): every task,
array files that load without unpickling and predict what the fitted model did, agreement with
scikit-learn's own predictions, calibration, selection scores, and a missing optional library."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
import warnings

import attrs
import numpy as np
import pytest

from modalbag import ConfigError, create_model_from_arrays, create_synthetic_model
from modalbag.kernel.modalities import ModalitySpec
from modalbag.kernel.proposals import BagProfile
from modalbag.plugins.trainers import (
    catboost,
    hist_gradient_boosting,
    knn,
    lightgbm,
    logistic,
    neural,
    random_forest,
    sklearn_linear,
    svm,
    xgboost,
)
from modalbag.plugins.trainers._classical import inner_folds
from modalbag.plugins.trainers._tabular import load_learner
from modalbag.training.metrics import task_metrics
from tests.plugins.test_tabular_trainers import TAB, _assert_native, fit_arrays, fit_one, regression_data


@pytest.fixture(autouse=True)
def one_thread():
    """scikit-learn fitted directly here runs on one thread, as the learners do on small matrices."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


CLASSICAL = ("svm", "knn", "hist_gradient_boosting", "logistic")
MODULES = {"svm": svm, "knn": knn, "hist_gradient_boosting": hist_gradient_boosting, "logistic": logistic}
MIXED = {"a": (5, "tabular"), "e": (8, "text")}  # a tabular and an embedding modality


def _inputs(learner, data):
    return {m: data[m] for m in learner.spec.modalities}


def _save_and_load_without_unpickling(learner, path, monkeypatch):
    saved = learner.save(path)

    def refuse(*args, **kwargs):
        raise AssertionError("loading unpickled")

    with monkeypatch.context() as patch:
        for name in ("load", "loads", "Unpickler"):
            patch.setattr(pickle, name, refuse)
        again = load_learner(saved)
    _assert_native(saved, json.loads((saved / "learner.json").read_text())["model_files"])
    return again


# --- every trainer: classification and regression, saved and loaded ---------------------------------------


def easy_task(n: int, seed: int):
    """Three classes, each shifting one tabular column by 2 and one embedding column by 1.5."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    a, e = rng.normal(size=(n, 5)), rng.normal(size=(n, 8))
    a[np.arange(n), y] += 2.0
    e[np.arange(n), y + 3] += 1.5
    return {"a": a.astype(np.float32), "e": e.astype(np.float32)}, y


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_classifies_a_multimodal_bag_beyond_the_majority_and_round_trips(trainer, tmp_path, monkeypatch):
    data, y = easy_task(240, seed=0)
    learner = fit_arrays(trainer, {"a": (data["a"], "tabular"), "e": (data["e"], "text")}, y).model
    data, y = easy_task(300, seed=1)
    out = learner.predict_output(_inputs(learner, data))
    assert out.shape == (300, 3) and np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    majority = np.bincount(y).max() / len(y)
    assert task_metrics("classification", y, out)["accuracy"] > majority + 0.3
    weights = learner.describe()["feature_importance"]["modality_weights"]
    assert set(weights) == {"a", "e"} and sum(weights.values()) == pytest.approx(1.0)

    again = _save_and_load_without_unpickling(learner, tmp_path / "learner", monkeypatch)
    assert type(again) is type(learner) and again.describe() == learner.describe()
    np.testing.assert_allclose(again.predict_output(_inputs(learner, data)), out, rtol=0, atol=1e-10)


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_regresses_two_targets_and_round_trips(trainer, tmp_path, monkeypatch):
    learner = fit_arrays(trainer, *regression_data(240, seed=0, targets=2), "regression").model
    data, y = regression_data(300, seed=1, targets=2)
    inputs = {m: a for m, (a, _) in data.items()}
    out = learner.predict_output(inputs)
    assert out.shape == (300, 2) and np.isfinite(out).all()
    assert task_metrics("regression", y[:, :1], out[:, :1])["r2"] > 0.35
    again = _save_and_load_without_unpickling(learner, tmp_path / "learner", monkeypatch)
    np.testing.assert_allclose(again.predict_output(inputs), out, rtol=0, atol=1e-10)


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_multilabel_and_binary_outputs(trainer):
    model, record = fit_one(trainer, "multilabel", 3, n=160)
    data, y = model.synthetic_task.sample(200, random_state=1)
    out = record.model.predict_output(_inputs(record.model, data))
    assert out.shape == (200, 3) and ((out > 0) & (out < 1)).all()
    assert task_metrics("multilabel", y, out)["accuracy"] > 0.6
    model, record = fit_one(trainer, "classification", 2, n=160)
    out = record.model.predict_output(_inputs(record.model, model.synthetic_task.sample(100, random_state=2)[0]))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_raw_images_and_sequences_through_the_reductions_and_missing_modalities(trainer):
    model, record = fit_one(trainer, "classification", 2, n=160,
                            modalities={"scan": ((2, 6, 6), "image"), "ecg": ((8, 3), "sequence")})
    assert record.model.describe()["n_features"] == 2 * (4 + 16) + 3 * 7
    data, y = model.synthetic_task.sample(100, random_state=2)
    assert model.evaluate(data, y)["accuracy"] > 0.5

    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    labels = (x[:, 0] + x[:, 2] > 0).astype(int)
    b = x[:, 2:].copy()
    b[::3] = np.nan  # a third of the samples lack modality b, in training too
    learner = fit_arrays(trainer, {"a": x[:, :2], "b": b}, labels).model
    masks = {"a": np.ones(240, bool), "b": ~np.isnan(b[:, 0])}
    out = learner.predict_output({"a": x[:, :2], "b": np.nan_to_num(b)}, masks)
    assert np.isfinite(out).all() and np.mean(out.argmax(1) == labels) > 0.75


# --- each model predicts what the library fitted ---------------------------------------------------------


def _blobs(n=150, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return rng.normal(size=(n, 4)) + y[:, None] * 0.8, y


@pytest.mark.parametrize("classes", [2, 4])
def test_svm_arrays_reproduce_libsvm_decision_values(classes):
    from sklearn.svm import SVC, SVR

    x, y = _blobs(classes=classes)
    test = np.random.default_rng(1).normal(size=(40, 4))
    est = SVC(gamma=0.3, decision_function_shape="ovo").fit(x, y)
    machine = svm.Machine.from_estimator(est)
    scores = machine.scores(test, 0.3)
    if classes == 2:
        np.testing.assert_allclose(scores[:, 1], est.decision_function(test), rtol=0, atol=1e-10)
    else:
        pairs = est.decision_function(test)  # pair (i, j), i < j, positive for i
        expected = np.zeros((40, classes))
        order = [(i, j) for i in range(classes) for j in range(i + 1, classes)]
        for p, (first, second) in enumerate(order):
            expected[:, first] += pairs[:, p]
            expected[:, second] -= pairs[:, p]
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-10)
    reg = SVR(gamma=0.3).fit(x, x[:, 0])
    np.testing.assert_allclose(svm.Machine.from_estimator(reg, regression=True).decision(test, 0.3),
                               reg.predict(test), rtol=0, atol=1e-10)


def test_platt_scaling_is_the_two_class_case_of_the_calibration():
    rng = np.random.default_rng(0)
    d = rng.normal(size=400)
    labels = (d + rng.normal(scale=0.7, size=400) > 0).astype(int)
    a, b = svm.fit_calibration(np.column_stack([-d, d]), labels, None)
    p = svm._softmax(a * np.column_stack([-d, d]) + b)[:, 1]
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(2 * a * d + b[1]))), atol=1e-12)
    targets = svm.platt_targets(labels, 2)[:, 1]
    n1, n0 = labels.sum(), 400 - labels.sum()
    assert set(np.round(targets, 12)) == {round((n1 + 1) / (n1 + 2), 12), round(1 / (n0 + 2), 12)}
    assert a > 0 and np.isclose(np.mean(p), np.mean(targets), atol=1e-4)  # the fitted sigmoid is unbiased


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_votes_are_scikit_learns_neighbour_probabilities(weights):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    x, y = _blobs()
    test = np.random.default_rng(1).normal(size=(40, 4)) + 0.8
    nothing = np.empty(0, dtype=np.int64)
    model = knn.KNNModel("classification", np.zeros(4), np.ones(4), nothing, x, y, np.ones(len(x)),
                         np.full(3, 1 / 3), 7, weights == "distance", 1.0)
    expected = KNeighborsClassifier(7, weights=weights).fit(x, y).predict_proba(test)
    np.testing.assert_allclose(model.votes(test), expected, rtol=0, atol=1e-10)
    smoothed = model.predict(test)
    np.testing.assert_allclose(smoothed, (7 * expected + 1 / 3) / 8, rtol=0, atol=1e-10)
    assert smoothed.min() >= 1 / 24  # no class at 0, even one no neighbour votes for
    reg = knn.KNNModel("regression", np.zeros(4), np.ones(4), nothing, x, x[:, :1], np.ones(len(x)),
                       np.zeros(1), 7, weights == "distance", 1.0)
    np.testing.assert_allclose(reg.predict(test)[:, 0],
                               KNeighborsRegressor(7, weights=weights).fit(x, x[:, 0]).predict(test), atol=1e-10)


def test_knn_auto_neighbours_and_a_query_on_a_training_row():
    assert [knn.auto_neighbors(n) for n in (4, 100, 240, 10_000)] == [3, 10, 15, 30]
    x, y = _blobs(n=30)
    model = knn.KNNModel("classification", np.zeros(4), np.ones(4), np.empty(0, dtype=np.int64), x, y,
                         np.ones(30), np.full(3, 1 / 3), 5, True, 1.0)
    q = model.votes(x[:3])
    np.testing.assert_array_equal(q, np.eye(3)[y[:3]])  # distance 0: only the row itself votes


@pytest.mark.parametrize("classes", [2, 3])
def test_hist_gradient_boosting_arrays_reproduce_scikit_learn_with_missing_values(classes):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y = _blobs(n=300, classes=classes)
    x[::4, 1] = np.nan
    test = np.random.default_rng(1).normal(size=(60, 4)) + 0.8
    test[::3, 1] = np.nan
    test[::5, 0] = np.nan  # a feature with no missing value in training
    est = HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=0).fit(x, y)
    link = "binary" if classes == 2 else "softmax"
    model = hist_gradient_boosting.TreeModel(link, **hist_gradient_boosting.trees_of([est], [est.n_iter_]),
                                             outputs=np.arange(classes), fixed=np.zeros(classes))
    np.testing.assert_allclose(model.predict(test), est.predict_proba(test), rtol=0, atol=1e-10)
    reg = HistGradientBoostingRegressor(max_iter=30, early_stopping=False, random_state=0).fit(x, x[:, 0] * 2)
    model = hist_gradient_boosting.TreeModel("identity", **hist_gradient_boosting.trees_of([reg], [reg.n_iter_]),
                                             outputs=np.arange(1), fixed=np.zeros(1))
    np.testing.assert_allclose(model.predict(test)[:, 0], reg.predict(test), rtol=0, atol=1e-10)


def test_hist_gradient_boosting_stops_early_and_keeps_the_best_round():
    _, record = fit_one("hist_gradient_boosting", "classification", 2, n=300, n_estimators=300,
                        gbm_learning_rate=0.5, early_stopping_patience=4)
    described = record.model.describe()
    [trained], [kept] = described["rounds_trained"], described["rounds_kept"]
    assert kept < trained < 300 and trained - kept <= 4 + 1
    assert described["feature_importance"]["importance_type"] == "total_gain"


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_linear_model_predicts_what_logistic_regression_cv_does(classes):
    from sklearn.linear_model import LogisticRegressionCV

    x, y = _blobs(classes=classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        lr = LogisticRegressionCV(Cs=np.logspace(-4, 4, 6), cv=inner_folds(x, y, 3, 0),
                                  scoring="neg_log_loss").fit(x, y)
    model = sklearn_linear.LinearModel("binary" if classes == 2 else "softmax", np.zeros(4), np.ones(4),
                                       np.empty(0, dtype=np.int64), lr.coef_, lr.intercept_, lr.classes_,
                                       np.zeros(classes))
    np.testing.assert_allclose(model.predict(x), lr.predict_proba(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("classes", [2, 4])
def test_logistic_path_reaches_scikit_learns_optimum_at_every_strength(classes):
    from sklearn.linear_model import LogisticRegression

    from modalbag.training.logistic_path import fit_path, probabilities

    x, y = _blobs(classes=classes)
    x = x + np.random.default_rng(1).normal(size=x.shape)  # overlapping classes: a finite optimum at every C
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(y))
    grid = np.logspace(-3, 3, 5)
    for c, params in zip(grid, fit_path(x, y, w, grid), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = LogisticRegression(C=c, tol=1e-12, max_iter=10_000).fit(x, y, sample_weight=w)
        np.testing.assert_allclose(probabilities(x, params), reference.predict_proba(x), atol=1e-4)


@pytest.mark.parametrize("rank", [None, 12])
def test_wide_logistic_fits_in_the_row_space_to_the_same_optimum(rank):
    """Columns outnumbering rows: the fit on the rows' span, mapped back, predicts as the full fit
    (rank-deficient rows too, as embeddings of a few latent factors are)."""
    from sklearn.linear_model import LogisticRegression

    from modalbag.plugins.trainers.logistic import row_space

    rng = np.random.default_rng(0)
    n, d = 60, 400
    x = rng.normal(size=(n, d)) if rank is None else rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    y = rng.integers(0, 3, n)
    x[:, :3] += y[:, None]
    basis = row_space(x)
    assert basis.shape == (np.linalg.matrix_rank(x), d)
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-8)
    assert row_space(x[:, :50]) is None  # more rows than columns: nothing to gain
    for c in (0.01, 1.0):
        full = LogisticRegression(C=c, tol=1e-12, max_iter=20_000).fit(x, y)
        small = LogisticRegression(C=c, tol=1e-12, max_iter=20_000).fit(x @ basis.T, y)
        # to L-BFGS's own precision on the full problem (about 1e-6 on these rank-deficient rows)
        np.testing.assert_allclose(small.coef_ @ basis, full.coef_, atol=1e-4)
        np.testing.assert_allclose(small.predict_proba(x @ basis.T), full.predict_proba(x), atol=1e-5)


def test_the_lbfgs_path_stops_past_its_optimum_and_keeps_the_choice(monkeypatch):
    """Strengths past the held-out optimum are not fitted once the loss has risen `PATH_PATIENCE`
    times in a row; the chosen strength is the full path's."""
    from sklearn.linear_model import LogisticRegression

    from modalbag.plugins.trainers import logistic

    x, y = _blobs(classes=4, n=300)
    x = np.hstack([x, np.random.default_rng(3).normal(size=(300, 60))])  # 64 x 4 parameters: L-BFGS
    fits = []
    real_fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, *a, **k: fits.append(self.C) or real_fit(self, *a, **k))
    grid = np.logspace(logistic.LOW, logistic.HIGH, 12)
    stopped = logistic.held_out_log_losses(x[:200], y[:200], None, x[200:], y[200:], grid, 1000)
    fitted = len(fits)
    assert fitted < len(grid)
    monkeypatch.setattr(logistic, "PATH_PATIENCE", len(grid))
    full = logistic.held_out_log_losses(x[:200], y[:200], None, x[200:], y[200:], grid, 1000)
    assert len(fits) == fitted + len(grid)
    assert int(np.argmin(stopped)) == int(np.argmin(full))
    np.testing.assert_allclose(stopped[:fitted], full[:fitted])
    assert np.all(stopped[fitted:] == stopped[fitted - 1])  # the last loss measured


def test_logistic_chooses_its_strength_by_cross_validation():
    _, record = fit_one("logistic", "classification", 3, modalities=MIXED, hpo_trials=2, cross_validation_folds=2)
    described = record.model.describe()
    [c] = described["C"]
    from modalbag.plugins.trainers.logistic import HIGH, LOW, LogisticOptions

    assert c in np.logspace(LOW, HIGH, LogisticOptions().logistic_cs) and described["cross_validated"] is True
    assert any(note.startswith("hyperparameter search skipped") for note in record.notes)
    assert "hyperparameter_search" not in described and described["cross_validation"]["folds"] == 2


def test_inner_folds_never_split_copies_of_a_row():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 3))
    rows = rng.choice(40, 80)  # a bootstrap: repeated rows
    x, y = base[rows], (base[rows, 0] > 0).astype(int)
    folds = inner_folds(x, y, 5, 0)
    assert len(folds) == 5
    for fit_rows, test_rows in folds:
        assert not {tuple(r) for r in x[fit_rows]} & {tuple(r) for r in x[test_rows]}
    assert inner_folds(x[:3], np.array([0, 0, 1]), 5, 0) == []  # one row of class 1: no folds


# --- calibration, search, selection, a missing library --------------------------------------------------------


def test_svm_probabilities_are_calibrated_on_an_easy_task():
    data, y = easy_task(300, seed=5)
    learner = fit_arrays("svm", {"a": (data["a"], "tabular"), "e": (data["e"], "text")}, y).model
    data, y = easy_task(600, seed=7)
    out = learner.predict_output(data)
    accuracy = np.mean(out.argmax(1) == y)
    confidence = out.max(axis=1).mean()
    assert accuracy > 0.8 and abs(confidence - accuracy) < 0.15, (accuracy, confidence)
    assert 0 < out.min() and out.max() < 1  # Platt's targets: never certain
    assert learner.describe()["calibration"].startswith("softmax(a * S + b)")


@pytest.mark.parametrize("trainer", ["svm", "knn", "hist_gradient_boosting"])
def test_hyperparameter_search_over_the_documented_space(trainer):
    _, record = fit_one(trainer, "classification", 2, n=160, hpo_trials=2, cross_validation_folds=2, random_state=4)
    learner = record.model
    search = learner.describe()["hyperparameter_search"]
    assert search["trials"] == 2 and set(search["best_params"]) == set(learner.SEARCH_SPACE)
    assert learner.params | search["best_params"] == learner.params


def _profile(modalities, task_type="classification"):
    specs = {"t1": ModalitySpec("t1", "tabular", (6,)), "t2": ModalitySpec("t2", "tabular", (3,)),
             "txt": ModalitySpec("txt", "text", (32,)), "img": ModalitySpec("img", "image", (1, 4, 4))}
    return BagProfile(tuple(modalities), specs, 200, task_type, 3)


def test_proposals_score_below_the_existing_trainers_so_default_selection_is_unchanged():
    existing = [neural.NeuralLearner, sklearn_linear.LinearLearner, random_forest.RandomForestLearner,
                xgboost.XGBoostLearner, lightgbm.LightGBMLearner, catboost.CatBoostLearner]
    new = [svm.SVMLearner, knn.KNNLearner, hist_gradient_boosting.HistGradientBoostingLearner,
           logistic.LogisticLearner]
    for modalities in (["t1"], ["t1", "t2"], ["txt"], ["t1", "txt"], ["img"], ["t1", "img"]):
        for strategy in ("speed", "balanced", "accuracy"):
            for task_type in ("classification", "regression"):
                profile = _profile(modalities, task_type)
                best = max(p.score for p in (t.propose(profile, strategy) for t in existing) if p is not None)
                for trainer in new:
                    proposal = trainer.propose(profile, strategy)
                    assert proposal.reason and proposal.score < min(best, 1.0), (trainer, modalities, strategy)


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_each_module_registers_one_trainer_with_documented_options(trainer):
    registered = []
    MODULES[trainer].modalbag_register_trainers(
        register=lambda n, factory, *, options=None, summary="": registered.append((n, factory, options, summary)))
    [(name, factory, options, summary)] = registered
    assert name == trainer and summary and factory.trainer == trainer and factory.options_class() is options
    assert callable(factory.propose) and callable(factory.check_available) and callable(factory.load)
    factory.check_available()
    base = {"image_grid", "threads", "top_features"}
    own = [f for f in attrs.fields(options) if f.name not in base]
    assert own and all(len(f.metadata.get("help", "")) > 10 for f in own)


@pytest.mark.parametrize("trainer", CLASSICAL)
def test_search_without_optuna_names_the_extra(trainer, monkeypatch):
    model = create_synthetic_model({"a": (5, "tabular")}, n_samples=80)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=[trainer])
    real = importlib.import_module

    def without_optuna(name, *args, **kwargs):
        if name.split(".")[0] == "optuna":
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    with monkeypatch.context() as patch:  # not installed: the configuration is refused before training
        patch.setitem(sys.modules, "optuna", None)
        with pytest.raises(ConfigError, match=r"pip install modalbag\[hpo\]"):
            model.train_ensemble(**TAB, hpo_trials=2)
    if trainer == "logistic":
        return  # no search space: nothing to import
    # gone by the time the learner trains (another process, another environment): the learner says why
    monkeypatch.setattr(importlib, "import_module", without_optuna)
    with pytest.raises(Exception, match=rf"trainer '{trainer}' needs the optuna library.*pip install modalbag\[hpo\]"):
        model.train_ensemble(**TAB, hpo_trials=2)


def test_models_from_arrays_with_labels_of_any_value():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    labels = np.where(x[:, 0] > 0, "yes", "no")
    for trainer in CLASSICAL:
        model = create_model_from_arrays({"a": x}, labels)
        model.create_ensemble(n_bags=1)
        model.select_base_learners(trainers=[trainer])
        model.train_ensemble(**TAB)
        assert model.learners["bag_000"].ok
        assert set(model.predict({"a": x[:10]})) <= {"yes", "no"}
