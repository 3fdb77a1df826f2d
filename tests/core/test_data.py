"""modalbag.data.dataset: every malformed input is a DataError that names the modality and the fix;
missing modalities, shapes, types and labels are normalised the documented way."""

from __future__ import annotations

import re

import numpy as np
import pytest

import modalbag
from modalbag.data.dataset import MultimodalDataset, encode_labels, prediction_inputs
from modalbag.errors import DataError

N = 6


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _vectors(n: int = N, d: int = 3, seed: int = 0) -> np.ndarray:
    return _rng(seed).normal(size=(n, d)).astype(np.float32)


def _labels(n: int = N) -> np.ndarray:
    return np.arange(n) % 2


def _from_arrays(data, labels=None, **kw):
    return MultimodalDataset.from_arrays(data, labels, **kw)


def _create_model(data, labels=None, **kw):
    return modalbag.create_model_from_arrays(data, labels, **kw)


# Data errors are the same whichever entry point the user takes.
BUILDERS = pytest.mark.parametrize("build", [_from_arrays, _create_model], ids=["from_arrays", "create_model"])


# --- modality errors -----------------------------------------------------------------------------


@BUILDERS
def test_mismatched_sample_counts_lists_every_count(build):
    with pytest.raises(DataError, match=r"different sample counts") as info:
        build({"text": _vectors(10), "image": _vectors(9)})
    msg = str(info.value)
    assert "'text': 10" in msg and "'image': 9" in msg
    assert "NaN rows" in msg  # the fix: one row per sample, NaN rows where a sample lacks it


@BUILDERS
@pytest.mark.parametrize("shape", [(0, 4), (5, 0)], ids=["no-rows", "no-columns"])
def test_empty_modality_is_named(build, shape):
    with pytest.raises(DataError, match=r"modality 'audio' is empty") as info:
        build({"text": _vectors(5), "audio": np.zeros(shape, dtype=np.float32)})
    assert str(shape) in str(info.value)


@BUILDERS
@pytest.mark.parametrize("value", [
    np.array([["a", "b"], ["c", "d"]]),
    np.array([[1.0, "x"], [2.0, None]], dtype=object),
], ids=["strings", "object"])
def test_non_numeric_dtype_names_modality_and_fix(build, value):
    with pytest.raises(DataError, match=r"modality 'notes' must be numeric.*encode it first.*embedding"):
        build({"notes": value})


@BUILDERS
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_values_name_modality_row_and_fix(build, bad):
    x = _vectors()
    x[4, 1] = bad
    with pytest.raises(DataError, match=r"modality 'tab' has infinite values in 1 rows \(first: row 4\).*clip or replace"):
        build({"tab": x})


@BUILDERS
def test_partly_nan_rows_name_first_bad_row_and_fix(build):
    x = _vectors()
    x[3, 0] = np.nan
    x[5, 2] = np.nan
    x[1, :] = np.nan  # an all-NaN row is fine (missing), not reported
    with pytest.raises(DataError) as info:
        build({"tab": x})
    msg = str(info.value)
    assert "modality 'tab'" in msg
    assert "2 rows with some but not all values NaN" in msg
    assert "first: row 3" in msg
    assert "impute" in msg and "whole row to NaN" in msg


@BUILDERS
def test_unknown_modality_type_suggests_close_match(build):
    with pytest.raises(DataError, match=r"modality 'words' has unknown type 'txt'; did you mean 'text'\?") as info:
        build({"words": (_vectors(), "txt")})
    for kind in modalbag.kernel.modalities.MODALITY_TYPES:
        assert kind in str(info.value)  # lists the valid types


@BUILDERS
def test_wrong_ndim_for_type(build):
    with pytest.raises(DataError, match=re.escape("modality 'cube' of type 'tabular' must have shape "
                                                  "(n, features), got (6, 2, 3)")):
        build({"cube": (np.zeros((N, 2, 3), dtype=np.float32), "tabular")})


@BUILDERS
def test_sequence_needs_three_dimensions(build):
    with pytest.raises(DataError, match=r"modality 'series' of type 'sequence' must have shape \(n, T, features\)"):
        build({"series": (_vectors(), "sequence")})


@BUILDERS
def test_labels_of_wrong_length(build):
    with pytest.raises(DataError, match=r"labels have 5 rows but the modalities have 6 samples"):
        build({"tab": _vectors()}, np.arange(5) % 2)


def test_mask_for_unknown_modality_and_mask_of_wrong_length():
    with pytest.raises(DataError, match=r"masks given for unknown modalities: \['imgae'\]"):
        _from_arrays({"image": _vectors()}, masks={"imgae": np.ones(N, bool)})
    with pytest.raises(DataError, match=r"mask for modality 'image' has 4 rows, data has 6"):
        _from_arrays({"image": _vectors()}, masks={"image": np.ones(4, bool)})


@pytest.mark.parametrize("data", [{}, [("a", np.zeros((3, 2)))]], ids=["empty", "not-a-mapping"])
def test_modalities_must_be_a_non_empty_mapping(data):
    with pytest.raises(DataError, match=r"non-empty mapping"):
        _from_arrays(data)


# --- label errors --------------------------------------------------------------------------------


def test_labels_out_of_range_for_num_classes():
    y = np.array([0, 1, 2, 3, 1, 3])
    with pytest.raises(DataError, match=re.escape("num_classes=3 needs labels in 0..2, found [3]")):
        encode_labels(y, "classification", num_classes=3)


def test_negative_integer_labels_out_of_range():
    with pytest.raises(DataError, match=re.escape("found [-1]")):
        encode_labels(np.array([0, -1, 1]), "classification", num_classes=2)


def test_non_integer_float_labels_for_classification_suggest_regression():
    with pytest.raises(DataError, match=r"non-integer floats; did you mean task_type='regression'\?"):
        _create_model({"tab": _vectors()}, np.array([0.0, 1.5, 1.0, 0.0, 1.0, 0.2]))
    with pytest.raises(DataError, match=r"non-integer floats"):
        encode_labels(np.array([0.0, 0.5]), "classification")


def test_nan_classification_labels():
    with pytest.raises(DataError, match=r"labels contain NaN or infinite values; drop those samples"):
        encode_labels(np.array([0.0, np.nan, 1.0]), "classification")


def test_nan_regression_labels():
    y = np.linspace(0, 1, N)
    y[2] = np.nan
    with pytest.raises(DataError, match=r"regression labels contain NaN or infinite values; drop those samples"):
        _create_model({"tab": _vectors()}, y, task_type="regression")


def test_multilabel_labels_must_be_zero_one():
    y = np.zeros((N, 3), dtype=np.int64)
    y[1, 2] = 2
    with pytest.raises(DataError, match=r"multilabel labels must contain only 0 and 1"):
        _create_model({"tab": _vectors()}, y, task_type="multilabel")
    with pytest.raises(DataError, match=r"multilabel labels must be a 0/1 matrix \(n, labels\)"):
        encode_labels(np.zeros(N), "multilabel")


def test_single_class_is_rejected():
    with pytest.raises(DataError, match=r"at least 2 classes"):
        encode_labels(np.array([4, 4, 4]), "classification")


# --- happy paths ---------------------------------------------------------------------------------


def test_all_nan_rows_become_missing_and_zero():
    x = _vectors()
    original = x.copy()
    x[2] = np.nan
    x[5] = np.nan
    ds = _from_arrays({"tab": x, "other": _vectors(seed=1)})
    np.testing.assert_array_equal(ds.masks["tab"], [True, True, False, True, True, False])
    assert ds.masks["other"].all()
    np.testing.assert_array_equal(ds.arrays["tab"][[2, 5]], 0.0)
    np.testing.assert_array_equal(ds.arrays["tab"][[0, 1, 3, 4]], original[[0, 1, 3, 4]])
    assert not np.isnan(ds.arrays["tab"]).any()
    assert ds.arrays["tab"].dtype == np.float32
    np.testing.assert_array_equal(ds.presence()[:, 0], ds.masks["tab"])


def test_all_nan_image_samples_become_missing():
    img = _rng().normal(size=(4, 3, 2, 2)).astype(np.float32)
    img[1] = np.nan
    ds = _from_arrays({"img": img})
    np.testing.assert_array_equal(ds.masks["img"], [True, False, True, True])
    np.testing.assert_array_equal(ds.arrays["img"][1], 0.0)


def test_explicit_mask_combines_with_nan_rows():
    x = _vectors()
    x[2] = np.nan
    mask = np.array([1, 1, 1, 1, 0, 1], dtype=bool)
    ds = _from_arrays({"tab": x}, masks={"tab": mask})
    np.testing.assert_array_equal(ds.masks["tab"], [True, True, False, True, False, True])
    np.testing.assert_array_equal(ds.arrays["tab"][[2, 4]], 0.0)  # masked-out data never reaches a learner
    assert (ds.arrays["tab"][[0, 1, 3, 5]] != 0).all()


def test_rows_masked_out_explicitly_are_not_value_checked():
    x = _vectors()
    x[2, 0] = np.nan  # garbage in a row the mask marks missing
    ds = _from_arrays({"tab": x}, masks={"tab": np.arange(N) != 2})
    assert not ds.masks["tab"][2]
    np.testing.assert_array_equal(ds.arrays["tab"][2], 0.0)


def test_one_dimensional_array_becomes_a_column():
    ds = _from_arrays({"age": np.arange(N, dtype=np.int64)})
    assert ds.arrays["age"].shape == (N, 1)
    assert ds.specs["age"].shape == (1,)
    assert ds.specs["age"].type == "tabular"
    np.testing.assert_array_equal(ds.arrays["age"][:, 0], np.arange(N))


def test_types_are_inferred_from_ndim_or_taken_from_the_tuple():
    ds = _from_arrays({
        "img": np.zeros((N, 3, 4, 5)),
        "seq": np.ones((N, 7, 2)),
        "tab": _vectors(),
        "emb": (_vectors(d=8), "text"),
        "feat": (_vectors(d=5), "image"),  # pooled CNN features: 2-D image is allowed
    })
    assert {n: s.type for n, s in ds.specs.items()} == {
        "img": "image", "seq": "sequence", "tab": "tabular", "emb": "text", "feat": "image"}
    assert ds.specs["img"].shape == (3, 4, 5)
    assert ds.specs["seq"].shape == (7, 2)
    assert ds.specs["emb"].shape == (8,)
    assert ds.names == ["img", "seq", "tab", "emb", "feat"]


def test_string_labels_are_encoded_with_sorted_classes():
    y = np.array(["dog", "cat", "ant", "dog", "cat"])
    encoded, classes = encode_labels(y, "classification")
    assert list(classes) == ["ant", "cat", "dog"]
    np.testing.assert_array_equal(encoded, [2, 1, 0, 2, 1])
    np.testing.assert_array_equal(classes[encoded], y)
    assert encoded.dtype == np.int64


def test_integer_labels_are_reencoded_to_contiguous_range():
    encoded, classes = encode_labels(np.array([3, 7, 7, 3]), "classification")
    np.testing.assert_array_equal(encoded, [0, 1, 1, 0])
    np.testing.assert_array_equal(classes, [3, 7])


def test_contiguous_integer_and_integral_float_labels_are_kept():
    encoded, classes = encode_labels(np.array([2, 0, 1, 1]), "classification")
    np.testing.assert_array_equal(encoded, [2, 0, 1, 1])
    np.testing.assert_array_equal(classes, [0, 1, 2])
    encoded, classes = encode_labels(np.array([1.0, 0.0, 2.0]), "classification", num_classes=4)
    np.testing.assert_array_equal(encoded, [1, 0, 2])
    np.testing.assert_array_equal(classes, np.arange(4))


def test_regression_and_multilabel_targets():
    y, classes = encode_labels(np.array([0.5, 1.5, -2.0]), "regression")
    assert classes is None and y.shape == (3, 1) and y.dtype == np.float32
    y, classes = encode_labels(np.array([[0, 1], [1, 1], [0, 0]]), "multilabel")
    assert y.dtype == np.float32 and y.shape == (3, 2)
    np.testing.assert_array_equal(classes, [0, 1])


def test_create_model_from_arrays_accepts_valid_data():
    model = _create_model({"text": (_vectors(d=4), "text"), "tab": _vectors()}, _labels())
    assert model.dataset.n_samples == N
    assert model.dataset.specs["text"].type == "text"


# --- prediction_inputs ---------------------------------------------------------------------------


@pytest.fixture
def trained_specs():
    ds = _from_arrays({
        "text": (_vectors(d=8), "text"),
        "image": _rng().normal(size=(N, 3, 4, 4)),
        "tab": _vectors(d=2),
    })
    return ds.specs


def test_prediction_absent_modality_becomes_all_missing(trained_specs):
    new = _rng(5).normal(size=(4, 8))
    ds = prediction_inputs({"text": new}, trained_specs)
    assert ds.names == ["text", "image", "tab"]  # training order
    assert ds.masks["text"].all()
    np.testing.assert_allclose(ds.arrays["text"], new.astype(np.float32))
    for name in ("image", "tab"):
        assert not ds.masks[name].any()
        assert ds.arrays[name].shape == (4, *trained_specs[name].shape)
        np.testing.assert_array_equal(ds.arrays[name], 0.0)
    assert ds.specs == dict(trained_specs)


def test_prediction_nan_rows_are_missing(trained_specs):
    img = _rng().normal(size=(3, 3, 4, 4))
    img[0] = np.nan
    ds = prediction_inputs({"image": img, "tab": np.ones((3, 2))}, trained_specs)
    np.testing.assert_array_equal(ds.masks["image"], [False, True, True])
    assert ds.specs["image"].type == "image"


def test_prediction_unknown_modality_suggests_close_match(trained_specs):
    with pytest.raises(DataError, match=r"unknown modality 'imgae'; did you mean 'image'\?") as info:
        prediction_inputs({"imgae": np.zeros((2, 3, 4, 4))}, trained_specs)
    assert "text, image, tab" in str(info.value)


def test_prediction_wrong_per_sample_shape_names_both_shapes(trained_specs):
    with pytest.raises(DataError, match=re.escape("modality 'text' has per-sample shape (7,), "
                                                  "but the ensemble was trained on (8,)")):
        prediction_inputs({"text": np.zeros((2, 7))}, trained_specs)
    with pytest.raises(DataError, match=re.escape("per-sample shape (3, 5, 4), but the ensemble was trained "
                                                  "on (3, 4, 4)")):
        prediction_inputs({"image": np.zeros((2, 3, 5, 4))}, trained_specs)


def test_prediction_inputs_validate_values(trained_specs):
    x = np.zeros((2, 8))
    x[1, 0] = np.inf
    with pytest.raises(DataError, match=r"modality 'text' has infinite values"):
        prediction_inputs({"text": x}, trained_specs)
