"""Inputs that used to be accepted and then did something else than asked (issue 21): modality types in
``denoising_modalities``, a ``num_classes`` the labels do not hold."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag import create_model_from_arrays, create_synthetic_model
from modalbag.errors import ConfigError, DataError
from modalbag.kernel.modalities import ModalitySpec, resolve_modalities
from tests.conftest import FAST

#: Names that differ from the types, so a type can only match through its modalities.
NAMED = {"txt": (16, "text"), "img": (24, "image"), "img2": (8, "image"), "meta": (6, "tabular")}


def _specs(**types: str) -> dict[str, ModalitySpec]:
    return {name: ModalitySpec(name, kind, (4,)) for name, kind in types.items()}


def test_types_stand_for_every_modality_of_the_type_and_names_win():
    specs = _specs(txt="text", img="image", img2="image", text="tabular")
    # 'image' is a type: both image modalities, in data order; 'text' is also a modality's name: that one
    assert resolve_modalities("opt", ["image", "txt"], specs) == ("img", "img2", "txt")
    assert resolve_modalities("opt", ["text"], specs) == ("text",)
    assert resolve_modalities("opt", ["img", "image"], specs) == ("img", "img2")  # no duplicates
    assert resolve_modalities("opt", [], specs) == ()


def test_an_entry_matching_nothing_names_what_the_data_holds():
    specs = _specs(txt="text", img="image")
    with pytest.raises(ConfigError, match=r"opt names 'audio', 'sequence'.*txt \(text\), img \(image\)"):
        resolve_modalities("opt", ["audio", "txt", "sequence"], specs)


def _tiny(**kwargs):
    model = create_synthetic_model(NAMED, n_samples=120, n_classes=2, random_state=0, **kwargs)
    model.create_ensemble(n_bags=1, random_state=0, dropout_strategy="uniform")
    model.select_base_learners(trainers=["neural"], instantiate=False)
    return model


def test_training_with_modality_types_denoises_their_modalities():
    model = _tiny()
    options = {**FAST, "epochs": 1, "enable_denoising": True, "denoising_objectives": ["reconstruction"],
               "denoising_modalities": ["text", "image"]}
    model.train_ensemble(**options)
    assert model.training_config.denoising_modalities == ("txt", "img", "img2")
    learner = next(iter(model.learners.values()))
    assert learner.ok
    metrics = learner.records[-1].metrics
    touched = {m for m in ("txt", "img", "img2", "meta") if f"reconstruction.{m}" in metrics}
    # the learner's bag decides which modalities it has; those of a named type are denoised, meta never
    assert touched and touched <= {"txt", "img", "img2"}, metrics


def test_training_with_an_unknown_denoising_modality_stops_before_training():
    model = _tiny()
    with pytest.raises(ConfigError, match=r"denoising_modalities names 'audio'.*txt \(text\)"):
        model.train_ensemble(**{**FAST, "enable_denoising": True, "denoising_modalities": ["audio"]})
    assert not model.learners


def _five_classes(n: int = 100):
    rng = np.random.default_rng(0)
    return create_model_from_arrays({"x": rng.normal(size=(n, 4))}, np.arange(n) % 5,
                                    task_type="classification")


def test_num_classes_above_the_labels_classes_is_refused_where_it_is_given():
    model = _five_classes()
    fix = r"num_classes=10 but the labels hold 5 classes \(0, 1, 2, 3, 4\): set num_classes=5"
    with pytest.raises(DataError, match=fix):
        model.select_base_learners(task_type="classification", num_classes=10, instantiate=False)
    with pytest.raises(DataError, match=fix):
        model.train_ensemble(**FAST, num_classes=10)
    model.select_base_learners(task_type="classification", num_classes=5, instantiate=False)  # matches: fine


def test_num_classes_is_checked_for_string_labels_too():
    rng = np.random.default_rng(0)
    model = create_model_from_arrays({"x": rng.normal(size=(30, 4))}, np.array(["a", "b", "c"] * 10),
                                     task_type="classification")
    with pytest.raises(DataError, match=r"num_classes=4 but the labels hold 3 classes \('a', 'b', 'c'\)"):
        model.select_base_learners(task_type="classification", num_classes=4, instantiate=False)


def test_modalbag_validate_reports_both_before_training(tmp_path):
    from modalbag.api.run_config import check_run_config

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 4)))
    np.save(tmp_path / "y.npy", np.arange(30) % 3)
    _, issues = check_run_config({"data": {"labels": "y.npy", "modalities": {"x": {"path": "x.npy", "type": "text"}}},
                                  "training": {"num_classes": 5, "denoising_modalities": ["image"]}},
                                 base_dir=tmp_path)
    assert any(i.startswith("data.labels: num_classes=5 but the labels hold 3 classes") for i in issues), issues
    assert any(i.startswith("training.denoising_modalities names 'image'") and "x (text)" in i for i in issues), issues
