"""modalbag.io.files: every supported format round-trips, every failure is a DataError that helps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from modalbag.errors import DataError
from modalbag.io.files import load_array

VALUES = np.array([[1.5, -2.0, 3.25], [4.0, 0.0, -6.5]], dtype=np.float32)


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# --- .npy / .npz ---------------------------------------------------------------------------------


def test_npy_round_trips_memory_mapped(tmp_path):
    path = tmp_path / "image.npy"
    np.save(path, VALUES.astype(np.float64))
    out = load_array(path, name="image")
    assert isinstance(out, np.memmap)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, VALUES)


def test_npy_accepts_string_path(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(4))
    np.testing.assert_array_equal(load_array(str(path), name="x"), np.arange(4))


def test_npz_single_array_is_used_whatever_its_name(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, arr_0=VALUES)
    np.testing.assert_array_equal(load_array(path, name="text"), VALUES)


def test_npz_multi_key_selects_by_name_then_key(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, text=VALUES, image=VALUES * 2, labels=np.array([0, 1]))
    np.testing.assert_array_equal(load_array(path, name="image"), VALUES * 2)
    np.testing.assert_array_equal(load_array(path, name="image", key="text"), VALUES)
    np.testing.assert_array_equal(load_array(path, name="y", key="labels"), [0, 1])


def test_npz_key_not_found_lists_the_keys(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, text=VALUES, image=VALUES)
    with pytest.raises(DataError, match=r"modality 'audio'.*none named 'audio'.*'image', 'text'"):
        load_array(path, name="audio")
    with pytest.raises(DataError, match=r"no array named 'tex'.*'image', 'text'.*key="):
        load_array(path, name="text", key="tex")


def test_npz_explicit_key_must_exist_even_with_one_array(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, image=VALUES)
    with pytest.raises(DataError, match=r"no array named 'text'.*it holds: 'image'"):
        load_array(path, name="image", key="text")


# --- .csv / .tsv ---------------------------------------------------------------------------------


def test_csv_without_header(tmp_path):
    path = _write(tmp_path / "t.csv", "1.5,-2,3.25\n4,0,-6.5\n")
    out = load_array(path, name="tab")
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, VALUES)


def test_csv_with_header_and_blank_trailing_line(tmp_path):
    path = _write(tmp_path / "t.csv", "a,b,c\n1.5,-2,3.25\n4, 0 ,-6.5\n\n")
    np.testing.assert_array_equal(load_array(path, name="tab"), VALUES)


def test_tsv(tmp_path):
    path = _write(tmp_path / "t.tsv", "a\tb\tc\n1.5\t-2\t3.25\n4\t0\t-6.5\n")
    np.testing.assert_array_equal(load_array(path, name="tab"), VALUES)


def test_csv_missing_cells_become_nan(tmp_path):
    path = _write(tmp_path / "t.csv", "NA,,nan\nNaN,null,7\n")  # an all-missing first row is data
    out = load_array(path, name="tab")
    assert out.shape == (2, 3)
    assert np.isnan(out[0]).all()
    assert np.isnan(out[1, :2]).all() and out[1, 2] == 7


def test_csv_bad_cell_names_row_and_column(tmp_path):
    path = _write(tmp_path / "t.csv", "a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"modality 'tab'.*t\.csv.*row 3, column 2 \('b'\).*oops"):
        load_array(path, name="tab")


def test_csv_ragged_row_is_an_error(tmp_path):
    path = _write(tmp_path / "t.csv", "1,2\n3\n")
    with pytest.raises(DataError, match=r"row 2 has 1 cells, expected 2"):
        load_array(path, name="tab")


@pytest.mark.parametrize("text", ["", "a,b,c\n", "\n\n"])
def test_csv_without_data_rows_is_an_error(tmp_path, text):
    path = _write(tmp_path / "t.csv", text)
    with pytest.raises(DataError, match=r"modality 'tab'.*no data rows"):
        load_array(path, name="tab")


# --- file-level errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npy"
    with pytest.raises(DataError, match=rf"modality 'image'.*{re.escape(str(path))}.*not found"):
        load_array(path, name="image")


def test_corrupt_npy_reports_the_original_error(tmp_path):
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x00garbage bytes that are not an npy header" * 4)
    pattern = r"modality 'image'.*bad\.npy.*cannot read.*pickled"
    with pytest.raises(DataError, match=pattern) as info:
        load_array(path, name="image")
    assert isinstance(info.value.__cause__, ValueError)


def test_unsupported_suffix_lists_supported_ones(tmp_path):
    path = _write(tmp_path / "data.json", "[1, 2]")
    with pytest.raises(DataError, match=r"modality 'x'.*data\.json.*'\.json'.*\.npy, \.npz, \.csv"):
        load_array(path, name="x")


def test_directory_is_not_a_file(tmp_path):
    path = tmp_path / "dir.npy"
    path.mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        load_array(path, name="x")


def test_npz_saved_as_npy_suggests_renaming(tmp_path):
    path = tmp_path / "arch.npy"
    with path.open("wb") as handle:
        np.savez(handle, a=VALUES)
    with pytest.raises(DataError, match=r"Rename the file to end in \.npz"):
        load_array(path, name="x")


# --- optional backends ---------------------------------------------------------------------------


def test_hdf5_round_trip(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as handle:
        handle["image"] = VALUES
        handle["group/text"] = VALUES * 3
    np.testing.assert_array_equal(load_array(path, name="image"), VALUES)
    np.testing.assert_array_equal(load_array(path, name="x", key="/group/text"), VALUES * 3)
    with pytest.raises(DataError, match=r"none named 'audio'.*'group/text', 'image'"):
        load_array(path, name="audio")
    single = tmp_path / "s.hdf5"
    with h5py.File(single, "w") as handle:
        handle["whatever"] = VALUES
    np.testing.assert_array_equal(load_array(single, name="image"), VALUES)


def test_hdf5_without_h5py(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    path = _write(tmp_path / "d.h5", "not really hdf5")
    with pytest.raises(DataError, match=r"modality 'image'.*d\.h5.*pip install 'modalbag\[h5\]'"):
        load_array(path, name="image")


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    table = pa.table({"a": [1.5, None], "b": pa.array([-2, 0], pa.int64()), "c": [3.25, -6.5]})
    pq.write_table(table, path)
    out = load_array(path, name="tab")
    assert out.dtype == np.float32 and out.shape == (2, 3)
    assert np.isnan(out[1, 0])
    np.testing.assert_array_equal(out[0], VALUES[0])
    np.testing.assert_array_equal(out[1, 1:], VALUES[1, 1:])


def test_parquet_non_numeric_column_is_named(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0], "city": ["Oslo"]}), path)
    with pytest.raises(DataError, match=r"modality 'tab'.*non-numeric column\(s\) 'city'"):
        load_array(path, name="tab")


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = _write(tmp_path / "t.parquet", "not really parquet")
    with pytest.raises(DataError, match=r"modality 'tab'.*t\.parquet.*pip install 'modalbag\[parquet\]'"):
        load_array(path, name="tab")


def test_each_optional_reader_has_the_extra_its_error_names():
    import tomllib

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("h5py") for req in extras["h5"])  # _load_hdf5 imports h5py
    assert any(req.startswith("pyarrow") for req in extras["parquet"])  # _load_parquet imports pyarrow
