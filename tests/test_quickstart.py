"""The spec's Basic Ensemble Training example (examples/quickstart.py) runs and learns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_example_trains_and_beats_chance():
    result = subprocess.run([sys.executable, "examples/quickstart.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert int(re.search(r"Trained (\d+) learners successfully", out).group(1)) >= 20
    average = float(re.search(r"Average accuracy: ([0-9.]+)", out).group(1))
    full, missing = map(float, re.search(r"Held-out ensemble accuracy: ([0-9.]+).*image_features: ([0-9.]+)",
                                         out).groups())
    assert average > 0.4 and full > 0.6  # chance is 0.2 with 5 classes
    assert full > average  # the ensemble beats its learners' average
    assert 0.2 < missing < full
    assert result.stderr == ""  # the library prints nothing and logs nothing unconfigured
