"""EpochRecord's one serialised form: what checkpoints, run logs and learner files store and read."""

from __future__ import annotations

import json

import numpy as np

from modalbag import EpochRecord


def test_an_epoch_record_round_trips_through_plain_json():
    record = EpochRecord(epoch=3, train_loss=0.5, val_loss=0.4, accuracy=0.9, learning_rate=1e-3,
                         training_time=1.25, loss_terms={"task": 0.3, "alignment": 0.2}, metrics={"gate": 0.7})
    data = record.to_dict()
    assert type(data["loss_terms"]) is dict and data["loss_terms"] == {"task": 0.3, "alignment": 0.2}
    data["loss_terms"]["task"] = 9.0  # a copy: the frozen record is untouched
    assert record.loss_terms["task"] == 0.3
    assert EpochRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_from_dict_ignores_a_run_log_lines_context_and_keeps_defaults():
    line = {"type": "epoch", "run_id": "r", "learner_id": "bag_000", "time": 1.0, "epoch": 1,
            "train_loss": np.float32(0.25).item()}
    record = EpochRecord.from_dict(line)
    assert record == EpochRecord(epoch=1, train_loss=0.25)
    assert record.val_loss is None and record.loss_terms == {}


def test_to_json_is_the_one_conversion_to_plain_data():
    import math
    from pathlib import Path

    import torch

    from modalbag.io.artifacts import to_json

    value = {"a": np.float32(1.5), 1: (1, np.int64(2)), "c": np.arange(3), "d": torch.tensor(2.5),
             "t": torch.ones(2), "e": Path("/x"), "f": float("nan")}
    out = to_json(value)
    assert out["a"] == 1.5 and out["1"] == [1, 2] and out["c"] == [0, 1, 2] and out["d"] == 2.5
    assert out["t"] == [1.0, 1.0] and out["e"] == "/x" and math.isnan(out["f"])
    strict = to_json({"f": float("inf"), "o": object()}, finite=True, fallback=lambda v: "other")
    assert strict == {"f": None, "o": "other"}
    assert json.loads(json.dumps(strict)) == strict
