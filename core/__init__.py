"""modalbag: multimodal ensembles that stay accurate when modalities go missing.

The public API. Everything a user or a plugin author needs is importable from here; the modules
behind it may move.
"""

from modalbag.api.model import (
    MultiModalEnsembleModel,
    TrainingFailedError,
    create_model_from_arrays,
    create_model_from_files,
    create_synthetic_model,
    load_ensemble,
)
from modalbag.api.pipeline import EnsembleTrainingPipeline
from modalbag.api.run_config import RunConfig, load_run_config
from modalbag.api.workflows import (
    QualityReport,
    Recommendation,
    check_training_resources,
    choose_training_strategy,
    create_training_pipeline,
    describe_data,
    optimize_for_resources,
    optimize_training_performance,
    quality_assured_training,
)
from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag, EnsembleConfig
from modalbag.data.dataset import MultimodalDataset
from modalbag.ensemble.ensemble import PredictionResult
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
    RunDirectoryBusyError,
    StorageError,
    TrainingDivergedError,
    UnknownConfigKeyError,
    UnknownPluginError,
    WorkerLostError,
)
from modalbag.kernel.components import validate_training_config
from modalbag.kernel.fit import Control, FitState, StashKey
from modalbag.kernel.markers import NAME, hookimpl, hookspec
from modalbag.kernel.modalities import ModalitySpec
from modalbag.kernel.proposals import BagProfile, LearnerProposal
from modalbag.kernel.records import EpochRecord, LearnerSpec, TrainedLearner
from modalbag.kernel.registry import (
    Catalog,
    PluginInfo,
    available_plugins,
    default_catalog,
    load_plugin,
    register_plugin,
)
from modalbag.kernel.runlog import read_records
from modalbag.reports.robustness import EnsembleScorer, modality_ablation
from modalbag.version import __version__



def __getattr__(name: str) -> object:
    """Names whose modules import torch, loaded on first use so ``import modalbag`` stays light."""
    if name == "AdvancedCrossModalDenoisingLoss":
        from modalbag.denoising.objectives import AdvancedCrossModalDenoisingLoss  # imports torch: on first use

        return AdvancedCrossModalDenoisingLoss
    raise AttributeError(f"module 'modalbag' has no attribute {name!r}")


__all__ = [
    "AdvancedCrossModalDenoisingLoss",
    "NAME",
    "ArtifactError",
    "Bag",
    "BagProfile",
    "Catalog",
    "ConfigError",
    "Control",
    "DataError",
    "DuplicatePluginError",
    "EnsembleConfig",
    "EnsembleScorer",
    "EnsembleTrainingPipeline",
    "EpochRecord",
    "FitState",
    "LearnerProposal",
    "LearnerSpec",
    "MissingExtraError",
    "MissingPluginError",
    "ModalbagError",
    "ModalitySpec",
    "MultiModalEnsembleModel",
    "MultimodalDataset",
    "NotFittedError",
    "NotPicklableError",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PredictionResult",
    "QualityReport",
    "Recommendation",
    "RunConfig",
    "RunDirectoryBusyError",
    "StashKey",
    "StorageError",
    "TrainedLearner",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingFailedError",
    "UnknownConfigKeyError",
    "UnknownPluginError",
    "WorkerLostError",
    "__version__",
    "available_plugins",
    "check_training_resources",
    "choose_training_strategy",
    "create_model_from_arrays",
    "create_model_from_files",
    "create_synthetic_model",
    "create_training_pipeline",
    "default_catalog",
    "describe_data",
    "hookimpl",
    "hookspec",
    "load_ensemble",
    "load_plugin",
    "load_run_config",
    "modality_ablation",
    "optimize_for_resources",
    "optimize_training_performance",
    "quality_assured_training",
    "read_records",
    "register_plugin",
    "validate_training_config",
]
