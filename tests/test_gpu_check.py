"""benchmarks/gpu_check.py without a GPU: it says so, describes the machine, leaves every GPU section
null with the reason, runs the CPU part and exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_SECTIONS = ("pytest_cuda", "quickstart_bf16", "quickstart_fp16", "loop_overhead_cuda", "ddp_nccl_resume")
NO_GPU = "no CUDA GPU on this machine"


def _nulls_without_reason(value: Any, where: str = "") -> list[str]:
    """Every None in the report that has no ``<key>_reason`` string next to it."""
    if isinstance(value, dict):
        found = [f"{where}.{k}" for k, v in value.items()
                 if v is None and not isinstance(value.get(f"{k}_reason"), str)]
        return found + [p for k, v in value.items() for p in _nulls_without_reason(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls_without_reason(v, f"{where}[{i}]")]
    return []


@pytest.mark.slow
def test_without_a_gpu_the_gpu_sections_are_null_with_the_reason(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the no-GPU path, even on a machine with one
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert NO_GPU in done.stdout
    assert done.stdout.startswith("machine: ")  # the machine is printed first

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    for name in GPU_SECTIONS:
        assert sections[name] is None and sections[f"{name}_reason"] == NO_GPU, name
    assert sections["cpu_precision_matrix"] is None and sections["cpu_precision_matrix_reason"] == "skipped by --quick"
    cpu = sections["cpu_loop_overhead"]
    assert cpu["status"] == "ok", cpu
    for precision in ("fp32", "bf16"):
        assert cpu[precision]["device"] == "cpu" and cpu[precision]["precision"] == precision
        assert cpu[precision]["epoch_ratio"] > 0 and cpu[precision]["raw_peak_cuda_mb"] is None

    machine = report["machine"]
    assert machine["cuda_available"] is False and machine["gpus"] == []
    assert machine["cpu_cores"] == os.cpu_count()
    assert machine["cpu_model"] or machine["cpu_model_reason"]
    assert machine["torch"] and machine["python"] and machine["gpu_bf16_reason"] == NO_GPU
    assert report["failed_sections"] == [] and report["exit_code"] == 0
    assert _nulls_without_reason(report) == []
