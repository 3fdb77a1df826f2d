"""The tabular trainer plugins: every task each supports, records, early stopping, class weights,
cross-validation, hyperparameter search, native save/load, selection, and a missing library."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import attrs
import numpy as np
import pytest

from modalbag import (
    ConfigError,
    TrainingConfig,
    available_plugins,
    create_model_from_arrays,
    create_synthetic_model,
    hookimpl,
)
from modalbag.data.bags import split_validation
from modalbag.plugins.trainers import (
    _tabular,
    catboost,
    lightgbm,
    random_forest,
    sklearn_linear,
    xgboost,
)
from modalbag.plugins.trainers._tabular import MissingExtraError, load_learner
from modalbag.training.metrics import task_metrics

#: Fast options: few rounds, one thread (timings stay stable on a busy machine), no neural extras.
TAB = {"enable_denoising": False, "mixed_precision": False, "save_checkpoints": False, "epochs": 3,
       "early_stopping_patience": 5, "n_estimators": 60, "gbm_learning_rate": 0.3, "threads": 1}
GBMS = ("xgboost", "lightgbm", "catboost")
TRAINERS = ("sklearn_linear", "random_forest", *GBMS)
MODULES = {"sklearn_linear": sklearn_linear, "random_forest": random_forest, "xgboost": xgboost,
           "lightgbm": lightgbm, "catboost": catboost}
TWO_TABLES = {"a": (5, "tabular"), "b": (4, "tabular")}
TASKS = {"binary": ("classification", 2), "multiclass": ("classification", 3),
         "regression": ("regression", 1), "multilabel": ("multilabel", 3)}


def fit_one(trainer: str, task_type: str = "classification", n_classes: int = 3, *, n: int = 240,
            modalities=TWO_TABLES, seed: int = 0, noise: float = 0.25, plugins=(), **config):
    """A one-bag model over every modality, learned by ``trainer``; returns (model, record)."""
    model = create_synthetic_model(modalities, n_samples=n, n_classes=n_classes, task_type=task_type,
                                   random_state=seed, noise=noise, plugins=plugins)
    model.create_ensemble(n_bags=1, random_state=seed)
    model.select_base_learners(trainers=[trainer])
    model.train_ensemble(**{**TAB, "task_type": task_type, **config})
    record = model.learners["bag_000"]
    assert record.ok, record.error
    assert record.spec.trainer == trainer
    return model, record


def fit_arrays(trainer: str, data, labels, task_type: str = "classification", **config):
    """A one-bag model over ``data`` learned by ``trainer``; returns its learner."""
    model = create_model_from_arrays(data, labels, task_type=task_type)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=[trainer])
    model.train_ensemble(**{**TAB, "task_type": task_type, **config})
    record = model.learners["bag_000"]
    assert record.ok, record.error
    return record


def regression_data(n: int, seed: int, targets: int = 1):
    """Two tabular modalities and targets that trees and linear models can both learn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 9)).astype(np.float32)
    y = np.column_stack([x[:, 0] + 2 * np.sin(x[:, 5]) + x[:, 1] * (x[:, 6] > 0),
                         x[:, 2] - x[:, 7] + x[:, 3] * x[:, 8]][:targets]) + 0.3 * rng.normal(size=(n, targets))
    return {"a": (x[:, :5], "tabular"), "b": (x[:, 5:], "tabular")}, (y[:, 0] if targets == 1 else y)


# --- every trainer, every task, saved and loaded ------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_learns_task_and_round_trips_its_native_file(trainer, task, tmp_path):
    task_type, n_classes = TASKS[task]
    if task_type == "regression":
        record = fit_arrays(trainer, *regression_data(240, seed=0), "regression")
        data, y = regression_data(300, seed=1)
        data, y = {m: a for m, (a, _) in data.items()}, y[:, None]
    else:
        model, record = fit_one(trainer, task_type, n_classes)
        data, y = model.synthetic_task.sample(300, random_state=1)
        y = model.task.classes.searchsorted(y) if task_type == "classification" else y
    learner = record.model
    inputs = {m: data[m] for m in learner.spec.modalities}
    out = learner.predict_output(inputs)
    width = 1 if task_type == "regression" else n_classes
    assert out.shape == (300, width) and np.isfinite(out).all()
    metrics = task_metrics(task_type, y, out)
    if task_type == "classification":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
        assert metrics["accuracy"] > 1 / n_classes + 0.15, metrics
    elif task_type == "multilabel":
        assert ((out >= 0) & (out <= 1)).all() and metrics["accuracy"] > 0.6, metrics
    else:
        assert metrics["r2"] > 0.5, metrics
    # measured records: per boosting round for the GBMs, one for the others; validators saw them
    records = record.records
    assert records and all(np.isfinite(r.train_loss) and r.val_loss is not None and r.training_time > 0
                           for r in records)
    assert (len(records) > 1) == (trainer in GBMS and not (trainer == "lightgbm" and task == "multilabel"))
    importance = learner.describe()["feature_importance"]
    assert set(importance["modality_weights"]) == {"a", "b"}
    assert sum(importance["modality_weights"].values()) == pytest.approx(1.0)
    assert importance["top_features"] and all(name[0] in "ab" for name in importance["top_features"])

    saved = learner.save(tmp_path / "learner")
    again = load_learner(saved)
    assert type(again) is type(learner) and again.spec == learner.spec
    np.testing.assert_array_equal(again.predict_output(inputs), out)
    assert again.describe() == learner.describe()
    _assert_native(saved, json.loads((saved / "learner.json").read_text())["model_files"])


def _assert_native(directory, files):
    """Each library's own format, never a pickle."""
    for name in files:
        path = directory / name
        head = path.read_bytes()[:2]
        assert head != b"\x80\x04" and head[:1] != b"\x80", f"{name} is a pickle"
        if name.endswith(".json"):
            assert "learner" in json.loads(path.read_text())  # XGBoost's JSON model
        elif name.endswith(".txt"):
            assert path.read_text().startswith("tree")  # LightGBM's text model
        elif name.endswith(".cbm"):
            assert path.read_bytes()[:4] == b"CBM1"
        elif name.endswith(".skops"):
            assert "schema.json" in zipfile.ZipFile(path).namelist()
        else:
            assert np.load(path, allow_pickle=False).files


@pytest.mark.parametrize("trainer", TRAINERS)
def test_several_regression_targets(trainer, tmp_path):
    learner = fit_arrays(trainer, *regression_data(240, seed=0, targets=2), "regression").model
    data, y = regression_data(300, seed=1, targets=2)
    inputs = {m: a for m, (a, _) in data.items()}
    out = learner.predict_output(inputs)
    assert out.shape == (300, 2)
    assert task_metrics("regression", y[:, :1], out[:, :1])["r2"] > 0.5
    assert task_metrics("regression", y[:, 1:], out[:, 1:])["r2"] > 0.2
    np.testing.assert_array_equal(load_learner(learner.save(tmp_path / "m")).predict_output(inputs), out)


def test_raw_images_and_sequences_are_reduced_for_trees():
    model, record = fit_one("lightgbm", modalities={"scan": ((2, 6, 6), "image"), "ecg": ((8, 3), "sequence")})
    described = record.model.describe()
    assert described["n_features"] == 2 * (4 + 16) + 3 * 7
    assert "per channel" in described["features"]["scan"] and "slope" in described["features"]["ecg"]
    assert set(described["feature_importance"]["modality_weights"]) == {"scan", "ecg"}
    data, y = model.synthetic_task.sample(200, random_state=2)
    assert model.evaluate(data, y)["accuracy"] > 0.45


def test_bag_with_partly_missing_modality_trains_on_nan_and_predicts_with_masks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + x[:, 2] > 0).astype(int)
    b = x[:, 2:].copy()
    b[::3] = np.nan  # a third of the samples lack modality b
    model = create_model_from_arrays({"a": x[:, :2], "b": b}, y)
    model.create_ensemble(n_bags=1)
    model.select_base_learners(trainers=["xgboost"])
    model.train_ensemble(**TAB)
    learner = model.learners["bag_000"].model
    masks = {"a": np.ones(300, bool), "b": ~np.isnan(b[:, 0])}
    out = learner.predict_output({"a": x[:, :2], "b": np.nan_to_num(b)}, masks)
    assert np.isfinite(out).all()
    accuracy = np.mean(out.argmax(1) == y)
    assert accuracy > 0.8


# --- boosting rounds, early stopping, validators --------------------------------------------------------


@pytest.mark.parametrize("trainer", GBMS)
def test_gbm_stops_early_on_validation_loss_and_keeps_the_best_round(trainer):
    _, record = fit_one(trainer, "classification", 2, n=300, n_estimators=400, gbm_learning_rate=0.5,
                        early_stopping_patience=4)
    val = [r.val_loss for r in record.records]
    assert len(val) < 400
    best = int(np.argmin(val)) + 1
    assert len(val) - best in (4, 5)  # stopped `patience` rounds after the best one
    kept = record.model.describe()["rounds_kept"]
    assert (kept[0] if isinstance(kept, list) else kept) == best
    assert [r.epoch for r in record.records] == list(range(1, len(val) + 1))
    assert all(r.learning_rate == 0.5 and r.samples_per_second > 0 for r in record.records)


@pytest.mark.parametrize("trainer", GBMS)
def test_a_validator_stops_a_gbm_between_rounds(trainer):
    class StopAtSeven:
        @hookimpl
        def modalbag_epoch_end(self, run, fit, record):
            if record.epoch == 7:
                fit.control.stop("seven is enough")

    _, record = fit_one(trainer, plugins=[StopAtSeven()], n_estimators=100, early_stopping_patience=0)
    assert len(record.records) == 7
    assert "stopped after boosting round 7: seven is enough" in record.notes


@pytest.mark.parametrize("trainer", TRAINERS)
def test_class_weights_shift_probability_towards_the_weighted_class(trainer):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(scale=1.5, size=300) > 1.2).astype(int)  # about 20% positives
    means = []
    for weights in (None, [1.0, 6.0]):
        model = create_model_from_arrays({"a": x}, y)
        model.create_ensemble(n_bags=1)
        model.select_base_learners(trainers=[trainer])
        model.train_ensemble(**TAB, class_weights=weights)
        means.append(model.learners["bag_000"].model.predict_output({"a": x})[:, 1].mean())
    assert means[1] > means[0] + 0.05, means


# --- cross-validation and search -------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["sklearn_linear", "xgboost"])
def test_cross_validation_scores_are_reported(trainer):
    _, record = fit_one(trainer, cross_validation_folds=3)
    cv = record.model.describe()["cross_validation"]
    assert cv["splitter"] == "StratifiedKFold" and cv["folds"] == 3 and len(cv["scores"]) == 3
    assert cv["mean"]["accuracy"] == pytest.approx(np.mean([s["accuracy"] for s in cv["scores"]]))
    assert 0.4 < cv["mean"]["accuracy"] <= 1.0 and cv["std"]["loss"] >= 0
    assert any(note.startswith("3-fold cross-validation (StratifiedKFold)") for note in record.notes)
    assert record.validation["cv_accuracy_mean"] == cv["mean"]["accuracy"]  # in the learner's summary too
    assert record.validation["cv_loss_std"] == cv["std"]["loss"]


def test_engine_holds_out_the_latest_rows_with_validation_strategy_time_series():
    model, record = fit_one("sklearn_linear", validation_strategy="time_series")
    bag = model.bags[0]
    targets = model.task.classes.searchsorted(model.dataset.labels)

    def metrics_on(rows):
        out = record.model.predict_output({m: model.dataset.arrays[m][rows] for m in record.spec.modalities})
        return task_metrics("classification", targets[rows], out)

    train, val = split_validation(bag, 0.2, bag.seed, "time_series")
    assert train.max() < val.min()
    assert record.validation == metrics_on(val)  # the engine validated on the latest rows
    assert record.validation != metrics_on(split_validation(bag, 0.2, bag.seed)[1])


def test_walk_forward_validation_uses_forward_chaining_folds():
    _, record = fit_one("lightgbm", "regression", validation_strategy="time_series", walk_forward_validation=True)
    cv = record.model.describe()["cross_validation"]
    assert cv["splitter"] == "TimeSeriesSplit" and cv["folds"] == 5


@pytest.mark.parametrize("trainer", ["lightgbm", "sklearn_linear"])
def test_hyperparameter_search_is_reproducible_with_the_seed(trainer):
    runs = []
    for _ in range(2):
        model, record = fit_one(trainer, hpo_trials=3, cross_validation_folds=2, random_state=4)
        runs.append((record.model, model))
    (first, model), (second, _) = runs
    search = first.describe()["hyperparameter_search"]
    assert search["library"] == "optuna" and search["trials"] == 3
    assert set(search["best_params"]) == set(first.SEARCH_SPACE)
    assert first.params | search["best_params"] == first.params  # the final model uses the best ones
    assert search == {**second.describe()["hyperparameter_search"], "seconds": search["seconds"]}
    data, _ = model.synthetic_task.sample(50, random_state=3)
    np.testing.assert_array_equal(first.predict_output(data), second.predict_output(data))
    assert first.describe()["cross_validation"]["folds"] == 2


def test_hyperparameter_search_stops_at_its_time_budget():
    _, record = fit_one("sklearn_linear", hpo_time_budget=0.3)
    search = record.model.describe()["hyperparameter_search"]
    assert search["trials"] >= 1 and search["seconds"] < 3.0


def test_search_without_optuna_fails_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r"pip install modalbag\[hpo\]"):
        TrainingConfig.from_dict({"hpo_trials": 5})


# --- selection, registration, a missing library ------------------------------------------------------------


def test_each_strategy_sets_a_portfolio_ordered_by_the_trainers_proposals():
    model = create_synthetic_model({"meta": (6, "tabular"), "stats": (3, "tabular"), "text": (8, "text"),
                                    "scan": ((1, 4, 4), "image"), "ecg": ((5, 2), "sequence")}, n_samples=80)
    model.create_ensemble(n_bags=31, dropout_strategy="exhaustive")
    candidates = {}
    for strategy in ("speed", "balanced", "accuracy"):
        specs = model.select_base_learners(optimization_strategy=strategy, instantiate=False).values()
        candidates[strategy] = {s.modalities: s.candidates for s in specs}
        for s in specs:  # the spec's trainer is the candidate ranked first until measurement decides
            assert s.trainer == s.candidates[0] and s.strategy == strategy
    assert set(candidates["speed"][("meta", "stats")]) == {"logistic", "hist_gradient_boosting"}
    assert {"xgboost", "lightgbm", "catboost", "random_forest", "svm", "knn", "logistic"} <= \
        set(candidates["accuracy"][("meta", "stats")])
    assert "neural" not in candidates["balanced"][("meta", "text")]  # 80 rows: the network is not forced
    for strategy in candidates:  # raw images and sequences: the network is always measured
        assert "neural" in candidates[strategy][("scan",)] and "neural" in candidates[strategy][("ecg",)]


@pytest.mark.parametrize("name", TRAINERS)
def test_each_module_registers_one_trainer_through_modalbag_register_trainers(name):
    registered = []
    MODULES[name].modalbag_register_trainers(
        register=lambda n, factory, *, options=None, summary="": registered.append((n, factory, options, summary)))
    [(registered_name, factory, options, summary)] = registered
    assert registered_name == name and summary
    assert factory.trainer == name and factory.options_class() is options
    assert callable(factory.propose) and callable(factory.check_available) and callable(factory.load)


def test_listing_and_proposing_import_no_library():
    code = ("import sys\nfrom modalbag import Catalog\nfrom modalbag.kernel.modalities import ModalitySpec\n"
            "from modalbag.kernel.proposals import BagProfile\nc = Catalog()\n"
            "names = [r.name for r in c.available('trainer')]\n"
            "profile = BagProfile(('t',), {'t': ModalitySpec('t', 'tabular', (3,))}, 10, 'classification', 2)\n"
            f"for n in {list(TRAINERS)}:\n    c.get('trainer', n).factory.propose(profile, 'speed')\n"
            "print(sorted(names), sorted({'xgboost', 'lightgbm', 'catboost', 'optuna', 'skops'}"
            " & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    classical = ["svm", "knn", "hist_gradient_boosting", "logistic"]
    assert out.strip() == f"{sorted([*TRAINERS, *classical, 'neural'])} []"


@pytest.mark.parametrize("trainer", GBMS)
def test_missing_library_lists_and_fails_before_training_with_the_install(trainer, monkeypatch):
    monkeypatch.setitem(sys.modules, trainer, None)  # import fails, find_spec finds nothing
    assert trainer in [p.name for p in available_plugins("trainer")]
    model = create_synthetic_model(TWO_TABLES, n_samples=60)
    model.create_ensemble(n_bags=3)
    automatic = model.select_base_learners(instantiate=False)
    assert trainer not in {s.trainer for s in automatic.values()}
    with pytest.raises(MissingExtraError, match=rf"pip install modalbag\[{trainer}\]$"):
        model.select_base_learners(trainers=[trainer])
    assert model.learners == {}
    with pytest.raises(MissingExtraError, match=rf"trainer '{trainer}' needs the {trainer} library"):
        MODULES[trainer].__dict__[type_name(trainer)].check_available()


def type_name(trainer: str) -> str:
    return {"xgboost": "XGBoostLearner", "lightgbm": "LightGBMLearner", "catboost": "CatBoostLearner"}[trainer]


def test_library_check_does_not_import(monkeypatch):
    monkeypatch.delitem(sys.modules, "catboost", raising=False)
    assert _tabular.library_available("catboost") and "catboost" not in sys.modules
    assert not _tabular.library_available("no_such_library_for_modalbag")


# --- end to end -----------------------------------------------------------------------------------------------


def test_mixed_ensemble_of_neural_and_gbm_learners_predicts_with_a_modality_missing():
    model = create_synthetic_model({"text": (12, "text"), "meta": (6, "tabular"), "stats": (4, "tabular")},
                                   n_samples=400, n_classes=3, random_state=2)
    model.create_ensemble(n_bags=5, dropout_strategy="adaptive", random_state=2)
    model.select_base_learners(trainers=["neural", "xgboost"], instantiate=False)
    # the trainer each bag's proposals rank first, not measured: this test needs both kinds of learner
    model.learner_specs = [attrs.evolve(spec, candidates=()) for spec in model.learner_specs]
    trained = model.train_ensemble(**{**TAB, "epochs": 4, "batch_size": 64, "n_estimators": 60})
    trainers = {r.spec.trainer for r in trained.values()}
    assert trainers == {"neural", "xgboost"}
    data, y = model.synthetic_task.sample(300, random_state=5)
    full = model.evaluate(data, y)
    assert full["accuracy"] > 0.5 and full["n_fallback"] == 0
    without_text = {k: v for k, v in data.items() if k != "text"}
    proba = model.predict_proba(without_text)
    assert proba.shape == (300, 3) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    details = model.predict_details(without_text)
    assert not details.fallback.any() and (details.n_learners > 0).all()
    assert model.evaluate(without_text, y)["accuracy"] > 1 / 3 + 0.1
    summary = model.get_training_summary()
    assert "trainer.xgboost" in summary["active_plugins"] and summary["failed"] == 0
    gbm = next(r for r in trained.values() if r.spec.trainer == "xgboost")
    assert summary["epochs_trained"][gbm.learner_id] == len(gbm.records) > 1


def test_library_version_and_layout_are_recorded_beside_the_model(tmp_path):
    _, record = fit_one("catboost", n_estimators=20)
    meta = json.loads((record.model.save(tmp_path / "cb") / "learner.json").read_text())
    assert meta["format"] == "modalbag.tabular" and meta["trainer"] == "catboost"
    assert meta["library_version"] == __import__("catboost").__version__
    assert [b["modality"] for b in meta["layout"]] == ["a", "b"]
    with pytest.raises(ValueError, match="'catboost' learner, not 'xgboost'"):
        xgboost.XGBoostLearner.load(tmp_path / "cb")
    with pytest.raises(FileNotFoundError, match="no learner.json"):
        load_learner(tmp_path)


def test_the_linear_trainer_learns_from_features_of_huge_magnitude():
    """Standardisation in float32 overflowed at 1e20 (variance inf) and the model predicted a constant."""
    import modalbag

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    x = (rng.normal(size=(300, 4)) + 2.0 * y[:, None]) * 1e20
    model = modalbag.MultiModalEnsembleModel(modalbag.MultimodalDataset.from_arrays({"big": x}, labels=y))
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["sklearn_linear"], instantiate=False)
    model.train_ensemble(epochs=1)
    proba = model.predict_proba({"big": x})
    assert (proba.argmax(axis=1) == y).mean() > 0.8


def test_the_forest_is_a_candidate_without_skops(monkeypatch):
    """A core install trained random forests, then could not store them; they are now plain arrays."""
    from modalbag.plugins.trainers.random_forest import RandomForestLearner

    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    RandomForestLearner.check_available()  # raises MissingExtraError when a candidate cannot run


@pytest.mark.parametrize("task_type", ["classification", "multilabel", "regression"])
def test_forest_arrays_predict_what_scikit_learn_predicts_with_nan(task_type):
    """The saved arrays send NaN to the side scikit-learn learned, on rows the fit-time check never saw."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from modalbag.plugins.trainers._trees import concatenate
    from modalbag.plugins.trainers.random_forest import ForestModel, RandomForestLearner, _tree_nodes

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    x[rng.random(x.shape) < 0.2] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.isnan(x[:, 1])
    y = {"classification": (signal > 0.3).astype(np.int64) + (signal > 1.0),
         "multilabel": np.stack([signal > 0.3, np.isnan(x[:, 2])], axis=1).astype(np.int64),
         "regression": np.stack([signal, np.nan_to_num(x[:, 2])], axis=1)}[task_type]
    learner = object.__new__(RandomForestLearner)  # only its output mapping is used
    learner.task_type, learner.n_outputs = task_type, 4 if task_type == "classification" else 2
    make = RandomForestRegressor if task_type == "regression" else RandomForestClassifier
    forest = make(n_estimators=7, random_state=0).fit(x[:200], y[:200])
    model = ForestModel(concatenate([_tree_nodes(t.tree_) for t in forest.estimators_]),
                        np.concatenate([learner._node_outputs(forest, t.tree_) for t in forest.estimators_]),
                        forest.feature_importances_)
    query = x[200:]
    assert np.isnan(query).any()
    np.testing.assert_allclose(model.predict(query), learner._sklearn_outputs(forest, query), rtol=0, atol=1e-12)
    if task_type == "classification":
        assert np.allclose(model.predict(query)[:, 3], 0)  # a class the rows lack keeps its column at 0


# -- the epochs budget bounds boosting rounds ------------------------------------------------------

ROUNDS_KEY = {"xgboost": "n_estimators", "lightgbm": "n_estimators", "catboost": "iterations",
              "hist_gradient_boosting": "max_iter"}


@pytest.mark.parametrize("trainer", [*GBMS, "hist_gradient_boosting"])
def test_a_small_epochs_budget_bounds_the_strategys_boosting_rounds(trainer):
    """The medical example's quick look (--set training.epochs=5) trained CatBoost's 1,500 accuracy-strategy
    rounds per fold: rounds chosen by the strategy are at most epochs x ROUNDS_PER_EPOCH."""
    budget = {**TAB, "n_estimators": None, "epochs": 2, "early_stopping_patience": 0}
    _, record = fit_one(trainer, n=160, **budget)
    assert record.model.params[ROUNDS_KEY[trainer]] == 2 * _tabular.ROUNDS_PER_EPOCH
    assert any(n.startswith(f"boosting rounds capped at {2 * _tabular.ROUNDS_PER_EPOCH} (epochs=2") for n in record.notes)
    _, chosen = fit_one(trainer, n=160, **{**budget, "n_estimators": 40})  # the user's rounds are used as given
    assert chosen.model.params[ROUNDS_KEY[trainer]] == 40
    assert not any(n.startswith("boosting rounds capped") for n in chosen.notes)


def test_the_default_epochs_bound_no_strategys_rounds():
    from modalbag.plugins.trainers import hist_gradient_boosting

    default_epochs = TrainingConfig().epochs
    for module in (xgboost, lightgbm, catboost, hist_gradient_boosting):
        for strategy, arch in module.ARCHITECTURES.items():
            assert _tabular.budget_rounds(None, arch["n_estimators"], default_epochs) == (arch["n_estimators"], None), \
                (module.__name__, strategy)
    assert _tabular.budget_rounds(None, 1500, 5)[0] == 5 * _tabular.ROUNDS_PER_EPOCH
    assert _tabular.budget_rounds(1500, 1500, 5) == (1500, None)
