"""modalbag.data.frames through the Python API: `create_model_from_arrays(df, labels, modalities=...)`
and ``model.predict(df)`` by the column groups recorded at fit, through export and reload."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import modalbag
from modalbag import ConfigError, DataError
from modalbag.data.frames import is_dataframe

pd = pytest.importorskip("pandas")

GROUPS = {"mean": "mean *", "error": "* error", "worst": ("worst *", "tabular")}


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    return data.data, data.target


@pytest.fixture(scope="module")
def trained(cancer):
    X, y = cancer
    frame = X.assign(patient_id=[f"p{i}" for i in range(len(X))])  # a text column in no group is not read
    model = modalbag.create_model_from_arrays(frame, y, modalities=GROUPS)
    model.create_ensemble(n_bags=3, random_state=0)
    model.select_base_learners(trainers=["logistic"], instantiate=False)
    model.train_ensemble()
    return model


def test_column_groups_become_the_modalities(trained, cancer):
    X, _ = cancer
    assert trained.dataset.names == ["mean", "error", "worst"]
    assert trained.dataset.columns["mean"] == [c for c in X.columns if c.startswith("mean ")]
    assert trained.dataset.specs["worst"].shape == (10,) and trained.dataset.specs["worst"].type == "tabular"


def test_predict_reads_the_groups_by_name_in_any_order_and_ignores_other_columns(trained, cancer):
    X, y = cancer
    expected = trained.predict_proba(X)
    shuffled = X[list(X.columns)[::-1]].assign(extra=1.0)
    np.testing.assert_allclose(trained.predict_proba(shuffled), expected)
    assert trained.evaluate(X, y)["accuracy"] > 0.9


def test_a_group_of_nan_rows_means_that_modality_is_missing(trained, cancer):
    X, y = cancer
    only_worst = X.copy()
    only_worst[[c for c in X.columns if not c.startswith("worst ")]] = np.nan
    details = trained.predict_details(only_worst)
    assert not details.fallback.any()
    np.testing.assert_allclose(details.output,
                               trained.predict_details({"worst": only_worst.filter(like="worst ")}).output)
    assert (details.predictions == y.to_numpy()).mean() > 0.85
    nothing = X.copy() * np.nan  # every modality missing: the prior, not an error
    assert trained.predict_details(nothing).fallback.all()


def test_save_and_load_keep_the_column_groups(trained, cancer, tmp_path):
    X, _ = cancer
    trained.export_training_artifacts(tmp_path / "export")
    loaded = modalbag.load_ensemble(tmp_path / "export")
    assert loaded.dataset.columns == trained.dataset.columns
    half = X.copy()
    half.loc[half.index[::2], [c for c in X.columns if c.startswith("mean ")]] = np.nan
    np.testing.assert_allclose(loaded.predict_proba(half), trained.predict_proba(half), atol=1e-6)


def test_predict_names_the_columns_a_frame_lacks(trained, cancer):
    X, _ = cancer
    with pytest.raises(DataError, match=r"lacks 2 columns the model was trained on: 'mean radius', 'worst area'"):
        trained.predict(X.drop(columns=["mean radius", "worst area"]))


def test_predict_names_non_numeric_columns(trained, cancer):
    X, _ = cancer
    with pytest.raises(DataError, match=r"'mean radius' \((str|object), modality 'mean'\).*encode them as numbers"):
        trained.predict(X.assign(**{"mean radius": "big"}))


def test_a_model_trained_on_arrays_asks_for_arrays(cancer):
    X, y = cancer
    model = modalbag.create_model_from_arrays({"a": X.iloc[:, :5].to_numpy(), "b": X.iloc[:, 5:].to_numpy()}, y)
    with pytest.raises(DataError, match="trained on one array per modality"):
        model.modality_data(X)


def test_bad_groups_are_errors_that_name_what_is_wrong(cancer):
    X, y = cancer
    with pytest.raises(DataError, match=r"no column matches 'nothing\*'; the columns are 'mean radius'"):
        modalbag.create_model_from_arrays(X, y, modalities={"a": "nothing*"})
    with pytest.raises(ConfigError, match="'mean radius' is in both modality 'a' and 'b'"):
        modalbag.create_model_from_arrays(X, y, modalities={"a": "mean *", "b": ["mean radius"]})
    with pytest.raises(DataError, match="column 'age' is not in X"):
        modalbag.create_model_from_arrays(X, y, modalities={"a": ["age"]})
    with pytest.raises(ConfigError, match="names a DataFrame's column groups"):
        modalbag.create_model_from_arrays({"a": X.to_numpy()}, y, modalities={"a": "mean *"})


def test_non_numeric_columns_are_named_with_the_fix(cancer):
    X, y = cancer
    frame = X.assign(city=pd.Categorical(["a", "b"] * (len(X) // 2) + ["a"]), note="x")
    with pytest.raises(DataError, match=r"non-numeric columns: 'city' \(category, modality 'meta'\), 'note' "
                                        r"\((str|object), modality 'meta'\); encode them .* or drop them"):
        modalbag.create_model_from_arrays(frame, y, modalities={"mean": "mean *", "meta": ["city", "note"]})


def test_repeated_column_names_in_a_group_are_refused(cancer):
    X, y = cancer
    frame = pd.concat([X[["mean radius"]], X[["mean radius", "mean area"]]], axis=1)
    with pytest.raises(DataError, match="several columns named 'mean radius'"):
        modalbag.create_model_from_arrays(frame, y, modalities={"a": ["mean radius", "mean area"]})


def test_nullable_and_boolean_columns_are_numbers_and_pd_na_is_missing():
    n = 40
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a1": pd.array(rng.integers(0, 5, n), dtype="Int64"), "a2": rng.normal(size=n),
                          "b1": rng.normal(size=n), "b2": rng.random(n) > 0.5})
    frame.loc[3, ["a1", "a2"]] = [pd.NA, np.nan]
    model = modalbag.create_model_from_arrays(frame, np.arange(n) % 2, modalities={"a": "a*", "b": "b*"})
    assert not model.dataset.masks["a"][3] and model.dataset.masks["b"].all()


def test_without_groups_every_column_is_one_modality():
    frame = pd.DataFrame({"x1": [1.0, 2.0, 3.0, 4.0], "x2": [0.0, 1.0, 0.0, 1.0]})
    model = modalbag.create_model_from_arrays(frame, [0, 1, 0, 1])
    assert model.dataset.columns == {"x": ["x1", "x2"]}


def test_dataframes_are_recognised_without_importing_pandas():
    code = textwrap.dedent("""
        import sys
        import modalbag
        from modalbag.data.frames import is_dataframe
        class Table:  # any table with named columns
            columns = ["a"]
            dtypes = ["float64"]
            def __getitem__(self, key): ...
        assert is_dataframe(Table()) and not is_dataframe({"a": [1.0]})
        print("pandas" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "False"
    assert is_dataframe(pd.DataFrame({"a": [1.0]})) and not is_dataframe(np.zeros((2, 2)))
