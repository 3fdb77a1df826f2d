"""modalbag.data.synthetic: the generated tasks have real multimodal structure (fusion beats every single
modality, each modality carries signal), are reproducible, and `sample` draws from the same task."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from modalbag.data.dataset import MultimodalDataset
from modalbag.data.synthetic import SyntheticTask
from modalbag.errors import DataError

SPEC = {"t": (32, "text"), "i": (48, "image"), "m": (10, "tabular")}
N_CLASSES = 4


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):  # small fits: BLAS threads only add contention
        yield


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.create(SPEC, n_classes=N_CLASSES, random_state=0)


@pytest.fixture(scope="module")
def train(task):
    return task.sample(1500, random_state=0)


@pytest.fixture(scope="module")
def held_out(task):
    return task.sample(1500, random_state=1)


def _fit(data, labels, names):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([data[n].reshape(len(labels), -1) for n in names], axis=1)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, labels)


def _score(model, data, labels, names):
    x = np.concatenate([data[n].reshape(len(labels), -1) for n in names], axis=1)
    return model.score(x, labels)


@pytest.fixture(scope="module")
def accuracies(train, held_out):
    out = {}
    for names in (("t",), ("i",), ("m",), ("t", "i", "m")):
        model = _fit(*train, names)
        out[names] = _score(model, *held_out, names)
    return out


def test_fusion_beats_every_single_modality(accuracies):
    fused = accuracies[("t", "i", "m")]
    for name in ("t", "i", "m"):
        assert fused >= accuracies[(name,)] + 0.05, accuracies


def test_every_single_modality_is_well_above_chance(accuracies):
    chance = 1.0 / N_CLASSES
    for name in ("t", "i", "m"):
        assert accuracies[(name,)] >= chance + 0.1, accuracies


def test_labels_cover_every_class(train):
    _, y = train
    assert y.dtype.kind == "i"
    assert set(np.unique(y)) == set(range(N_CLASSES))
    assert np.bincount(y).min() > 0.05 * len(y)


def test_shapes_dtypes_and_scales(train):
    data, y = train
    assert set(data) == set(SPEC)
    for name, (dim, _) in SPEC.items():
        assert data[name].shape == (1500, dim)
        assert data[name].dtype == np.float32
        assert np.isfinite(data[name]).all()
    assert y.shape == (1500,)
    assert (data["i"] >= 0).all()  # pooled-CNN-like image features are non-negative
    # modalities live on different scales
    stds = {n: float(data[n].std()) for n in data}
    assert max(stds.values()) / min(stds.values()) > 2


def test_same_seed_same_data(task):
    again = SyntheticTask.create(SPEC, n_classes=N_CLASSES, random_state=0)
    d1, y1 = task.sample(50, random_state=7)
    d2, y2 = again.sample(50, random_state=7)
    np.testing.assert_array_equal(y1, y2)
    for name in SPEC:
        np.testing.assert_array_equal(d1[name], d2[name])


def test_different_task_seed_gives_a_different_task(task):
    other = SyntheticTask.create(SPEC, n_classes=N_CLASSES, random_state=1)
    d1, _ = task.sample(50, random_state=7)
    d2, _ = other.sample(50, random_state=7)
    assert not np.allclose(d1["t"], d2["t"])


def test_different_sample_seed_gives_different_samples(train, held_out):
    (d1, y1), (d2, y2) = train, held_out
    for name in SPEC:
        assert not np.allclose(d1[name], d2[name])
    assert not np.array_equal(y1, y2)


def test_samples_share_the_mapping(task, train, held_out, accuracies):
    # a model fit on one sample generalises to another sample of the same task ...
    fused = accuracies[("t", "i", "m")]
    assert fused >= 0.8
    model = _fit(*train, ("t", "i", "m"))
    assert fused >= _score(model, *train, ("t", "i", "m")) - 0.1
    # ... and not to a different task drawn with the same sample seed
    other = SyntheticTask.create(SPEC, n_classes=N_CLASSES, random_state=5).sample(1500, random_state=1)
    assert _score(model, *other, ("t", "i", "m")) < fused - 0.3


def test_raw_image_and_sequence_shapes():
    task = SyntheticTask.create({"img": ((3, 8, 8), "image"), "seq": ((12, 4), "sequence"),
                                 "tab": (5, "tabular")}, n_classes=3)
    data, y = task.sample(20, random_state=0)
    assert data["img"].shape == (20, 3, 8, 8)
    assert data["seq"].shape == (20, 12, 4)
    assert data["tab"].shape == (20, 5)
    assert all(a.dtype == np.float32 for a in data.values())
    assert y.shape == (20,)
    ds = MultimodalDataset.from_arrays(data, y)  # inferred types match the requested ones
    assert {n: s.type for n, s in ds.specs.items()} == {"img": "image", "seq": "sequence", "tab": "tabular"}
    assert ds.specs["img"].shape == (3, 8, 8)


def test_regression_task_labels():
    task = SyntheticTask.create({"a": (6, "tabular"), "b": (4, "text")}, task_type="regression")
    data, y = task.sample(200, random_state=0)
    assert y.shape == (200,)
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    assert y.std() > 0.5
    assert len(np.unique(y)) == 200


def test_multilabel_task_labels():
    task = SyntheticTask.create({"a": (6, "tabular"), "b": (4, "text")}, n_classes=5, task_type="multilabel")
    _, y = task.sample(300, random_state=0)
    assert y.shape == (300, 5)
    assert y.dtype.kind == "i"
    assert set(np.unique(y)) == {0, 1}
    assert (y.min(axis=0) == 0).all() and (y.max(axis=0) == 1).all()  # every label varies


def test_single_modality_task_sees_everything():
    task = SyntheticTask.create({"only": (16, "tabular")}, n_classes=3)
    assert len(task.maps["only"].observed) == task.latent_dim


def test_every_modality_is_partial_and_every_latent_dim_observed(task):
    seen = set()
    for m in task.maps.values():
        assert 0 < len(m.observed) < task.latent_dim
        seen |= set(m.observed.tolist())
    assert seen == set(range(task.latent_dim))


@pytest.mark.parametrize(("spec", "match"), [
    ({}, r"at least one modality"),
    ({"a": 8}, r"synthetic modality 'a' must be \(dim, type\)"),
    ({"a": (8, "txt")}, r"synthetic modality 'a' has unknown type 'txt'"),
    ({"a": (0, "tabular")}, r"synthetic modality 'a' needs positive dimensions"),
    ({"a": ((3, -1, 4), "image")}, r"needs positive dimensions"),
    ({"s": (12, "sequence")}, r"synthetic sequence 's' needs \(T, features\)"),
    ({"img": ((8, 8), "image")}, r"synthetic image 'img' needs a feature dim or \(C, H, W\)"),
    ({"t": ((3, 4), "text")}, r"synthetic text modality 't' needs one dimension"),
], ids=["empty", "not-a-tuple", "unknown-type", "zero-dim", "negative-dim", "seq-1d", "image-2d", "text-2d"])
def test_invalid_specs_raise(spec, match):
    with pytest.raises(DataError, match=match):
        SyntheticTask.create(spec)
