"""Every code example of the product spec (SPEC.md), run as written but smaller, and its printed lines.

Each test is one ```python block of the spec, in the spec's order, copied as close to verbatim as
possible. What changed is size only (samples, feature widths, epochs, bags, one thread per learner),
each change commented on its line with the spec's value (``# spec: ...``), plus the few lines a block
needs to run at all (labels for a constructor that has none, the arrays the spec leaves undefined),
also commented. Printed lines are checked for shape: every label the spec prints is there, and its
value is a number (with the spec's unit) or reads ``n/a (reason)`` where modalbag measured nothing.

The spec's blocks continue one session: they use ``model``, the Quick Start's model. Here ``model`` is
the Quick Start's task with neural learners: on the spec's 1000 samples of 768/2048/50 features the
measured selection trains neural learners, but on the 200 small samples used here it picks logistic
ones, which have no epochs, optimizer or denoising for those blocks to act on.

Blocks not run, with why:

- the architecture diagram (```` ``` ````, not Python);
- the API reference's five listings (``class EnsembleTrainingPipeline``, ``AdvancedTrainingConfig``,
  ``AdvancedCrossModalDenoisingLoss``, ``ComprehensiveTrainingMetrics``, ``def create_training_pipeline``):
  signatures without bodies, not runnable code; `test_api_reference_names` calls each name the way the
  listing declares it instead.
"""

# The spec's code is kept as written, f-strings without placeholders and its blind except included.
# ruff: noqa: F541, BLE001

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import modalbag
from modalbag import (
    ConfigError,
    MultiModalEnsembleModel,
    create_model_from_arrays,
    create_model_from_files,
    create_synthetic_model,
    optimize_for_resources,
)

#: The Quick Start's modalities at a tenth of their widths or less (spec: 768, 2048 and 50 features).
QUICKSTART_MODALITIES = {
    "text_embeddings": (32, "text"),  # spec: 768
    "image_features": (48, "image"),  # spec: 2048
    "user_metadata": (8, "tabular"),  # spec: 50
}

_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def value_of(out: str, label: str) -> str:
    """The text printed after ``label:`` on its line (the first line that has it)."""
    for line in out.splitlines():
        _, sep, tail = line.partition(f"{label}:")
        if sep:
            return tail.strip()
    raise AssertionError(f"no line prints {label!r}:\n{out}")


def assert_numbers(out: str, *labels: str) -> None:
    """Each label is printed with a number or with ``n/a (reason)``, and the spec's unit after it."""
    for label in labels:
        value = value_of(out, label)
        # the spec's unit follows either ("0.500ms", "n/a (reason)ms")
        assert _NUMBER.match(value) or re.fullmatch(r"n/a \(.+\)( ?[A-Za-z%]*(/[\d.]+)?)", value), f"{label}: {value!r}"


def assert_texts(out: str, *labels: str) -> None:
    """Each label is printed with some value other than a bare ``None``."""
    for label in labels:
        value = value_of(out, label)
        assert value and value != "None", f"{label}: {value!r}"


def run_quietly(fn, *args, **kwargs):
    """``fn``'s result and what it printed (for module fixtures, where capsys cannot reach)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = fn(*args, **kwargs)
    return result, buffer.getvalue()


def _quick_start():
    # from mainModel import MultiModalEnsembleModel, create_synthetic_model  (imported at the top)

    # Create model with data and ensemble bags
    model = create_synthetic_model(QUICKSTART_MODALITIES,  # spec: 768/2048/50 features
                                   n_samples=200, n_classes=5)  # spec: 1000 samples

    # Generate ensemble and select learners
    model.create_ensemble(n_bags=3, dropout_strategy='adaptive')  # spec: 20 bags
    bags = model.generate_bags()
    learners = model.select_base_learners(
        task_type='classification',
        num_classes=5,
        optimization_strategy='balanced',
        instantiate=True
    )
    assert len(bags) == len(learners) == 3

    # Train the ensemble with cross-modal denoising
    trained_learners = model.train_ensemble(
        task_type='classification',
        num_classes=5,
        epochs=2,  # spec: 50
        enable_denoising=True,
        denoising_weight=0.1,
        threads_per_learner=1,  # added: one thread per learner on the shared test cores
    )

    print(f"✅ Trained {len(trained_learners)} learners successfully!")

    # Get training summary
    training_summary = model.get_training_summary()
    print(f"Average accuracy: {training_summary['average_performance']['accuracy']:.3f}")
    print(f"Total training time: {sum(training_summary['training_times'].values()):.1f}s")
    return model


@pytest.fixture(scope="module")
def quick_start():
    return run_quietly(_quick_start)


@pytest.fixture(scope="module")
def model():
    """The Quick Start's model with neural learners (see the module docstring), trained once."""
    model = create_synthetic_model(QUICKSTART_MODALITIES, n_samples=200, n_classes=5)  # spec: 1000 samples
    model.create_ensemble(n_bags=3, dropout_strategy='adaptive')  # spec: 20 bags
    model.generate_bags()
    model.select_base_learners(trainers=["neural"], instantiate=False)  # spec: optimization_strategy='balanced'
    model.train_ensemble(task_type='classification', num_classes=5, epochs=2, enable_denoising=True,  # spec: 50
                         denoising_weight=0.1, threads_per_learner=1)
    return model


#: Added to every ``train_ensemble`` call whose block gives no epochs: the spec's default is 100.
SMALL = {"epochs": 2, "threads_per_learner": 1}


# -- Quick Start ---------------------------------------------------------------------------------


def test_basic_ensemble_training(quick_start):
    _, out = quick_start
    assert re.search(r"✅ Trained \d+ learners successfully!", out), out
    assert_numbers(out, "Average accuracy", "Total training time")
    assert float(value_of(out, "Average accuracy")) > 0.2  # five classes: above chance


def test_advanced_training_configuration(model, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # added: tensorboard_logging and checkpoints write under the working directory
    # Advanced training with custom configuration
    training_config = {
        # Core training parameters
        'epochs': 2,  # spec: 100
        'batch_size': 64,
        'learning_rate': 1e-3,
        'weight_decay': 1e-4,

        # Cross-modal denoising configuration
        'enable_denoising': True,
        'denoising_weight': 0.15,
        'denoising_strategy': 'adaptive',
        'denoising_objectives': ['reconstruction', 'alignment', 'consistency'],

        # Optimization strategy
        'optimizer_type': 'adamw',
        'scheduler_type': 'cosine_restarts',
        'warmup_epochs': 1,  # spec: 10 (of 100 epochs)
        'gradient_clipping': 1.0,

        # Performance optimization
        'mixed_precision': True,
        'gradient_accumulation_steps': 2,
        'num_workers': 8,

        # Quality assurance
        'early_stopping_patience': 20,
        'validation_split': 0.2,
        'cross_validation_folds': 5,

        # Monitoring and debugging
        'verbose': True,
        'save_checkpoints': True,
        'tensorboard_logging': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    }

    # Train ensemble with advanced configuration
    trained_learners = model.train_ensemble(**training_config)

    # Detailed training analysis
    training_report = model.get_detailed_training_report()
    print(f"Training Report:")
    print(f"  Total Learners: {training_report['total_learners']}")
    print(f"  Success Rate: {training_report['success_rate']:.1%}")
    print(f"  Best Performing Learner: {training_report['best_learner_id']}")
    print(f"  Cross-Modal Denoising Effectiveness: {training_report['denoising_impact']:.3f}")

    out = capsys.readouterr().out
    assert trained_learners
    assert_numbers(out, "Total Learners", "Success Rate", "Cross-Modal Denoising Effectiveness")
    assert value_of(out, "Success Rate") == "100.0%"
    assert value_of(out, "Best Performing Learner") in trained_learners


# -- Cross-Modal Denoising Engine: the five objectives ---------------------------------------------


def test_reconstruction_objective(model):
    # Reconstruction loss with attention mechanism
    model.train_ensemble(
        enable_denoising=True,
        denoising_objectives=['reconstruction'],
        denoising_strategy='adaptive',
        **SMALL,  # added: spec trains 100 epochs (the default)
    )
    assert_denoised(model, {"reconstruction"})


def test_contrastive_alignment_objective(model):
    # Contrastive alignment with InfoNCE loss
    model.train_ensemble(
        enable_denoising=True,
        denoising_objectives=['alignment'],
        denoising_weight=0.2,
        **SMALL,  # added: spec trains 100 epochs (the default)
    )
    assert_denoised(model, {"alignment"})


def test_consistency_regularization(model):
    # Consistency regularization for robust predictions
    model.train_ensemble(
        enable_denoising=True,
        denoising_objectives=['consistency'],
        denoising_strategy='curriculum',
        **SMALL,  # added: spec trains 100 epochs (the default)
    )
    assert_denoised(model, {"consistency"})


def test_information_theoretic_objectives(model):
    # Information bottleneck and mutual information optimization
    model.train_ensemble(
        enable_denoising=True,
        denoising_objectives=['information'],
        denoising_weight=0.1,
        **SMALL,  # added: spec trains 100 epochs (the default)
    )
    assert_denoised(model, {"information"})


def test_cross_modal_prediction(model):
    # Cross-modal prediction for feature learning
    model.train_ensemble(
        enable_denoising=True,
        denoising_objectives=['prediction'],
        adaptive_weighting=True,
        **SMALL,  # added: spec trains 100 epochs (the default)
    )
    assert_denoised(model, {"prediction"})
    assert model.training_config.denoising_strategy == "adaptive"


def assert_denoised(model: MultiModalEnsembleModel, objectives: set[str]) -> None:
    """Every learner trained, and the learners' epochs recorded a loss term for each objective (a
    one-modality bag has nothing to reconstruct or align, so not every learner has every term)."""
    summary = model.get_training_summary()
    assert summary["failed"] == 0, summary["errors"]
    recorded = {term.partition(".")[2] for learner in model.learners.values()
                for record in learner.records for term in record.loss_terms}
    assert objectives <= recorded, recorded


# -- Denoising configuration strategies -------------------------------------------------------------

DENOISING_STRATEGIES = {
    "fixed": {
        'denoising_strategy': 'fixed',
        'denoising_weight': 0.1,
        'denoising_objectives': ['reconstruction', 'alignment']
    },
    "adaptive": {
        'denoising_strategy': 'adaptive',
        'denoising_weight': 0.15,
        'denoising_objectives': ['reconstruction', 'alignment', 'consistency']
    },
    "curriculum": {
        'denoising_strategy': 'curriculum',
        'denoising_weight': 0.2,
        'warmup_epochs': 1,  # spec: 10 (of stages up to epoch 50)
        'curriculum_stages': [
            {'epochs': 1, 'objectives': ['reconstruction']},  # spec: 20
            {'epochs': 2, 'objectives': ['reconstruction', 'alignment']},  # spec: 30
            {'epochs': 3, 'objectives': ['reconstruction', 'alignment', 'consistency']}  # spec: 50
        ]
    },
}


@pytest.mark.parametrize("name", DENOISING_STRATEGIES)
def test_denoising_strategy(model, name):
    config = DENOISING_STRATEGIES[name]
    model.train_ensemble(**config, epochs=3, threads_per_learner=1)  # added: the spec only writes the dict
    assert_denoised(model, {"reconstruction"})
    assert set(model.training_config.denoising_objectives) == set(
        config.get('denoising_objectives', ['reconstruction', 'alignment', 'consistency']))


# -- Optimizers, schedulers, training techniques -------------------------------------------------------

OPTIMIZERS = {
    "adamw": {
        'optimizer_type': 'adamw',
        'learning_rate': 1e-3,
        'weight_decay': 1e-4,
        'betas': (0.9, 0.999),
        'eps': 1e-8
    },
    "sgd": {
        'optimizer_type': 'sgd',
        'learning_rate': 1e-2,
        'momentum': 0.9,
        'weight_decay': 1e-4,
        'nesterov': True
    },
    "radam": {
        'optimizer_type': 'radam',
        'learning_rate': 1e-3,
        'weight_decay': 1e-4,
        'warmup_epochs': 0  # RAdam handles warmup internally
    },
}

SCHEDULERS = {
    "cosine_restarts": {
        'scheduler_type': 'cosine_restarts',
        'T_max': 2,  # spec: 50
        'eta_min': 1e-6,
        'T_mult': 2  # Restart period multiplier
    },
    "onecycle": {
        'scheduler_type': 'onecycle',
        'max_lr': 1e-2,
        'pct_start': 0.3,
        'anneal_strategy': 'cos'
    },
    "plateau": {
        'scheduler_type': 'plateau',
        'mode': 'min',
        'factor': 0.5,
        'patience': 5,
        'verbose': True
    },
}

TECHNIQUES = {
    "mixed_precision": {
        'mixed_precision': True,
        'amp_optimization_level': 'O1',  # Conservative mixed precision
        'gradient_scaling': True,
        'loss_scale': 'dynamic'
    },
    "gradient_accumulation": {
        'gradient_accumulation_steps': 4,
        'effective_batch_size': 32 * 4,  # 128 effective batch size
        'gradient_clipping': 1.0
    },
    "progressive_learning": {
        'enable_progressive_learning': True,
        'progressive_stages': [
            {'epochs': 1, 'frozen_layers': ['encoder'], 'lr_multiplier': 0.1},  # spec: 20 epochs
            {'epochs': 1, 'frozen_layers': [], 'lr_multiplier': 1.0},  # spec: 30
            {'epochs': 1, 'fine_tuning': True, 'lr_multiplier': 0.01}  # spec: 50
        ]
    },
}


@pytest.mark.parametrize("config", [*OPTIMIZERS.values(), *SCHEDULERS.values(), *TECHNIQUES.values()],
                         ids=[*OPTIMIZERS, *SCHEDULERS, *TECHNIQUES])
def test_optimization_config(model, config):
    # added: the spec only writes the dict (optimizer_config, scheduler_config, training_config)
    trained = model.train_ensemble(**config, epochs=3, threads_per_learner=1)  # spec: 100 epochs (the default)
    summary = model.get_training_summary()
    assert summary["failed"] == 0 and len(trained) == summary["total_learners"], summary["errors"]
    for key in ("optimizer_type", "scheduler_type", "enable_progressive_learning", "mixed_precision"):
        if key in config:
            assert getattr(model.training_config, key) == config[key]


# -- Comprehensive performance analytics -----------------------------------------------------------------


def test_real_time_training_monitoring(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # added: the logs are written under the working directory
    monkeypatch.setenv("WANDB_MODE", "offline")  # added: no W&B account on a test machine
    # Enable comprehensive monitoring
    monitoring_config = {
        'verbose': True,
        'log_interval': 10,
        'eval_interval': 1,
        'tensorboard_logging': True,
        'wandb_logging': True,
        'profile_training': True
    }

    # Train with monitoring
    trained_learners = model.train_ensemble(**monitoring_config, **SMALL)  # added: spec trains 100 epochs
    summary = model.get_training_summary()
    assert summary["failed"] == 0 and trained_learners, summary["errors"]


def test_detailed_training_analytics(model, capsys):
    # Get comprehensive training report
    training_report = model.get_detailed_training_report()

    print("📊 Training Performance Analysis:")
    print(f"  Total Training Time: {training_report['total_time']:.1f}s")
    print(f"  Average Epoch Time: {training_report['avg_epoch_time']:.2f}s")
    print(f"  Memory Peak Usage: {training_report['peak_memory']:.1f}MB")
    print(f"  GPU Utilization: {training_report['gpu_utilization']:.1%}")

    print("\n🎯 Model Performance:")
    print(f"  Best Accuracy: {training_report['best_accuracy']:.4f}")
    print(f"  Final Loss: {training_report['final_loss']:.4f}")
    print(f"  Convergence Epoch: {training_report['convergence_epoch']}")
    print(f"  Overfitting Score: {training_report['overfitting_score']:.3f}")

    print("\n🧠 Cross-Modal Analysis:")
    for objective, effectiveness in training_report['denoising_analysis'].items():
        print(f"  {objective.title()}: {effectiveness:.3f}")

    print("\n⚡ Training Efficiency:")
    print(f"  Samples/Second: {training_report['throughput']:.1f}")
    print(f"  Parameter Updates/Second: {training_report['update_rate']:.1f}")
    print(f"  Training Stability: {training_report['stability_score']:.3f}")

    out = capsys.readouterr().out
    assert_numbers(out, "Total Training Time", "Average Epoch Time", "Memory Peak Usage", "GPU Utilization",
                   "Best Accuracy", "Final Loss", "Convergence Epoch", "Overfitting Score", "Samples/Second",
                   "Parameter Updates/Second", "Training Stability")
    if not torch.cuda.is_available():  # nothing to measure on a CPU: the reason, never a number
        assert value_of(out, "GPU Utilization").startswith("n/a (")
    assert float(value_of(out, "Total Training Time").rstrip("s")) > 0


def test_learner_specific_performance_analysis(model, capsys):
    # Analyze individual learner performance
    learner_analysis = model.get_learner_training_analysis()

    for learner_id, analysis in learner_analysis.items():
        print(f"\n📈 {learner_id} Analysis:")
        print(f"  Architecture: {analysis['architecture']}")
        print(f"  Training Time: {analysis['training_time']:.2f}s")
        print(f"  Final Accuracy: {analysis['final_accuracy']:.4f}")
        print(f"  Convergence Rate: {analysis['convergence_rate']:.3f}")
        print(f"  Memory Usage: {analysis['memory_usage']:.1f}MB")

        # Cross-modal specific metrics
        if analysis.get('multimodal', False):
            print(f"  Modality Reconstruction:")
            for modality, score in analysis['reconstruction_scores'].items():
                print(f"    {modality}: {score:.3f}")
            print(f"  Cross-Modal Alignment: {analysis['alignment_score']:.3f}")
            print(f"  Consistency Score: {analysis['consistency_score']:.3f}")

        # Feature importance for interpretability
        if 'feature_importance' in analysis:
            print(f"  Top Features: {analysis['feature_importance']['top_features']}")
            print(f"  Modality Contributions: {analysis['feature_importance']['modality_weights']}")

    out = capsys.readouterr().out
    assert out.count("Analysis:") == len(learner_analysis) == len(model.learners)
    for section in out.split("📈")[1:]:
        assert_texts(section, "Architecture")
        assert_numbers(section, "Training Time", "Final Accuracy", "Convergence Rate", "Memory Usage")
        if "Cross-Modal Alignment" in section:
            assert_numbers(section, "Cross-Modal Alignment", "Consistency Score")


# -- Pipeline integration ------------------------------------------------------------------------------


def test_integration_with_learner_selection(model, capsys, tmp_path, monkeypatch):
    # added: run as the spec's scripts are, from a main script without an `if __name__ == "__main__":` guard
    script = tmp_path / "train.py"
    script.write_text("learners = model.select_base_learners()\ntrained = model.train_ensemble()\n")
    monkeypatch.setitem(sys.modules, "__main__", SimpleNamespace(__file__=str(script)))
    # Seamless transition from learner selection to training
    learners = model.select_base_learners(
        task_type='classification',
        num_classes=5,
        optimization_strategy='balanced',
        instantiate=True
    )

    # Automatic training configuration based on learner types
    training_strategy = model.configure_training_strategy(learners, epochs=2)  # added: epochs=2, spec 100
    print(f"Recommended training strategy: {training_strategy['name']}")
    print(f"Estimated training time: {training_strategy['estimated_time']:.1f}s")
    print(f"Memory requirements: {training_strategy['memory_mb']:.1f}MB")

    # Train with optimized configuration
    trained_learners = model.train_ensemble(
        task_type='classification',
        **training_strategy['config']
    )

    out = capsys.readouterr().out
    assert_texts(out, "Recommended training strategy")
    assert_numbers(out, "Estimated training time", "Memory requirements")
    assert trained_learners and model.get_training_summary()["failed"] == 0
    # worker processes would import the unguarded script and train again: the strategy trains here
    assert training_strategy['config'].get('n_jobs', 1) == 1
    model.select_base_learners(trainers=["neural"], instantiate=False)  # added: back to the module's learners


def test_preparation_for_model_integration(model, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # added: './training_outputs/' lands in a scratch directory
    # Training pipeline prepares models for integration
    trained_learners = model.train_ensemble(
        task_type='classification',
        enable_denoising=True,
        save_checkpoints=True,
        export_for_integration=True,
        **SMALL,  # added: spec trains 100 epochs (the default)
    )

    # Trained models are automatically prepared for integration
    integration_ready = model.prepare_for_integration()
    print(f"Integration status: {integration_ready['status']}")
    print(f"Model compatibility: {integration_ready['compatibility_check']}")
    print(f"Performance validation: {integration_ready['performance_validation']}")

    # Export training artifacts for Stage 5
    model.export_training_artifacts('./training_outputs/')
    print("✅ Training artifacts exported for Stage 5 integration")

    out = capsys.readouterr().out
    assert trained_learners
    assert_texts(out, "Integration status", "Model compatibility", "Performance validation")
    assert "✅ Training artifacts exported" in out
    assert any((tmp_path / "training_outputs").iterdir())
    assert MultiModalEnsembleModel.from_export(tmp_path / "training_outputs").predict(
        model.synthetic_task.sample(5, random_state=3)[0]).shape == (5,)


# -- Real-world applications ------------------------------------------------------------------------


def spec_data(modalities, n_samples, **task):
    """``(arrays by modality, labels, held-out arrays, held-out labels)``: samples of a synthetic task with
    the spec's modality names, the data its application blocks leave undefined (``lidar_data``, ...)."""
    task = create_synthetic_model(modalities, n_samples=n_samples, random_state=0, **task).synthetic_task
    return (*task.sample(n_samples, random_state=1), *task.sample(120, random_state=2))


#: The domain reports score held-out samples; the spec calls them with none (see
#: `test_domain_reports_without_held_out_data`), so each application test passes some.


@pytest.mark.slow  # trains six-modality ensembles with measured selection: 20-160 s on 2 shared cores
def test_healthcare_medical_diagnosis(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # added: the spec's five files, written from a synthetic task of its modalities
    data, diagnoses, held_out, held_out_labels = spec_data({'patient_vitals': (8, 'tabular'), 'medical_images': (16, 'image'),
                                 'clinical_notes': (16, 'text'), 'lab_results': (8, 'tabular'),
                                 'genetic_data': (12, 'tabular')}, 240, n_classes=12)  # spec: any size
    np.savetxt('vitals.csv', data['patient_vitals'], delimiter=',')
    np.save('scans.npy', data['medical_images'])
    h5py = pytest.importorskip("h5py")  # the [h5] extra
    with h5py.File('notes.h5', 'w') as handle:
        handle['clinical_notes'] = data['clinical_notes']
    np.savetxt('lab_data.csv', data['lab_results'], delimiter=',')
    np.save('genetics.npy', data['genetic_data'])

    # Medical AI with strict accuracy requirements
    medical_model = create_model_from_files({
        'patient_vitals': 'vitals.csv',
        'medical_images': 'scans.npy',
        'clinical_notes': 'notes.h5',
        'lab_results': 'lab_data.csv',
        'genetic_data': 'genetics.npy'
    }, labels=diagnoses)  # added: the spec's call has no labels
    medical_model.create_ensemble(n_bags=3)  # added: the spec trains the default 20 bags

    # Medical-grade training configuration
    medical_training = {
        'task_type': 'classification',
        'num_classes': 12,  # Disease categories
        'epochs': 3,  # spec: 200
        'early_stopping_patience': 30,
        'validation_split': 0.3,
        'cross_validation_folds': 3,  # spec: 10 folds

        # Enhanced cross-modal learning for medical data
        'enable_denoising': True,
        'denoising_weight': 0.2,
        'denoising_objectives': ['reconstruction', 'alignment', 'consistency', 'information'],

        # Conservative optimization for stability
        'optimizer_type': 'adamw',
        'learning_rate': 5e-4,
        'scheduler_type': 'plateau',
        'gradient_clipping': 0.5,

        # Comprehensive validation
        'enable_progressive_learning': True,
        'interpretability_required': True,
        'regulatory_compliance': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    }

    # Train medical ensemble
    medical_learners = medical_model.train_ensemble(**medical_training)

    # Medical validation report
    medical_report = medical_model.get_medical_validation_report(
        held_out, held_out_labels)  # added: held-out samples to score (the spec passes none)
    print("🏥 Medical AI Training Results:")
    print(f"  Clinical Accuracy: {medical_report['clinical_accuracy']:.4f}")
    print(f"  Sensitivity: {medical_report['sensitivity']:.4f}")
    print(f"  Specificity: {medical_report['specificity']:.4f}")
    print(f"  AUROC: {medical_report['auroc']:.4f}")
    print(f"  Cross-Modal Robustness: {medical_report['robustness_score']:.3f}")
    print(f"  Regulatory Compliance: {medical_report['compliance_status']}")

    # Feature importance for clinical interpretation
    for modality, importance in medical_report['clinical_importance'].items():
        print(f"  {modality} Clinical Relevance: {importance:.3f}")

    out = capsys.readouterr().out
    assert medical_learners
    assert_numbers(out, "Clinical Accuracy", "Sensitivity", "Specificity", "AUROC", "Cross-Modal Robustness")
    assert_texts(out, "Regulatory Compliance")
    assert_numbers(out, *[f"{m} Clinical Relevance" for m in medical_report['clinical_importance']])


@pytest.mark.slow  # trains six-modality ensembles with measured selection: 20-160 s on 2 shared cores
def test_autonomous_vehicle_perception(capsys):
    # added: the spec's arrays, from a synthetic task of its sensors
    data, scenarios, held_out, held_out_labels = spec_data({'lidar_points': ((16, 4), 'sequence'), 'camera_rgb': ((3, 8, 8), 'image'),
                                 'radar_signals': ((8, 4), 'sequence'), 'gps_imu': (9, 'tabular'),
                                 'weather_sensors': (6, 'tabular'), 'map_data': (8, 'tabular')},
                                240, n_classes=15)  # spec: any size
    lidar_data, camera_frames, radar_data = data['lidar_points'], data['camera_rgb'], data['radar_signals']
    navigation_data, weather_data, hd_map_features = data['gps_imu'], data['weather_sensors'], data['map_data']

    # Autonomous vehicle perception with real-time constraints
    av_model = create_model_from_arrays({
        'lidar_points': lidar_data,      # 3D point clouds
        'camera_rgb': camera_frames,     # Visual perception
        'radar_signals': radar_data,     # Distance/velocity
        'gps_imu': navigation_data,      # Position/orientation
        'weather_sensors': weather_data, # Environmental conditions
        'map_data': hd_map_features     # High-definition maps
    }, labels=scenarios)  # added: the spec's call has no labels
    av_model.create_ensemble(n_bags=3)  # added: the spec trains the default 20 bags

    # Safety-critical training configuration
    av_training = {
        'task_type': 'classification',
        'num_classes': 15,  # Driving scenarios
        'epochs': 2,  # spec: 100
        'batch_size': 128,  # Large batch for stability

        # Real-time performance optimization
        'mixed_precision': True,
        'compile_model': False,  # spec: True; here False: torch.compile takes 45-130 s per learner on this CPU (tests/plugins/test_neural_training.py compiles)
        'gradient_accumulation_steps': 1,
        'num_workers': 16,

        # Robust cross-modal learning
        'enable_denoising': True,
        'denoising_weight': 0.15,
        'denoising_strategy': 'curriculum',
        'denoising_objectives': ['reconstruction', 'consistency'],

        # Aggressive optimization for real-time inference
        'optimizer_type': 'sgd',
        'learning_rate': 1e-2,
        'scheduler_type': 'onecycle',
        'warmup_epochs': 1,  # spec: 5 (of 100 epochs)

        # Safety validation
        'validation_split': 0.25,
        'safety_critical_validation': True,
        'adversarial_testing': True,
        'worst_case_analysis': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    }

    # Train autonomous vehicle ensemble
    av_learners = av_model.train_ensemble(**av_training)

    # Safety validation report
    safety_report = av_model.get_safety_validation_report(
        held_out, held_out_labels)  # added: held-out samples to score (the spec passes none)
    print("🚗 Autonomous Vehicle Training Results:")
    print(f"  Driving Accuracy: {safety_report['driving_accuracy']:.4f}")
    print(f"  Reaction Time: {safety_report['reaction_time']:.3f}ms")
    print(f"  Safety Score: {safety_report['safety_score']:.3f}/5.0")
    print(f"  Worst-Case Performance: {safety_report['worst_case_accuracy']:.4f}")
    print(f"  Sensor Redundancy: {safety_report['redundancy_level']}")

    # Real-time performance analysis
    print(f"\n⚡ Real-Time Performance:")
    print(f"  Inference Latency: {safety_report['inference_latency']:.2f}ms")
    print(f"  Throughput: {safety_report['throughput']:.1f} FPS")
    print(f"  Memory Footprint: {safety_report['memory_footprint']:.1f}MB")
    print(f"  Power Consumption: {safety_report['power_usage']:.1f}W")

    out = capsys.readouterr().out
    assert av_learners
    assert_numbers(out, "Driving Accuracy", "Reaction Time", "Safety Score", "Worst-Case Performance",
                   "Inference Latency", "Throughput", "Memory Footprint", "Power Consumption")
    assert_texts(out, "Sensor Redundancy")
    if not torch.cuda.is_available():  # no power meter on a CPU machine: the reason, never a number
        assert value_of(out, "Power Consumption").startswith("n/a (")


@pytest.mark.slow  # trains six-modality ensembles with measured selection: 20-160 s on 2 shared cores
def test_financial_trading(capsys):
    # added: the spec's arrays, from a synthetic regression task of its sources
    data, targets, held_out, held_out_targets = spec_data({'price_data': ((10, 5), 'sequence'), 'order_book': (12, 'tabular'),
                               'news_sentiment': (16, 'text'), 'macro_indicators': (6, 'tabular'),
                               'technical_indicators': (8, 'tabular'), 'alternative_data': (6, 'tabular')},
                              240, task_type='regression')  # spec: any size
    ohlcv_features, order_book_data, news_embeddings = data['price_data'], data['order_book'], data['news_sentiment']
    macro_data, tech_data, alt_data = data['macro_indicators'], data['technical_indicators'], data['alternative_data']
    scale = 0.01 / np.std(targets)  # added: labels as fractional returns (about 1% a period)
    next_returns, held_out_returns = scale * targets, scale * held_out_targets

    # Financial trading with high-frequency requirements
    trading_model = create_model_from_arrays({
        'price_data': ohlcv_features,        # Price movements
        'order_book': order_book_data,       # Market depth
        'news_sentiment': news_embeddings,   # Market sentiment
        'macro_indicators': macro_data,      # Economic indicators
        'technical_indicators': tech_data,   # Technical analysis
        'alternative_data': alt_data         # Social media, satellite, etc.
    }, labels=next_returns, task_type='regression')  # added: the spec's call has no labels
    trading_model.create_ensemble(n_bags=3)  # added: the spec trains the default 20 bags

    # High-frequency trading configuration
    trading_training = {
        'task_type': 'regression',
        'epochs': 2,  # spec: 50
        'batch_size': 64,  # spec: 256 (of 240 samples here)
        'learning_rate': 1e-3,

        # Speed optimization for high-frequency trading
        'mixed_precision': True,
        'optimizer_type': 'adamw',
        'scheduler_type': 'onecycle',
        'early_stopping_patience': 5,

        # Financial cross-modal learning
        'enable_denoising': True,
        'denoising_weight': 0.1,
        'denoising_objectives': ['alignment', 'consistency'],
        'denoising_strategy': 'adaptive',

        # Financial validation
        'validation_strategy': 'time_series',
        'walk_forward_validation': True,
        'risk_adjusted_metrics': True,
        'market_regime_testing': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    }

    # Train trading ensemble
    trading_learners = trading_model.train_ensemble(**trading_training)

    # Financial performance report
    financial_report = trading_model.get_financial_performance_report(
        held_out, held_out_returns)  # added: held-out samples to score (the spec passes none)
    print("💰 Financial Trading Training Results:")
    print(f"  Prediction Accuracy: {financial_report['prediction_accuracy']:.4f}")
    print(f"  Sharpe Ratio: {financial_report['sharpe_ratio']:.3f}")
    print(f"  Maximum Drawdown: {financial_report['max_drawdown']:.2%}")
    print(f"  Information Ratio: {financial_report['information_ratio']:.3f}")
    print(f"  Market Correlation: {financial_report['market_correlation']:.3f}")

    # Cross-modal market analysis
    print(f"\n📊 Market Intelligence:")
    for data_source, importance in financial_report['data_importance'].items():
        print(f"  {data_source}: {importance:.3f}")
    print(f"  Alternative Data Alpha: {financial_report['alt_data_alpha']:.3f}")
    print(f"  News Impact Factor: {financial_report['news_impact']:.3f}")

    out = capsys.readouterr().out
    assert trading_learners
    assert_numbers(out, "Prediction Accuracy", "Sharpe Ratio", "Maximum Drawdown", "Information Ratio",
                   "Market Correlation", "Alternative Data Alpha", "News Impact Factor",
                   *financial_report['data_importance'])
    drawdown = value_of(out, "Maximum Drawdown")
    assert drawdown.startswith("n/a (") or 0.0 <= abs(float(drawdown.rstrip("%"))) <= 100.0


@pytest.mark.slow  # trains six-modality ensembles with measured selection: 20-160 s on 2 shared cores
def test_ecommerce_personalization(capsys):
    # added: the spec's arrays, from a synthetic multilabel task of its sources
    data, purchased, held_out, held_out_labels = spec_data({'user_profiles': (8, 'tabular'), 'product_features': (16, 'text'),
                                 'behavioral_data': ((6, 4), 'sequence'), 'contextual_data': (4, 'tabular'),
                                 'social_signals': (4, 'tabular'), 'visual_features': (16, 'image')},
                                240, n_classes=10, task_type='multilabel')  # spec: 1000 categories
    user_features, product_data, interaction_data = (data['user_profiles'], data['product_features'],
                                                     data['behavioral_data'])
    context_features, social_data, image_features = (data['contextual_data'], data['social_signals'],
                                                     data['visual_features'])

    # E-commerce recommendation with massive scale
    ecommerce_model = create_model_from_arrays({
        'user_profiles': user_features,      # Demographics, preferences
        'product_features': product_data,    # Product attributes, descriptions
        'behavioral_data': interaction_data, # Clicks, views, purchases
        'contextual_data': context_features, # Time, location, device
        'social_signals': social_data,       # Reviews, ratings, shares
        'visual_features': image_features    # Product images
    }, labels=purchased, task_type='multilabel')  # added: the spec's call has no labels
    ecommerce_model.create_ensemble(n_bags=3)  # added: the spec trains the default 20 bags

    # Large-scale training configuration
    ecommerce_training = {
        'task_type': 'multilabel',
        'num_classes': 10,  # spec: 1000 product categories
        'epochs': 2,  # spec: 30
        'batch_size': 64,  # spec: 1024 (of 240 samples here)

        # Scalability optimization
        'distributed_training': False,  # spec: True (torchrun DDP ranks per learner: too slow for a test)
        'mixed_precision': True,
        'gradient_accumulation_steps': 4,
        'num_workers': 32,

        # Recommendation cross-modal learning
        'enable_denoising': True,
        'denoising_weight': 0.05,  # Lower weight for noisy user data
        'denoising_objectives': ['alignment', 'prediction'],

        # Robust optimization for noisy data
        'optimizer_type': 'adamw',
        'learning_rate': 1e-3,
        'weight_decay': 1e-3,
        'label_smoothing': 0.1,

        # Large-scale validation
        'validation_split': 0.1,  # Smaller split for large datasets
        'online_validation': True,
        'cold_start_testing': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    }

    # Train e-commerce ensemble
    ecommerce_learners = ecommerce_model.train_ensemble(**ecommerce_training)

    # Recommendation performance report
    rec_report = ecommerce_model.get_recommendation_report(
        held_out, held_out_labels)  # added: held-out samples to score (the spec passes none)
    print("🛒 E-Commerce Training Results:")
    print(f"  Recommendation Precision@10: {rec_report['precision_at_10']:.4f}")
    print(f"  Recommendation Recall@10: {rec_report['recall_at_10']:.4f}")
    print(f"  NDCG@10: {rec_report['ndcg_at_10']:.4f}")
    print(f"  Cold Start Performance: {rec_report['cold_start_accuracy']:.4f}")
    print(f"  Diversity Score: {rec_report['diversity_score']:.3f}")

    print(f"\n🎯 Business Metrics:")
    print(f"  Predicted CTR Improvement: {rec_report['ctr_improvement']:.2%}")
    print(f"  Conversion Rate Impact: {rec_report['conversion_impact']:.2%}")
    print(f"  User Engagement Score: {rec_report['engagement_score']:.3f}")

    # Modality contribution analysis
    print(f"\n📊 Recommendation Intelligence:")
    for modality, contribution in rec_report['modality_contributions'].items():
        print(f"  {modality}: {contribution:.3f}")

    out = capsys.readouterr().out
    assert ecommerce_learners
    assert_numbers(out, "Recommendation Precision@10", "Recommendation Recall@10", "NDCG@10",
                   "Cold Start Performance", "Diversity Score", "Predicted CTR Improvement",
                   "Conversion Rate Impact", "User Engagement Score", *rec_report['modality_contributions'])
    # nothing measured the business: the reason, never a made-up number
    assert value_of(out, "Predicted CTR Improvement").startswith("n/a (")


def test_domain_reports_without_held_out_data(model, capsys):
    # the spec calls the domain reports with no data: they score the ensemble's out-of-fold predictions
    # of the training rows, and every report says so
    medical_report = model.get_medical_validation_report(interpretability_required=True)
    print(f"  Clinical Accuracy: {medical_report['clinical_accuracy']:.3f}")
    print(f"  Sensitivity: {medical_report['sensitivity']:.3f}")
    print(f"  Robustness Score: {medical_report['robustness_score']:.3f}")
    out = capsys.readouterr().out
    assert_numbers(out, "Clinical Accuracy", "Sensitivity", "Robustness Score")
    assert medical_report["measured_on"] == "out-of-fold predictions of the training rows"
    # the same rows and combination as the ensemble's out-of-fold headline score
    assert medical_report["clinical_accuracy"] == pytest.approx(model.performance_check()["score"])
    assert 0 < medical_report["n_samples"] <= model.dataset.n_samples
    for row in dict(medical_report)["robustness"].values():  # removing a modality is measured, noising it is not
        assert 0 <= row["accuracy_missing"] <= 1 and row["accuracy_noised"] is None
    assert format(medical_report["robustness"]["text_embeddings"]["kept_noised"], ".3f").startswith(
        "n/a (not measured on out-of-fold predictions")

    held, held_labels = model.synthetic_task.sample(60, random_state=5)
    assert model.get_medical_validation_report(held, held_labels)["measured_on"] == "held-out data"
    with pytest.raises(modalbag.DataError, match="both or neither"):
        model.get_medical_validation_report(held)


# -- Troubleshooting guide ---------------------------------------------------------------------------------

#: The spec runs each solution only when its check finds the problem; here every solution runs, so each
#: call is checked whatever the diagnosis of this small run says.
ALWAYS = True


def test_denoising_convergence_problems(model, capsys):
    # Problem: Denoising loss not converging or dominating main task
    training_diagnostics = model.get_training_diagnostics()

    if training_diagnostics['denoising_issues'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Cross-modal denoising issues detected:")
        for issue in training_diagnostics['denoising_issues']:
            print(f"  {issue['type']}: {issue['description']}")

        # Solution 1: Reduce denoising weight
        model.train_ensemble(
            denoising_weight=0.05,  # vs 0.1
            denoising_strategy='curriculum',  # vs 'fixed'
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 2: Simplify denoising objectives
        model.train_ensemble(
            denoising_objectives=['reconstruction'],  # vs multiple objectives
            denoising_strategy='fixed',
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 3: Use curriculum learning
        model.train_ensemble(
            denoising_strategy='curriculum',
            curriculum_stages=[
                {'epochs': 1, 'denoising_weight': 0.01},  # spec: 20
                {'epochs': 2, 'denoising_weight': 0.05},  # spec: 40
                {'epochs': 3, 'denoising_weight': 0.1}  # spec: 60
            ],
            epochs=3, threads_per_learner=1,  # added: spec trains 100 epochs (the default)
        )
    out = capsys.readouterr().out
    assert isinstance(training_diagnostics['denoising_issues'], list)
    assert out.count(": ") >= len(training_diagnostics['denoising_issues'])
    assert model.get_training_summary()["failed"] == 0


@pytest.mark.slow  # num_gpus=2 starts torchrun ranks for every learner: about a minute on 2 shared cores
def test_memory_and_performance_issues(model, capsys):
    # Problem: Out of memory or slow training
    resource_issues = model.check_resource_constraints()

    if resource_issues['memory_issues'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Memory constraints detected")

        # Solution 1: Reduce batch size and use gradient accumulation
        model.train_ensemble(
            batch_size=16,  # vs 32
            gradient_accumulation_steps=4,  # Effective batch size = 64
            mixed_precision=True,
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 2: Enable model checkpointing and memory cleanup
        model.train_ensemble(
            save_checkpoints=True,
            memory_cleanup_interval=1,  # Clean every 25 epochs  (spec: 25, of 100 epochs)
            keep_best_only=True,
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 3: Use distributed training
        if torch.cuda.device_count() >= 2:  # added: two GPUs are what the solution asks for
            model.train_ensemble(
                distributed_training=True,
                num_gpus=2,
                batch_size=64,  # Split across GPUs
                **SMALL,  # added: spec trains 100 epochs (the default)
            )
        else:  # added: without them, every learner fails and says why (shown on a small model: each failing
            # learner starts torchrun ranks that load the data, tens of seconds at the Quick Start's sizes)
            small = create_synthetic_model({"text": (16, "text"), "meta": (4, "tabular")}, n_samples=120, n_classes=5)
            small.create_ensemble(n_bags=1)
            small.select_base_learners(trainers=["neural"], instantiate=False)
            with pytest.raises(modalbag.TrainingFailedError, match="torch sees no CUDA device"):
                small.train_ensemble(distributed_training=True, num_gpus=2, batch_size=64, **SMALL)
    assert model.get_training_summary()["failed"] == 0
    assert "Memory constraints" in capsys.readouterr().out


@pytest.mark.slow  # torch.compile of every learner's network on CPU: about two minutes on 2 shared cores
def test_memory_and_performance_issues_speed(model, capsys):
    """The same block's second half."""
    resource_issues = model.check_resource_constraints()
    if resource_issues['speed_issues'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Training speed issues detected")

        # Solution: Optimize for speed
        model.train_ensemble(
            mixed_precision=True,
            compile_model=False,  # PyTorch 2.0 compilation; spec: True, here False: torch.compile takes 45-130 s per learner on this CPU
            num_workers=8,
            pin_memory=True,
            optimizer_type='sgd',  # Faster than AdamW
            scheduler_type='onecycle',  # Faster convergence
            **SMALL,  # added: spec trains 100 epochs (the default)
        )
    assert model.get_training_summary()["failed"] == 0
    assert "speed issues" in capsys.readouterr().out


def test_training_instability(model, capsys):
    # Problem: Unstable training, exploding gradients, or poor convergence
    stability_report = model.get_training_stability_report()

    if stability_report['unstable_training'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Training instability detected:")
        for issue in stability_report['issues']:
            print(f"  {issue['type']}: {issue['severity']}")

        # Solution 1: Gradient clipping and learning rate adjustment
        model.train_ensemble(
            gradient_clipping=0.5,  # vs 1.0
            learning_rate=5e-4,     # vs 1e-3
            warmup_epochs=1,        # vs 5  (spec: 10, of 100 epochs)
            scheduler_type='plateau',  # Adaptive scheduling
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 2: More conservative optimization
        model.train_ensemble(
            optimizer_type='adamw',
            weight_decay=1e-3,      # vs 1e-4
            dropout_rate=0.3,       # vs 0.1
            label_smoothing=0.1,    # For classification
            early_stopping_patience=10,  # vs 15
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 3: Progressive learning approach
        model.train_ensemble(
            enable_progressive_learning=True,
            progressive_stages=[
                {'epochs': 1, 'learning_rate': 1e-4, 'frozen_layers': ['encoder']},  # spec: 30 epochs
                {'epochs': 1, 'learning_rate': 5e-4, 'frozen_layers': []},  # spec: 50
                {'epochs': 1, 'learning_rate': 1e-4, 'fine_tuning': True}  # spec: 70
            ],
            epochs=3, threads_per_learner=1,  # added: spec trains 100 epochs (the default)
        )
    out = capsys.readouterr().out
    for issue in stability_report['issues']:
        assert f"{issue['type']}: {issue['severity']}" in out
    assert model.get_training_summary()["failed"] == 0


def test_poor_multimodal_learning(model, capsys):
    # Problem: Cross-modal objectives not improving model performance
    multimodal_analysis = model.get_multimodal_learning_analysis()

    if multimodal_analysis['poor_cross_modal_learning'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Poor cross-modal learning detected:")

        # Solution 1: Balance modality contributions
        modality_weights = model.analyze_modality_importance()
        model.train_ensemble(
            modality_balancing=True,
            modality_weights=modality_weights,
            denoising_modalities=['text', 'image'],  # Focus on important modalities
            **SMALL,  # added: spec trains 100 epochs (the default)
        )
        assert set(model.training_config.denoising_modalities) == {'text_embeddings', 'image_features'}

        # Solution 2: Improve modality alignment
        model.train_ensemble(
            denoising_objectives=['alignment', 'consistency'],
            contrastive_temperature=0.1,  # Stronger alignment
            alignment_weight=0.2,
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 3: Use domain-specific preprocessing
        model.apply_multimodal_preprocessing(
            text_normalization=True,
            image_augmentation=True,
            feature_scaling=True,
            modality_dropout=0.1  # Random modality dropout during training
        )
        model.train_ensemble(**SMALL)  # added: the preprocessing applies from the next training
        model.apply_multimodal_preprocessing()  # added: back to the defaults for the blocks after this one
    assert model.get_training_summary()["failed"] == 0


@pytest.mark.slow  # five trainings, three with 5-fold cross-validation: about a minute on 2 shared cores
def test_validation_and_generalization_issues(model, capsys):
    # Problem: Overfitting, poor generalization, or validation inconsistencies
    validation_report = model.get_validation_report()

    if validation_report['overfitting_detected'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Overfitting detected:")

        # Solution 1: Enhanced regularization
        model.train_ensemble(
            weight_decay=1e-3,           # vs 1e-4
            dropout_rate=0.4,            # vs 0.2
            feature_dropout=0.2,         # Input feature dropout
            early_stopping_patience=8,   # vs 15
            validation_split=0.3,        # vs 0.2
            **SMALL,  # added: spec trains 100 epochs (the default)
        )

        # Solution 2: Cross-validation for robust validation
        # added: the spec asks for stratified folds and time-ordered folds at once; modalbag refuses the pair
        # and says to keep one, so each half runs on its own
        with pytest.raises(ConfigError, match="stratified_validation=true with validation_strategy='time_series'"):
            model.train_ensemble(
                cross_validation_folds=5,
                stratified_validation=True,
                validation_strategy='time_series',  # For temporal data
                **SMALL,  # added: spec trains 100 epochs (the default)
            )
        model.train_ensemble(cross_validation_folds=5, stratified_validation=True, **SMALL)
        model.train_ensemble(cross_validation_folds=5, validation_strategy='time_series', **SMALL)

        # Solution 3: Data augmentation and regularization
        model.train_ensemble(
            enable_data_augmentation=True,
            augmentation_strategy='multimodal',
            noise_injection=0.1,
            mixup_alpha=0.2,              # Mixup regularization
            cutmix_alpha=0.3,             # CutMix for images
            **SMALL,  # added: spec trains 100 epochs (the default)
        )
    assert model.get_training_summary()["failed"] == 0
    assert "Overfitting detected" in capsys.readouterr().out


def test_poor_generalization_remedies(model):
    validation_report = model.get_validation_report()
    if validation_report['poor_generalization'] or ALWAYS:  # added: `or ALWAYS`
        print("⚠️ Poor generalization detected:")

        # Solution: Domain adaptation and robust training
        model.train_ensemble(
            domain_adaptation=True,
            target_data=model.synthetic_task.sample(100, 7)[0],  # added: the target domain's unlabelled rows
            adversarial_training=True,
            test_time_augmentation=True,
            ensemble_diversity_weight=0.1,
            knowledge_distillation=True,
            **SMALL,  # added: spec trains 100 epochs (the default)
        )
    assert model.get_training_summary()["failed"] == 0


def test_domain_adaptation(model):
    # added: the spec's domain_adaptation=True needs the target domain's unlabelled rows, which it
    # does not give; without them training stops before it starts, saying what to pass
    model.target_data = None  # added: forget the rows test_poor_generalization_remedies gave the model
    with pytest.raises(ConfigError, match=r"pass target_data=\{modality: array\}"):
        model.train_ensemble(domain_adaptation=True, **SMALL)
    model.train_ensemble(domain_adaptation=True, target_data=model.synthetic_task.sample(100, 7)[0], **SMALL)
    assert model.get_training_summary()["failed"] == 0


# -- Best practices ------------------------------------------------------------------------------------


def choose_training_strategy(application_requirements, data_characteristics):
    """Choose optimal training strategy based on requirements and data"""

    strategy = {
        'epochs': 100,
        'batch_size': 32,
        'learning_rate': 1e-3,
        'optimizer_type': 'adamw',
        'scheduler_type': 'cosine_restarts'
    }

    # Real-time applications
    if application_requirements.get('real_time_required', False):
        strategy.update({
            'epochs': 50,
            'batch_size': 128,
            'mixed_precision': True,
            'optimizer_type': 'sgd',
            'scheduler_type': 'onecycle',
            'enable_denoising': False  # Skip for speed
        })

    # High accuracy requirements
    elif application_requirements.get('accuracy_critical', False):
        strategy.update({
            'epochs': 200,
            'early_stopping_patience': 30,
            'cross_validation_folds': 10,
            'enable_denoising': True,
            'denoising_weight': 0.2,
            'validation_split': 0.3
        })

    # Large-scale applications
    elif data_characteristics.get('large_scale', False):
        strategy.update({
            'batch_size': 256,
            'distributed_training': True,
            'gradient_accumulation_steps': 4,
            'num_workers': 16,
            'mixed_precision': True
        })

    # Limited resources
    elif application_requirements.get('resource_constrained', False):
        strategy.update({
            'batch_size': 16,
            'gradient_accumulation_steps': 4,
            'mixed_precision': True,
            'epochs': 30,
            'enable_denoising': False
        })

    return strategy


def test_training_strategy_selection():
    # Usage examples
    medical_strategy = choose_training_strategy(
        application_requirements={'accuracy_critical': True},
        data_characteristics={'multimodal': True, 'small_dataset': True}
    )

    mobile_strategy = choose_training_strategy(
        application_requirements={'real_time_required': True, 'resource_constrained': True},
        data_characteristics={'single_modality': True}
    )

    enterprise_strategy = choose_training_strategy(
        application_requirements={'production_deployment': True},
        data_characteristics={'large_scale': True, 'multimodal': True}
    )
    # added: each strategy is a configuration modalbag accepts as it is
    for strategy in (medical_strategy, mobile_strategy, enterprise_strategy):
        result = modalbag.validate_training_config(strategy)
        assert result['valid'], result['issues']


def quality_assured_training(model, training_requirements):
    """Perform training with comprehensive quality checks"""

    # Pre-training validation
    print("🔍 Pre-training validation...")
    pipeline_status = model.get_pipeline_status()

    if not pipeline_status['learners_selected']:
        print("❌ Base learners not selected. Selecting now...")
        model.select_base_learners(
            task_type=training_requirements['task_type'],
            optimization_strategy='balanced'
        )

    # Training configuration validation
    training_config = validate_training_config(training_requirements)
    if not training_config['valid']:
        print(f"❌ Invalid training configuration: {training_config['issues']}")
        return False

    # Resource availability check
    resource_check = model.check_training_resources(training_requirements)
    if not resource_check['sufficient']:
        print(f"⚠️ Insufficient resources: {resource_check['limitations']}")
        training_requirements = optimize_for_resources(training_requirements, resource_check)

    # Execute training with monitoring
    print("🚀 Starting quality-assured training...")
    try:
        trained_learners = model.train_ensemble(**training_requirements)

        # Post-training validation
        print("✅ Post-training validation...")
        validation_results = model.validate_training_results(trained_learners)

        # Performance validation
        if validation_results['average_performance'] < training_requirements.get('min_performance', 0.7):
            print(f"⚠️ Performance below threshold: {validation_results['average_performance']:.3f}")
            return False

        # Cross-modal validation (if applicable)
        if training_requirements.get('enable_denoising', False):
            cross_modal_results = model.validate_cross_modal_learning()
            if cross_modal_results['effectiveness'] < 0.1:
                print(f"⚠️ Poor cross-modal learning: {cross_modal_results['effectiveness']:.3f}")

        # Training stability validation
        stability_score = model.assess_training_stability()
        if stability_score < 0.8:
            print(f"⚠️ Training instability detected: {stability_score:.3f}")

        print(f"✅ Quality validation passed! Trained {len(trained_learners)} learners successfully")
        return True

    except Exception as e:
        print(f"💥 Training failed: {e}")
        return False


def validate_training_config(config):
    """Validate training configuration"""
    issues = []

    # Basic parameter validation
    if config.get('epochs', 0) <= 0:
        issues.append("Epochs must be positive")

    if config.get('batch_size', 0) <= 0:
        issues.append("Batch size must be positive")

    if config.get('learning_rate', 0) <= 0:
        issues.append("Learning rate must be positive")

    # Cross-modal denoising validation
    if config.get('enable_denoising', False):
        if config.get('denoising_weight', 0) <= 0:
            issues.append("Denoising weight must be positive when denoising is enabled")

        valid_objectives = {'reconstruction', 'alignment', 'consistency', 'information', 'prediction'}
        invalid_objectives = set(config.get('denoising_objectives', [])) - valid_objectives
        if invalid_objectives:
            issues.append(f"Invalid denoising objectives: {invalid_objectives}")

    return {'valid': len(issues) == 0, 'issues': issues}


def test_quality_assurance_workflow(model, capsys):
    # Usage
    success = quality_assured_training(model, {
        'task_type': 'classification',
        'num_classes': 5,
        'epochs': 2,  # spec: 100
        'enable_denoising': True,
        'min_performance': 0.8,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    })
    out = capsys.readouterr().out
    # the spec's own validate_training_config wants batch_size, learning_rate and denoising_weight, which its
    # call omits
    assert out.splitlines() == ["🔍 Pre-training validation...",
                                ("❌ Invalid training configuration: ['Batch size must be positive', "
                                 "'Learning rate must be positive', "
                                 "'Denoising weight must be positive when denoising is enabled']")]
    assert success is False
    # added: the same call with the three values it asks for, so the rest of the workflow runs
    success = quality_assured_training(model, {
        'task_type': 'classification', 'num_classes': 5, 'epochs': 2, 'enable_denoising': True,
        'min_performance': 0.8, 'threads_per_learner': 1, 'batch_size': 32, 'learning_rate': 1e-3,
        'denoising_weight': 0.1})
    out = capsys.readouterr().out
    assert "🚀 Starting quality-assured training..." in out and "✅ Post-training validation..." in out
    assert "💥 Training failed" not in out, out
    last = out.splitlines()[-1]
    assert (success and last.startswith("✅ Quality validation passed! Trained")) or (
        not success and last.startswith("⚠️ Performance below threshold: "))


try:
    import psutil
except ImportError:  # added: the spec's block imports psutil for one number, which modalbag does not need
    psutil = SimpleNamespace(virtual_memory=lambda: SimpleNamespace(
        total=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")))


def optimize_training_performance(model, target_performance):
    """Comprehensive performance optimization"""

    optimizations = {
        'hardware_optimization': False,
        'algorithm_optimization': False,
        'data_optimization': False,
        'monitoring_optimization': False
    }

    # 1. Hardware optimization
    print("1️⃣ Optimizing hardware utilization...")
    hardware_config = {
        'mixed_precision': True,
        'compile_model': False,  # spec: True; here False: torch.compile takes 45-130 s per learner on this CPU (tests/plugins/test_neural_training.py compiles)
        'pin_memory': True,
        'num_workers': min(16, multiprocessing.cpu_count()),
        'persistent_workers': True
    }

    if torch.cuda.is_available():
        hardware_config.update({
            'device': 'cuda',
            'cudnn_benchmark': True,
            'tf32': True  # Tensor Float-32 for A100
        })

    optimizations['hardware_optimization'] = True
    print("   ✅ Hardware optimization configured")

    # 2. Algorithm optimization
    print("2️⃣ Optimizing training algorithms...")
    algorithm_config = {
        'optimizer_type': 'adamw',
        'scheduler_type': 'cosine_restarts',
        'gradient_clipping': 1.0,
        'gradient_accumulation_steps': 1
    }

    # Adaptive batch size based on memory
    memory_gb = psutil.virtual_memory().total / (1024**3)
    if memory_gb > 32:
        algorithm_config['batch_size'] = 128
    elif memory_gb > 16:
        algorithm_config['batch_size'] = 64
    else:
        algorithm_config['batch_size'] = 32
        algorithm_config['gradient_accumulation_steps'] = 2

    optimizations['algorithm_optimization'] = True
    print("   ✅ Algorithm optimization configured")

    # 3. Data optimization
    print("3️⃣ Optimizing data pipeline...")
    data_config = {
        'prefetch_factor': 2,
        'persistent_workers': True,
        'drop_last': True,  # For consistent batch sizes
        'shuffle': True
    }

    # Enable data augmentation if beneficial
    if target_performance.get('enable_augmentation', True):
        data_config.update({
            'enable_data_augmentation': True,
            'augmentation_strategy': 'balanced'
        })

    optimizations['data_optimization'] = True
    print("   ✅ Data pipeline optimization configured")

    # 4. Monitoring optimization
    print("4️⃣ Optimizing monitoring and logging...")
    monitoring_config = {
        'log_interval': 50,  # Reduce logging frequency
        'eval_interval': 5,  # Less frequent evaluation
        'profile_training': False,  # Disable profiling in production
        'save_checkpoints': True,
        'checkpoint_interval': 25
    }

    optimizations['monitoring_optimization'] = True
    print("   ✅ Monitoring optimization configured")

    # Combine all optimizations
    optimized_config = {
        **hardware_config,
        **algorithm_config,
        **data_config,
        **monitoring_config,
        **target_performance
    }

    print(f"\n📊 Optimization Summary:")
    for category, status in optimizations.items():
        print(f"  {category}: {'✅' if status else '❌'}")

    return optimized_config


@pytest.mark.slow  # trains a full ensemble with the checklist's options
def test_performance_optimization_checklist(model, capsys):
    # Usage
    optimized_config = optimize_training_performance(model, {
        'task_type': 'classification',
        'num_classes': 5,  # spec: 10, but its model (the Quick Start's) has 5 classes, which modalbag checks
        'epochs': 2,  # spec: 100
        'enable_denoising': True,
        'threads_per_learner': 1,  # added: one thread per learner on the shared test cores
    })

    # Train with optimized configuration
    trained_learners = model.train_ensemble(**optimized_config)

    out = capsys.readouterr().out
    for category in ('hardware_optimization', 'algorithm_optimization', 'data_optimization',
                     'monitoring_optimization'):
        assert f"  {category}: ✅" in out
    assert trained_learners and model.get_training_summary()["failed"] == 0


def test_performance_optimization_with_the_spec_class_count(model):
    """The spec's call passes num_classes=10 for the Quick Start's 5-class model: refused, with why."""
    with pytest.raises(modalbag.DataError, match="num_classes=10 but the labels hold 5 classes"):
        model.train_ensemble(task_type='classification', num_classes=10, **SMALL)


# -- API reference -----------------------------------------------------------------------------------------


def test_api_reference_names(model):
    """The five listings' names, called the way they are declared."""
    pipeline = modalbag.create_training_pipeline(task_type="classification", num_classes=5, enable_denoising=True,
                                                 epochs=50)
    assert isinstance(pipeline, modalbag.EnsembleTrainingPipeline)
    config = modalbag.TrainingConfig()  # AdvancedTrainingConfig's defaults
    assert (config.epochs, config.batch_size, config.learning_rate, config.weight_decay) == (100, 32, 1e-3, 1e-4)
    assert (config.enable_denoising, config.denoising_weight, config.denoising_strategy) == (True, 0.1, "adaptive")
    assert config.denoising_objectives == ("reconstruction", "alignment")
    assert (config.optimizer_type, config.scheduler_type, config.gradient_clipping) == ("adamw", "cosine_restarts", 1.0)
    assert (config.early_stopping_patience, config.validation_split, config.cross_validation_folds) == (15, 0.2, 0)
    record = next(r for learner in model.learners.values() for r in learner.records)  # ComprehensiveTrainingMetrics
    for name in ("epoch", "train_loss", "val_loss", "accuracy", "f1_score", "mse", "modal_reconstruction_loss",
                 "modal_alignment_score", "modal_consistency_score", "training_time", "memory_usage", "learning_rate"):
        getattr(record, name)
    assert modalbag.AdvancedCrossModalDenoisingLoss is not None
