"""Creating models from files, standardisation of badly scaled inputs, and structured logs."""

from __future__ import annotations

import numpy as np
import pytest
import structlog

from modalbag import DataError, create_model_from_arrays, create_model_from_files
from modalbag.data.synthetic import SyntheticTask
from tests.conftest import FAST


def test_create_model_from_files_reads_each_format(tmp_path):
    task = SyntheticTask.create({"a": (5, "text"), "b": (3, "tabular")}, n_classes=2)
    data, y = task.sample(120)
    np.save(tmp_path / "a.npy", data["a"])
    np.savetxt(tmp_path / "b.csv", data["b"], delimiter=",", header="x,y,z", comments="")
    np.save(tmp_path / "labels.npy", y)
    model = create_model_from_files({"a": (tmp_path / "a.npy", "text"), "b": tmp_path / "b.csv"},
                                    labels=tmp_path / "labels.npy")
    assert model.dataset.specs["a"].type == "text" and model.dataset.specs["b"].type == "tabular"
    np.testing.assert_allclose(model.dataset.arrays["b"], data["b"], rtol=1e-5)
    np.testing.assert_array_equal(model.dataset.labels, y)


def test_unreadable_file_names_modality_and_file(tmp_path):
    bad = tmp_path / "scans.npy"
    bad.write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"modality 'scans'.*scans\.npy"):
        create_model_from_files({"scans": bad})
    with pytest.raises(DataError, match="vitals"):
        create_model_from_files({"vitals": tmp_path / "missing.csv"})


def test_inputs_on_wildly_different_scales_train_as_well_as_standard_ones():
    task = SyntheticTask.create({"a": (8, "text"), "b": (6, "tabular")}, n_classes=3, random_state=4)
    data, y = task.sample(500, random_state=0)
    test, y_test = task.sample(400, random_state=1)
    scores = []
    for scale in (1.0, 1e4):
        scaled = {"a": data["a"] * scale + 50 * scale, "b": data["b"] * 1e-3}
        model = create_model_from_arrays(scaled, y)
        model.create_ensemble(n_bags=1, dropout_strategy="exhaustive", random_state=0)
        model.select_base_learners(trainers=["neural"], instantiate=False)
        model.generate_bags()
        model.train_ensemble(**FAST)
        scores.append(model.evaluate({"a": test["a"] * scale + 50 * scale, "b": test["b"] * 1e-3}, y_test)["accuracy"])
    assert scores[1] == pytest.approx(scores[0], abs=0.05) and scores[1] > 0.5


def test_training_logs_structured_events_and_prints_nothing(capsys):
    task = SyntheticTask.create({"a": (4, "text"), "b": (3, "tabular")}, n_classes=2)
    data, y = task.sample(150)
    model = create_model_from_arrays(data, y)
    model.create_ensemble(n_bags=2)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    with structlog.testing.capture_logs() as logs:
        model.train_ensemble(**{**FAST, "epochs": 2})
    events = [e["event"] for e in logs]
    assert events[0] == "run.start" and events[-1] == "run.end"
    trained = [e for e in logs if e["event"] == "learner.trained"]
    assert {e["learner"] for e in trained} == {"bag_000", "bag_001"} and all(e["seconds"] > 0 for e in trained)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
