"""benchmarks/denoising.py: its operator count of one training step is deterministic and sees what the
objectives add, and its cost fit recovers known coefficients (so the step-cost argument in
docs/benchmarks.md cannot rot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "denoising.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("denoising_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_op_counts_are_deterministic_and_grow_with_the_objectives(bench):
    settings = [s for s in bench.SETTINGS if s[0] in ("none", "all five", "consistency")]
    first = bench.op_counts(settings, batch_size=8)
    again = bench.op_counts(settings, batch_size=8)
    assert first == again
    none, every, consistency = first["none"], first["all five"], first["consistency"]
    assert every["ops"] > consistency["ops"] > none["ops"] > 100
    assert every["params"] > none["params"] == consistency["params"]  # consistency has no modules of its own
    assert every["flops"] > none["flops"] > 0
    assert none["by_op"]["aten._fused_adamw_"] == 1  # one fused optimizer call, whatever the tensor count
    assert sum(none["by_op"].values()) == none["ops"]
    # the arithmetic grows with the batch, the operator calls do not
    wider = bench.op_counts(settings[:1], batch_size=32)["none"]
    assert wider["ops"] == none["ops"] and wider["flops"] > 3 * none["flops"]


def test_fit_recovers_known_costs(bench):
    points = [{"ops": ops, "flops": flops, "ms": 0.005 * ops + flops / 2e7}
              for ops, flops in ((200, 1e7), (800, 1e8), (350, 4e8), (400, 2e7))]
    coef = bench.fit_step_times(points)
    assert coef["ops"] == pytest.approx(0.005) and coef["flops"] == pytest.approx(5e-8)
