"""`EnsembleTrainingPipeline`: the spec's lower-level API trains given learners on given bag data."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import DataError, EnsembleTrainingPipeline, create_training_pipeline
from tests.conftest import FAST, make_model


@pytest.fixture(scope="module")
def inputs():
    model = make_model(n_samples=240)
    model.create_ensemble(n_bags=2, dropout_strategy="adaptive", random_state=0)
    model.generate_bags()
    learners = model.select_base_learners(trainers=["neural"])
    bag_data = {}
    for spec in model.learner_specs:
        bag = next(b for b in model.bags if b.id == spec.bag_id)
        bag_data[spec.learner_id] = {m: model.dataset.arrays[m][bag.rows] for m in spec.modalities}
        bag_data[spec.learner_id]["labels"] = model.dataset.labels[bag.rows]
    return model, learners, bag_data


def test_trains_each_learner_on_its_bag_with_the_pipeline_config(inputs):
    model, learners, bag_data = inputs
    options = {k: v for k, v in FAST.items() if k not in ("epochs", "enable_denoising")}
    pipeline = create_training_pipeline("classification", 3, False, 3, **options)
    trained, metrics = pipeline.train_ensemble(learners, model.learner_specs, bag_data)
    assert set(trained) == set(metrics) == set(learners)
    assert all([r.epoch for r in records] == [1, 2, 3] for records in metrics.values())  # the pipeline's epochs
    lid = next(iter(trained))
    modalities = model.learner_specs[0].modalities
    output = trained[lid].predict_output({m: bag_data[lid][m][:5] for m in modalities})
    assert output.shape == (5, 3) and np.allclose(output.sum(axis=1), 1.0, atol=1e-5)
    summary = pipeline.get_training_summary(metrics)
    assert summary["total_learners"] == summary["trained"] == 2 and summary["failed"] == 0
    first = summary["learners"][lid]
    records = metrics[lid]
    assert first["epochs"] == 3 and first["final_train_loss"] == records[-1].train_loss
    best = min((r.val_loss, r.epoch) for r in records)
    assert (first["best_val_loss"], first["best_epoch"]) == best
    assert summary["total_training_time"] == pytest.approx(sum(r.training_time for rs in metrics.values() for r in rs))


def test_a_failing_learner_is_recorded_and_the_others_train(inputs):
    model, learners, bag_data = inputs

    class Broken:
        def fit(self, data, run, fit):
            raise RuntimeError("no luck")

    first, second = list(learners)
    pipeline = EnsembleTrainingPipeline({**FAST, "epochs": 2})
    trained, metrics = pipeline.train_ensemble({first: Broken(), second: learners[second]}, model.learner_specs,
                                               bag_data)
    assert list(trained) == [second] and metrics[first] == []
    assert pipeline.results[first].status == "failed" and "no luck" in pipeline.results[first].error


def test_missing_bag_data_is_named(inputs):
    model, learners, bag_data = inputs
    first = next(iter(learners))
    broken = {**bag_data, first: {k: v for k, v in bag_data[first].items() if k != "labels"}}
    with pytest.raises(DataError, match=rf"bag_data\['{first}'\] lacks \['labels'\]"):
        EnsembleTrainingPipeline(FAST).train_ensemble(learners, model.learner_specs, broken)
