"""Every example run config validates, holds the spec's modalities, and trains for a couple of epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modalbag.api.run_config import check_run_config, load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.toml"))

#: The spec's Real-World Applications: the modality names each example must carry, and its task.
SPEC_APPLICATIONS = {
    "medical": ("classification", 12, ["patient_vitals", "medical_images", "clinical_notes", "lab_results",
                                       "genetic_data"]),
    "autonomous_vehicle": ("classification", 15, ["lidar_points", "camera_rgb", "radar_signals", "gps_imu",
                                                  "weather_sensors", "map_data"]),
    "finance": ("regression", None, ["price_data", "order_book", "news_sentiment", "macro_indicators",
                                     "technical_indicators", "alternative_data"]),
    "recommendation": ("multilabel", None, ["user_profiles", "product_features", "behavioral_data",
                                            "contextual_data", "social_signals", "visual_features"]),
    "quickstart": ("classification", 5, ["text_embeddings", "image_features", "user_metadata"]),
}

#: A couple of epochs on a few samples, neural learners only (no measured selection: these test the training path).
FAST = ["epochs=2", "ensemble.n_bags=2", "data.synthetic.n_samples=120", "cross_validation_folds=0",
        "walk_forward_validation=false", "save_checkpoints=false", "warmup_epochs=0", "n_jobs=1",
        'learners.trainers=["neural"]']


def test_there_is_one_example_per_spec_application():
    assert {p.stem for p in CONFIGS} == set(SPEC_APPLICATIONS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_validates_with_the_spec_modalities(path):
    config, issues = check_run_config(path)
    assert issues == []
    task_type, n_classes, names = SPEC_APPLICATIONS[path.stem]
    assert config.training.task_type == task_type
    assert n_classes is None or config.training.num_classes == n_classes
    assert list(config.synthetic.modalities) == names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_trains_for_a_couple_of_epochs(path, tmp_path):
    config = load_run_config(path, FAST)
    model = config.train()
    summary = model.get_training_summary()
    assert summary["trained"] == summary["total_learners"] == 2, summary["errors"]
    neural = [lid for lid, r in model.learners.items() if r.spec.trainer == "neural"]
    assert neural and all(summary["epochs_trained"][lid] == 2 for lid in neural)
    data, labels = model.synthetic_task.sample(40, random_state=5)
    predictions = model.predict(data)
    assert len(predictions) == 40 and np.all(np.isfinite(np.asarray(predictions, dtype=float)))
    metrics = model.evaluate(data, labels)
    assert metrics["n_samples"] == 40 and metrics["n_fallback"] == 0
