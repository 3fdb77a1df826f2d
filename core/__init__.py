"""modalbag: multimodal ensembles that stay accurate when modalities go missing.

The public API. Everything a user or a plugin author needs is importable from here; the modules
behind it may move.
"""

from modalbag.bags import Bag, EnsembleConfig
from modalbag.config import TrainingConfig, validate_training_config
from modalbag.data import ModalitySpec, MultimodalDataset
from modalbag.ensemble import PredictionResult
from modalbag.errors import (
    ConfigError,
    DataError,
    DuplicatePluginError,
    MissingPluginError,
    ModalbagError,
    NotFittedError,
    PluginError,
    PluginLoadError,
    TrainingDivergedError,
    UnknownConfigKeyError,
    UnknownPluginError,
)
from modalbag.fit import Control, FitState, StashKey
from modalbag.markers import NAME, hookimpl, hookspec
from modalbag.model import (
    MultiModalEnsembleModel,
    TrainingFailedError,
    create_model_from_arrays,
    create_model_from_files,
    create_synthetic_model,
)
from modalbag.records import EpochRecord, LearnerSpec, TrainedLearner
from modalbag.registry import Catalog, PluginInfo, available_plugins, default_catalog, load_plugin, register_plugin
from modalbag.selection import BagProfile, LearnerProposal

__version__ = "0.1.0"

__all__ = [
    "NAME", "Bag", "BagProfile", "Catalog", "ConfigError", "Control", "DataError", "DuplicatePluginError",
    "EnsembleConfig", "EpochRecord", "FitState", "LearnerProposal", "LearnerSpec", "MissingPluginError",
    "ModalbagError", "ModalitySpec", "MultiModalEnsembleModel", "MultimodalDataset", "NotFittedError",
    "PluginError", "PluginInfo", "PluginLoadError", "PredictionResult", "StashKey", "TrainedLearner",
    "TrainingConfig", "TrainingDivergedError", "TrainingFailedError", "UnknownConfigKeyError",
    "UnknownPluginError", "available_plugins", "create_model_from_arrays", "create_model_from_files",
    "create_synthetic_model", "default_catalog", "hookimpl", "hookspec", "load_plugin", "register_plugin",
    "validate_training_config",
]
