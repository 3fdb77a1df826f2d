"""modalbag: multimodal ensembles that stay accurate when modalities go missing.

The public API. Everything a user or a plugin author needs is importable from here; the modules
behind it may move.
"""

from modalbag.bags import Bag, EnsembleConfig
from modalbag.config import TrainingConfig, validate_training_config
from modalbag.data import ModalitySpec, MultimodalDataset
from modalbag.ensemble import PredictionResult
from modalbag.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DuplicatePluginError,
    MissingExtraError,
    MissingPluginError,
    ModalbagError,
    NotFittedError,
    NotPicklableError,
    PluginError,
    PluginLoadError,
    TrainingDivergedError,
    UnknownConfigKeyError,
    UnknownPluginError,
    WorkerLostError,
)
from modalbag.fit import Control, FitState, StashKey
from modalbag.markers import NAME, hookimpl, hookspec
from modalbag.persistence import load_ensemble
from modalbag.model import (
    MultiModalEnsembleModel,
    TrainingFailedError,
    create_model_from_arrays,
    create_model_from_files,
    create_synthetic_model,
)
from modalbag.records import EpochRecord, LearnerSpec, TrainedLearner
from modalbag.registry import Catalog, PluginInfo, available_plugins, default_catalog, load_plugin, register_plugin
from modalbag.runlog import read_records
from modalbag.robustness import EnsembleScorer, modality_ablation
from modalbag.selection import BagProfile, LearnerProposal
from modalbag.config_files import RunConfig, load_run_config
from modalbag.pipeline import EnsembleTrainingPipeline
from modalbag.workflows import (
    QualityReport,
    Recommendation,
    choose_training_strategy,
    create_training_pipeline,
    describe_data,
    optimize_training_performance,
    quality_assured_training,
)

__version__ = "0.1.0"

__all__ = [
    "NAME", "Bag", "BagProfile", "Catalog", "ConfigError", "Control", "DataError", "DuplicatePluginError",
    "EnsembleConfig", "EpochRecord", "FitState", "LearnerProposal", "LearnerSpec", "MissingExtraError", "MissingPluginError",
    "ModalbagError", "ModalitySpec", "MultiModalEnsembleModel", "MultimodalDataset", "NotFittedError", "NotPicklableError",
    "PluginError", "PluginInfo", "PluginLoadError", "PredictionResult", "StashKey", "TrainedLearner",
    "TrainingConfig", "TrainingDivergedError", "TrainingFailedError", "UnknownConfigKeyError",
    "UnknownPluginError", "WorkerLostError", "available_plugins", "create_model_from_arrays", "create_model_from_files",
    "create_synthetic_model", "default_catalog", "hookimpl", "hookspec", "load_plugin", "read_records",
    "register_plugin",
    "EnsembleScorer", "modality_ablation",
    "validate_training_config",
    "ArtifactError", "load_ensemble",
    "EnsembleTrainingPipeline", "QualityReport", "Recommendation", "RunConfig", "choose_training_strategy",
    "create_training_pipeline", "describe_data", "load_run_config", "optimize_training_performance",
    "quality_assured_training",
]
