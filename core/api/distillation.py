"""Knowledge distillation: the trained ensemble taught to one student network.

An ensemble of dozens of learners is accurate and robust to missing modalities, and costs dozens of
predictions per sample. ``model.distill()`` trains a single fusion network (the ``neural`` trainer)
over every modality on the ensemble's *soft targets*: its class probabilities on the training rows,
softened at ``temperature`` T (``p_i ** (1/T)``, renormalised), with the loss of Hinton et al. (2015),
``T**2 * CE(softmax(z / T), p_T)``. The student trains with modality dropout, so like the ensemble it
predicts from any subset of modalities (``predict_output(inputs, masks)``); it is a learner like any
other, saved with ``student.model.save(path)`` and loaded with the neural trainer's ``load``.

The teacher's targets come from the ensemble's predictions on the training rows (each learner saw
most of them: the usual distillation setting, where the teacher's confident, well-ranked outputs are
what is worth copying). Classification only.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.engine.engine import Engine
from modalbag.errors import ConfigError, NotFittedError
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.proposals import BagProfile
from modalbag.kernel.records import LearnerSpec, TrainedLearner

#: The student's id among learners, and its bag's.
STUDENT_ID = "student"


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``p ** (1/T)`` renormalised per row: the softmax of the teacher's log-probabilities at T."""
    logp = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def distill(model: Any, *, temperature: float = 2.0, modality_dropout: float = 0.3, random_state: int | None = None,
            **options: Any) -> TrainedLearner:
    """Train the student (see the module docstring) and return its `TrainedLearner`.

    ``options`` are training options for the student (``epochs``, ``batch_size``, ``hidden_dim`` ...);
    by default the run's own, without denoising. The student is not added to the ensemble.
    """
    ensemble = getattr(model, "ensemble", None)
    if ensemble is None or model.training_config is None:
        raise NotFittedError("distill() teaches the trained ensemble to a student: call train_ensemble() first")
    if model.task_type != "classification":
        raise ConfigError(f"distill() trains on class probabilities: the task is {model.task_type!r}, "
                          f"not classification")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    dataset = model.dataset
    teacher = ensemble.predict(dataset).output
    soft = soften(teacher, temperature)
    base = model.training_config.to_dict()
    config = TrainingConfig.from_dict({
        **base, "enable_denoising": False, "run_dir": None, "save_checkpoints": False, "sinks": [],
        "validation_strategy": "random", "class_weights": None, "label_smoothing": 0.0,
        **({"random_state": random_state} if random_state is not None else {}),
        **options, "modality_dropout": modality_dropout, "soft_target_temperature": float(temperature),
    }, catalog=model.catalog)
    run = Engine(model.catalog, model.plugins).prepare(config, model.task)
    modalities = tuple(dataset.specs)
    profile = BagProfile(modalities, dataset.specs, dataset.n_samples, "classification", model.task.n_outputs)
    proposal = model.catalog.get("trainer", "neural").factory.propose(profile, "balanced")
    spec = LearnerSpec(STUDENT_ID, -1, "neural", modalities, {m: dataset.specs[m].type for m in modalities},
                       dict(proposal.architecture) if proposal is not None else {},
                       reason=f"distilled from the ensemble at temperature {temperature:g}")
    rows = np.arange(dataset.n_samples)
    bag = Bag(-1, modalities, rows, np.empty(0, dtype=np.int64), seed=config.random_state)
    student = fit_learner(spec, bag, dataset, soft, run, model.catalog)
    if not student.ok:
        raise RuntimeError(f"the student failed to train: {student.error}")
    agreement = float(np.mean(student.model.predict_output(
        {m: dataset.arrays[m] for m in modalities}, dataset.masks).argmax(axis=1) == teacher.argmax(axis=1)))
    student.notes.append(f"distilled at temperature {temperature:g} with modality_dropout {modality_dropout:g}; "
                         f"agrees with the ensemble on {agreement:.1%} of the training rows")
    return attrs.evolve(student, validation={**student.validation, "teacher_agreement": agreement})


__all__ = ["STUDENT_ID", "distill", "soften"]
