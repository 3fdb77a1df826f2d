"""Property-based fuzzing of the public API: random configs, arrays, files and artifact bytes.

Whatever comes in, the only exceptions that may come out are modalbag's own documented errors
(`ModalbagError` subclasses) with a message.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from modalbag import (
    ModalbagError,
    TrainingConfig,
    create_model_from_arrays,
    create_model_from_files,
    load_ensemble,
)
from modalbag.config.training import CONFIG_KEYS  # noqa: E402
from modalbag.io.artifacts import sha256_file  # noqa: E402
from tests.conftest import FAST, make_model  # noqa: E402

#: Modest by default so the suite stays fast; MODALBAG_FUZZ_EXAMPLES=1000 for a deeper search.
FUZZ = settings(max_examples=int(os.environ.get("MODALBAG_FUZZ_EXAMPLES", "40")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)
keys = st.one_of(st.sampled_from(sorted(CONFIG_KEYS)), st.text(string.ascii_letters + "_", min_size=1, max_size=15))


def _only_our_errors(call) -> None:
    try:
        call()
    except ModalbagError as exc:
        assert str(exc), f"{type(exc).__name__} without a message"


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_random_configs_give_a_config_or_a_config_error(data):
    _only_our_errors(lambda: TrainingConfig.from_dict(data))


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(scalars, max_size=3)))
def test_a_config_that_is_not_a_mapping_is_a_config_error(data):
    _only_our_errors(lambda: TrainingConfig.from_dict(data))


dtypes = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
                   hnp.unicode_string_dtypes(max_len=3), st.just(np.dtype(object)))
@FUZZ
@given(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=5),
                       st.one_of(hnp.arrays(hnp.floating_dtypes(),
                                            hnp.array_shapes(min_dims=0, max_dims=4, max_side=4)),
                                 hnp.arrays(dtypes, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)),
                                 st.tuples(hnp.arrays(np.float32, (4, 2)),
                                           st.sampled_from(["tabular", "text", "image", "sequence", "audio", ""])),
                                 st.lists(scalars, max_size=4)),
                       min_size=0, max_size=3),
       st.one_of(st.none(), hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)),
                 st.lists(scalars, max_size=5)),
       st.sampled_from(["classification", "regression", "multilabel", "ranking"]))
def test_random_arrays_give_a_model_or_a_data_error(data, labels, task_type):
    _only_our_errors(lambda: create_model_from_arrays(data, labels, task_type=task_type))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([".npy", ".npz", ".csv", ".tsv", ".txt", ".h5", ".parquet", ""]),
                          st.one_of(st.binary(max_size=200),
                                    st.text(string.digits + ",.-\n\t naNinf", max_size=120).map(str.encode))),
                min_size=1, max_size=3),
       st.one_of(st.none(), st.binary(max_size=64)))
def test_random_files_give_a_model_or_a_data_error(tmp_path, files, label_bytes):
    folder = tmp_path / f"case{np.random.default_rng().integers(1 << 30)}"
    folder.mkdir()
    paths = {}
    for i, (suffix, content) in enumerate(files):
        path = folder / f"m{i}{suffix}"
        path.write_bytes(content)
        paths[f"m{i}"] = path
    labels = None
    if label_bytes is not None:
        labels = folder / "labels.npy"
        labels.write_bytes(label_bytes)
    _only_our_errors(lambda: create_model_from_files(paths, labels))


@FUZZ
@given(st.fixed_dictionaries({"a": st.one_of(hnp.arrays(np.float64, (30, 3), elements=st.floats(allow_nan=True,
                                                                                                 allow_infinity=True)),
                                             hnp.arrays(np.float64, (30, 3), elements=st.just(np.nan)))}),
       st.lists(st.integers(0, 2), min_size=30, max_size=30))
def test_nan_and_inf_values_are_data_errors_not_crashes(data, labels):
    _only_our_errors(lambda: create_model_from_arrays({**data, "b": np.ones((30, 2))}, np.array(labels)))


# -- artifact bytes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    model = make_model(n_samples=120)
    model.create_ensemble(n_bags=2, random_state=0)
    model.train_ensemble(**{**FAST, "epochs": 2, "threads_per_learner": 1})
    return model.export_training_artifacts(tmp_path_factory.mktemp("fuzz") / "export")


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _refresh_checksums(root: Path) -> None:
    """Make every manifest agree with the (damaged) files, so the parsers behind the checksums are reached."""
    for manifest_path in sorted(root.rglob("manifest.json"), key=lambda p: -len(p.parts)):
        try:
            manifest = json.loads(manifest_path.read_text())
            listed = manifest["files"]
            for name in listed:
                path = manifest_path.parent / name
                if path.is_file():
                    listed[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            manifest_path.write_text(json.dumps(manifest))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            continue  # the manifest itself is what got damaged


damage = st.one_of(
    st.tuples(st.just("replace"), st.binary(max_size=300)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1)),
    st.tuples(st.just("json"), values),
)


@FUZZ
@given(st.data(), damage, st.booleans())
def test_damaged_artifacts_give_an_artifact_error(tmp_path, export_dir, data, change, fix_checksums):
    root = tmp_path / f"case{np.random.default_rng().integers(1 << 30)}"
    shutil.copytree(export_dir, root)
    name = data.draw(st.sampled_from(_files(root)))
    path = root / name
    content = path.read_bytes()
    kind, arg = change
    if kind == "replace":
        content = arg
    elif kind == "truncate":
        content = content[: int(arg * len(content))]
    elif kind == "flip" and content:
        i = min(int(arg * len(content)), len(content) - 1)
        content = content[:i] + bytes([content[i] ^ 0x5A]) + content[i + 1:]
    else:
        content = json.dumps(arg).encode()
    path.write_bytes(content)
    if fix_checksums:
        _refresh_checksums(root)
    _only_our_errors(lambda: load_ensemble(root))
