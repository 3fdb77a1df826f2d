"""benchmarks/scaling.py: its data files, its exponent fit, one point measured in-process, and its
smallest configuration end to end (so the script cannot rot)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("scaling_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_exponent_is_the_log_log_slope(bench):
    assert bench.exponent([1, 10, 100], [3.0, 30.0, 300.0]) == pytest.approx(1.0)
    assert bench.exponent([2, 4, 8], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    # least squares over 3 points: log2 y = 0, 1, 3 at log2 x = 0, 1, 2 -> slope 1.5
    assert bench.exponent([1, 2, 4], [1.0, 2.0, 8.0]) == pytest.approx(1.5)
    assert bench.exponent([1], [1.0]) is None
    assert bench.slopes([1, 2, 4], [1.0, 2.0, 8.0]) == "1.50 (last two: 2.00)"
    assert bench.slopes([1, 2], [1.0, None]) == "n/a"


def test_data_files_are_written_in_blocks_and_reproducible(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BLOCK_ROWS", 7)  # several blocks, the last one short
    paths = bench.write_dataset(tmp_path / "a", 30, 3, 5)
    again = bench.write_dataset(tmp_path / "b", 30, 3, 5)
    assert sorted(paths) == ["labels", "m00", "m01", "m02"]
    for name in paths:
        a, b = np.load(paths[name]), np.load(again[name])
        np.testing.assert_array_equal(a, b)
        assert len(a) == 30
    x = np.load(paths["m01"], mmap_mode="r")
    assert x.shape == (30, 5) and x.dtype == np.float32 and isinstance(x, np.memmap)
    y = np.load(paths["labels"])
    assert set(np.unique(y)) <= set(range(bench.CLASSES))


def test_one_point_trains_from_memory_mapped_files(bench, tmp_path):
    paths = bench.write_dataset(tmp_path, 300, 2, 4)
    result = bench.run_point({"paths": paths, "bags": 3, "trainer": "sklearn_linear", "epochs": 1,
                              "predict_rows": 50, "predict_all": True})
    assert result["memory_mapped"] is True
    assert result["learners"] == 3
    assert 0 < result["bags_seconds"] < result["train_seconds"]
    assert result["predict_seconds"] > 0 and result["predict_all_seconds"] > 0
    assert result["baseline_mib"] <= result["peak_train_mib"] <= result["peak_mib"]


@pytest.mark.slow
def test_quick_run_prints_a_table_and_exponents_per_curve(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    bench.main(["--quick", "--curves", "samples,bags", "--json", str(out)])
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith(bench.machine_line(bench.describe_machine())[:20])
    for curve in ("samples", "bags"):
        assert f"### {curve}" in printed
        assert f"exponent b ({curve}): train " in printed
    assert "| 1,000 |" in printed and "| 2,000 |" in printed and "| 10 |" in printed
    assert "Data memory-mapped at every point: True." in printed
    results = json.loads(out.read_text())
    assert [r["x"] for r in results["samples"]] == [1000, 2000]
    assert [r["learners"] for r in results["bags"]] == [5, 10]
    assert results["samples"][0]["predict_all_seconds"] > 0 and results["bags"][0]["predict_all_seconds"] is None
