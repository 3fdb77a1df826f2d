"""A separately packaged objective (examples/modalbag-example-objective) is found and used by name."""

from __future__ import annotations

import numpy as np

import modalbag
from tests.conftest import FAST, make_model


def test_example_package_is_discovered_through_its_entry_point():
    rows = [r for r in modalbag.available_plugins("objective") if r.name == "variance"]
    assert [(r.distribution, r.module) for r in rows] == [("modalbag-example-objective", "modalbag_variance")]
    component = modalbag.load_plugin("variance", kind="objective")
    assert component.source.distribution == "modalbag-example-objective"


def test_example_objective_trains_from_config_with_its_own_option():
    model = make_model(n_samples=200)
    model.create_ensemble(n_bags=1, dropout_strategy="exhaustive")
    model.generate_bags()
    model.select_base_learners(trainers=["neural"], instantiate=False)  # objectives shape neural learners
    model.train_ensemble(**{**FAST, "epochs": 3, "enable_denoising": True, "denoising_strategy": "fixed",
                            "denoising_objectives": ["variance"], "variance_target": 2.0})
    record = model.learners["bag_000"].records[-1]
    assert "denoising.variance" in record.loss_terms and np.isfinite(record.metrics["variance.std"])
