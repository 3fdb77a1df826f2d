"""benchmarks/generalisation.py runs end to end at its smallest size, every figure measured."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "generalisation.py"


def test_every_setting_is_scored_under_every_condition(capsys):
    spec = importlib.util.spec_from_file_location("generalisation_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--samples", "150", "--test", "80", "--bags", "2", "--epochs", "1"])
    assert set(out["accuracy"]) == {"baseline", "adversarial", "tta", "diversity", "heads", "ncl", "student"}
    for name, scores in out["accuracy"].items():
        assert set(scores) == {"clean", "noise", "shift", "missing", "fgsm"}
        assert all(0.0 <= v <= 1.0 for c, v in scores.items() if not (name == "student" and c == "fgsm"))
    assert out["accuracy"]["student"]["fgsm"] is None  # one learner, not an ensemble: not attacked
    assert out["head_spread"]["baseline"] is None  # one head
    assert out["head_spread"]["ncl"] > 0 and out["head_spread"]["heads"] > 0
    assert out["student_ms"] > 0 and out["ensemble_ms"] > 0
    assert set(out["domain"]) == {"source-only", "coral", "dann"}
    assert all(set(s) == {"clean", "target"} and all(0.0 <= v <= 1.0 for v in s.values())
               for s in out["domain"].values())
    printed = capsys.readouterr().out
    assert "| setting | clean | noise | shift | missing | fgsm |" in printed and "avx512_bf16" in printed
    assert "| setting | clean | target | train time / source-only |" in printed
