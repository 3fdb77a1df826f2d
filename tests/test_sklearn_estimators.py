"""modalbag.sklearn: the ensemble as a scikit-learn estimator, over a DataFrame whose column groups
are the modalities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_estimator

from modalbag import ConfigError, DataError
from modalbag.sklearn import MultiModalClassifier, MultiModalRegressor

FAST = {"n_bags": 2, "trainers": ("logistic",)}
VIEWS = {"mean": "mean *", "error": "* error", "worst": "worst *"}


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


@pytest.mark.parametrize("estimator", [MultiModalClassifier(**FAST), MultiModalRegressor(**FAST)],
                         ids=["classifier", "regressor"])
def test_passes_scikit_learns_estimator_checks(estimator):
    failed = [r["check_name"] for r in check_estimator(estimator, on_fail=None) if r["status"] == "failed"]
    assert failed == []


def test_clone_cross_val_score_grid_search_and_pipeline_work_on_a_dataframe(cancer):
    X, y = cancer
    clf = MultiModalClassifier(modalities=VIEWS, **FAST)
    assert clone(clf).get_params() == clf.get_params()
    scores = cross_val_score(clf, X, y, cv=3)
    assert scores.min() > 0.9
    search = GridSearchCV(clf, {"n_bags": [1, 2]}, cv=2).fit(X, y)
    assert search.best_params_["n_bags"] in (1, 2) and search.best_score_ > 0.9
    pipe = make_pipeline(FunctionTransformer(lambda frame: frame * 1.0), clf).fit(X, y)
    assert pipe.score(X, y) > 0.9


def test_a_group_all_nan_in_a_row_means_that_modality_is_missing(cancer):
    X, y = cancer
    clf = MultiModalClassifier(modalities=VIEWS, **FAST).fit(X, y)
    assert set(clf.model_.dataset.names) == set(VIEWS)
    assert clf.n_features_in_ == 30 and list(clf.feature_names_in_) == list(X.columns)
    only_worst = X.copy()
    only_worst[[c for c in X.columns if not c.startswith("worst ")]] = np.nan
    proba = clf.predict_proba(only_worst)
    assert np.isfinite(proba).all() and (proba.argmax(axis=1) == y.to_numpy()).mean() > 0.85
    details = clf.model_.predict_details(clf._split(clf._validated(only_worst, fitting=False)))
    assert not details.fallback.any()


def test_bad_groups_are_named(cancer):
    X, y = cancer
    with pytest.raises(DataError, match="no column matches 'nothing_\\*'"):
        MultiModalClassifier(modalities={"a": "nothing_*"}, **FAST).fit(X, y)
    with pytest.raises(ConfigError, match="in both modality"):
        MultiModalClassifier(modalities={"a": "mean *", "b": ["mean radius"]}, **FAST).fit(X, y)
    with pytest.raises(ConfigError, match="needs a DataFrame"):
        MultiModalClassifier(modalities={"a": "x*"}, **FAST).fit(X.to_numpy(), y)


def test_non_numeric_columns_are_named_with_their_modality_and_the_fix(cancer):
    X, y = cancer
    frame = X.assign(site=["north", "south"] * (len(X) // 2) + ["north"])
    with pytest.raises(DataError, match=r"'site' \((str|object), in no modality\).*encode them as numbers"):
        MultiModalClassifier(modalities=VIEWS, **FAST).fit(frame, y)
    with pytest.raises(DataError, match=r"'site' \((str|object), modality 'meta'\)"):
        MultiModalClassifier(modalities={**VIEWS, "meta": ["site"]}, **FAST).fit(frame, y)


def test_the_regressor_predicts_values_from_array_column_groups():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = X[:, 0] * 2 - X[:, 4] + rng.normal(scale=0.1, size=200)
    reg = MultiModalRegressor(modalities={"left": [0, 1, 2], "right": [3, 4, 5]}, n_bags=2).fit(X, y)
    assert reg.predict(X).shape == (200,) and reg.score(X, y) > 0.8


def test_the_python_api_takes_a_dataframe_per_modality_and_a_series_of_labels(cancer):
    import modalbag

    X, y = cancer
    views = {name: X[[c for c in X.columns if c.startswith(prefix)]] for name, prefix in
             (("mean", "mean "), ("worst", "worst "))}
    model = modalbag.create_model_from_arrays(views, y)
    model.create_ensemble(n_bags=2, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble()
    assert (model.predict(views) == y.to_numpy()).mean() > 0.9
    with pytest.raises(DataError, match="must be numeric"):
        modalbag.create_model_from_arrays({"mean": views["mean"].assign(kind="x")}, y)
