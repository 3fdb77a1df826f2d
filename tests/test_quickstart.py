"""The spec's Basic Ensemble Training example (examples/quickstart.py) runs and learns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


#: The example as written takes 80 s on two cores; the test runs its text with fewer samples and epochs.
SMALLER = {"n_samples=1000": "n_samples=400", "epochs=50": "epochs=8"}


@pytest.mark.slow
def test_quickstart_example_trains_and_beats_chance():
    source = (ROOT / "examples" / "quickstart.py").read_text()
    for written, smaller in SMALLER.items():
        assert source.count(written) == 1, f"examples/quickstart.py no longer says {written}: update SMALLER"
        source = source.replace(written, smaller)
    result = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True,
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
