"""`TrainingConfig`: every training option, its default, its check and its help text.

Parse outside data with `TrainingConfig.from_dict` / `from_toml`: an unknown key is an error naming
the closest valid key. Keys that belong to one plugin (``betas``, ``momentum``, ``T_mult`` ...) are
kept in ``plugin_options`` and validated by that plugin's own options class when it is active.
The field metadata (``help``, ``activates``) drives the generated configuration reference and the
engine's assembly of the active plugin set.
"""

from __future__ import annotations

import importlib.util
import math
import tomllib
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any

import attrs
from attrs import validators as v

from modalbag.config.spec_keys import translate as translate_spec_keys
from modalbag.config.stages import parse_stages
from modalbag.config.validators import at_least_0_below_1, non_negative, positive, seed
from modalbag.errors import ConfigError, UnknownConfigKeyError, close_matches

TASK_TYPES = ("classification", "regression", "multilabel")
DENOISING_STRATEGIES = ("fixed", "adaptive", "curriculum")
NO_SCHEDULER = ("none", "constant")
VALIDATION_STRATEGIES = ("random", "stratified", "time_series")
DOMAIN_ADAPTATION = ("coral", "dann")
#: ``domain_adaptation_weight`` when it is None, per method.
DOMAIN_ADAPTATION_WEIGHTS = {"coral": 1.0, "dann": 0.3}


def _opt(default: Any, help: str, *, validator: Any = None, converter: Any = None,
         category: str = "core", activates: tuple[str, str, Callable[[Any], bool]] | None = None) -> Any:
    meta = {"help": help, "category": category}
    if activates is not None:
        meta["activates"] = activates
    kwargs: dict[str, Any] = {"metadata": meta, "validator": validator, "converter": converter}
    if isinstance(default, (list, dict)):
        kwargs["factory"] = type(default)
        if converter is not None:
            kwargs["factory"] = lambda d=default: converter(d)
    else:
        kwargs["default"] = default
    return attrs.field(**kwargs)


def _n_jobs(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value == 0 or value < -1:
        raise ValueError(f"{attribute.name} must be >= 1, or -1 for one per core, got {value!r}")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _optional_number(value: Any) -> Any:
    return None if value is None else _number(value)


def _domain_adaptation(value: Any) -> Any:
    """The spec's ``domain_adaptation=True`` is CORAL (no extra parameters to choose); False is off."""
    if value is True:
        return "coral"
    if value is False:
        return None
    return value.lower() if isinstance(value, str) else value


def _domain_adaptation_choice(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value not in DOMAIN_ADAPTATION:
        raise ValueError(f"must be 'coral', 'dann', true (CORAL) or None (off), got {value!r}")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    out = tuple(value)
    if not all(isinstance(x, str) for x in out):
        raise TypeError(f"expected a list of names, got {value!r}")
    return out


def _class_weights(value: Any) -> tuple[float, ...] | dict[int, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {int(k): float(w) for k, w in value.items()}
    return tuple(float(w) for w in value)


def _stages(value: Any) -> tuple[Mapping[str, Any], ...]:
    stages = tuple(dict(stage) for stage in value)
    last = 0
    for i, stage in enumerate(stages):
        unknown = set(stage) - {"epochs", "objectives", "denoising_weight"}
        if unknown:
            raise ValueError(f"curriculum stage {i} has unknown keys {sorted(unknown)}; "
                             f"use epochs, objectives, denoising_weight")
        epochs = stage.get("epochs")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= last:
            raise ValueError(f"curriculum stage {i}: 'epochs' is the stage's last epoch and must be an "
                             f"integer above the previous stage's ({last}), got {epochs!r}")
        last = epochs
        if "objectives" in stage:
            stage["objectives"] = list(_names(stage["objectives"]))
        if "denoising_weight" in stage:
            stage["denoising_weight"] = float(_number(stage["denoising_weight"]))
    return stages


_when_true: Callable[[Any], bool] = bool


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """How an ensemble trains. Defaults follow the spec's configuration reference."""

    # -- core --------------------------------------------------------------------------------------
    epochs: int = _opt(100, "Maximum training epochs per neural learner.", converter=_integer, validator=positive)
    batch_size: int = _opt(32, "Training batch size.", converter=_integer, validator=positive)
    learning_rate: float = _opt(1e-3, "Initial (peak) learning rate.", converter=_number, validator=positive)
    weight_decay: float = _opt(1e-4, "L2 / decoupled weight decay.", converter=_number, validator=non_negative)
    task_type: str = _opt("classification", "classification, regression or multilabel.",
                          category="task", validator=v.in_(TASK_TYPES))
    num_classes: int | None = _opt(None, "Output classes (labels for multilabel); None infers it from the labels.",
                                   category="task", converter=attrs.converters.optional(_integer),
                                   validator=v.optional(positive))
    class_weights: Any = _opt(None, "Per-class loss weights: a list by class index or a {class: weight} mapping.",
                              category="task", converter=_class_weights)
    label_smoothing: float = _opt(0.0, "Label smoothing for classification (and each label of a multilabel "
                                       "task: targets y*(1-eps)+eps/2), in neural learners.", category="task",
                                  converter=_number, validator=at_least_0_below_1)
    # -- denoising ---------------------------------------------------------------------------------
    enable_denoising: bool = _opt(True, "Train with the cross-modal denoising objectives.",
                                  category="denoising", converter=_boolean)
    denoising_weight: float = _opt(0.1, "Weight of the denoising loss relative to the task loss.",
                                   category="denoising", converter=_number, validator=non_negative)
    denoising_strategy: str = _opt("adaptive", "Weighting strategy plugin: fixed, adaptive or curriculum.",
                                   category="denoising", validator=v.instance_of(str))
    denoising_objectives: tuple[str, ...] = _opt(["reconstruction", "alignment"],
                                                 "Names of the denoising objective plugins to use.",
                                                 category="denoising", converter=_names)
    denoising_modalities: tuple[str, ...] = _opt([], "Modalities the objectives act on, by name or by type ('text': "
                                                     "every text modality); empty: all.",
                                                 category="denoising", converter=_names)
    curriculum_stages: tuple[Mapping[str, Any], ...] = _opt(
        [], "Curriculum stages, each {'epochs': last epoch of the stage, 'objectives': [...], "
            "'denoising_weight': w}; empty: objectives added one by one over the run. When every stage "
            "names its objectives and denoising_objectives is not given, the run's objectives are theirs.",
        category="denoising", converter=lambda stages: _stages(stages))
    contrastive_temperature: float = _opt(0.1, "InfoNCE temperature of the alignment objective.",
                                          category="denoising", converter=_number, validator=positive)
    alignment_weight: float = _opt(1.0, "Extra multiplier on the alignment objective's loss.",
                                   category="denoising", converter=_number, validator=non_negative)
    denoising_objectives_per_step: int = _opt(
        0, "Objectives computed per training step, taken in turn and weighted up so the expected loss is "
           "unchanged (0: all of them every step). 1 makes a step with five objectives cost about one.",
        category="denoising", converter=_integer, validator=non_negative)
    # -- optimization ------------------------------------------------------------------------------
    optimizer_type: str = _opt("adamw", "Optimizer plugin name.", category="optimization",
                               validator=v.instance_of(str))
    scheduler_type: str = _opt("cosine_restarts", "Scheduler plugin name ('none' for a constant rate).",
                               category="optimization", validator=v.instance_of(str))
    warmup_epochs: int = _opt(5, "Linear learning-rate warmup, in epochs (0 disables).",
                              category="optimization", converter=_integer, validator=non_negative)
    gradient_clipping: float | None = _opt(1.0, "Clip the global gradient norm to this (None or 0 disables).",
                                           category="optimization",
                                           converter=attrs.converters.optional(_number),
                                           validator=v.optional(non_negative))
    mixed_precision: bool = _opt(True, "Mixed-precision training where the hardware gains from it.",
                                 category="optimization", converter=_boolean,
                                 activates=("precision", "amp", _when_true))
    gradient_accumulation_steps: int = _opt(1, "Optimizer step every N batches.", category="optimization",
                                            converter=_integer, validator=positive,
                                            activates=("precision", "accumulation", lambda n: n > 1))
    enable_progressive_learning: bool = _opt(False, "Train neural learners in progressive_stages (frozen layers, "
                                             "learning-rate multipliers). Without stages: the spec's three, "
                                             "scaled to epochs (20% with the encoder frozen at 0.1x the "
                                             "learning rate, 30% all layers, the rest fine-tuning at 0.01x).",
                                             category="optimization", converter=_boolean)
    progressive_stages: tuple[Mapping[str, Any], ...] = _opt(
        [], "Stages of progressive learning, each {'epochs': n, 'frozen_layers': ['encoder'], 'lr_multiplier': m, "
            "'fine_tuning': bool}; the last stage runs to the end of training. A stage's 'learning_rate' stands "
            "for lr_multiplier = its learning_rate / learning_rate.",
        category="optimization", converter=lambda stages: tuple(stages))
    # -- quality -----------------------------------------------------------------------------------
    early_stopping_patience: int = _opt(15, "Epochs without validation improvement before stopping (0 disables).",
                                        category="quality", converter=_integer, validator=non_negative,
                                        activates=("validator", "early_stopping", lambda n: n > 0))
    validation_split: float = _opt(0.2, "Fraction of each bag's distinct rows held out for validation.",
                                   category="quality", converter=_number, validator=at_least_0_below_1)
    # Cross-validation runs inside the trainers that support it (the tabular ones), so no validator
    # plugin is activated for it.
    cross_validation_folds: int = _opt(0, "K-fold cross-validation of each tabular learner over its training "
                                          "rows, stratified for classification (0 disables).", category="quality",
                                       converter=_integer, validator=non_negative)
    validation_strategy: str = _opt("random", "How validation rows are held out: random, stratified (by class) "
                                              "or time_series (the latest rows; row order is time order).",
                                    category="quality", validator=v.in_(VALIDATION_STRATEGIES))
    walk_forward_validation: bool = _opt(False, "Score tabular learners by walk-forward folds (train on the past, "
                                                "validate on the next block); needs validation_strategy="
                                                "'time_series'. Uses cross_validation_folds folds, else 5.",
                                         category="quality", converter=_boolean)
    # -- reports (read by the domain report plugins after training; they change no training) ------
    interpretability_required: bool = _opt(False, "Medical report: add per-modality clinical importance "
                                           "(ablation).", category="reports", converter=_boolean)
    regulatory_compliance: bool = _opt(False, "Medical report: add the clinical reporting checklist (which items "
                                       "this run documents; not a compliance claim).", category="reports",
                                       converter=_boolean)
    adversarial_testing: bool = _opt(False, "Safety report: accuracy under a gradient-sign (FGSM) perturbation "
                                     "crafted on the neural learners.", category="reports", converter=_boolean)
    worst_case_analysis: bool = _opt(True, "Safety report: search sensor-failure combinations up to "
                                     "max_failures, not only single failures.", category="reports",
                                     converter=_boolean)
    market_regime_testing: bool = _opt(False, "Finance report: the figures per volatility regime of the "
                                       "benchmark.", category="reports", converter=_boolean)
    risk_adjusted_metrics: bool = _opt(True, "Finance report: add the Sortino ratio (downside deviation) and the "
                                       "Calmar ratio (annual return over maximum drawdown) beside the Sharpe "
                                       "ratio.", category="reports", converter=_boolean)
    online_validation: bool = _opt(False, "Recommendation report: score the held-out rows in arrival order, "
                                   "window by window (precision@k and NDCG@k per window), as a model serving "
                                   "live traffic would meet them.", category="reports", converter=_boolean)
    cold_start_testing: bool = _opt(False, "Recommendation report: with no cold-start rows among the held-out "
                                    "ones, simulate them: score every row with its behavioral_modality hidden.",
                                    category="reports", converter=_boolean)
    ensemble_diversity_weight: float = _opt(0.0, "Diversity in the ensemble: the weighted mean's greedy selection "
                                            "adds this times the mean correlation of the selected experts' "
                                            "out-of-fold errors to the loss it minimises (0: off).",
                                            category="quality", converter=_number, validator=non_negative)
    domain_adaptation: str | None = _opt(None, "Adapt the neural learners to unlabelled target-domain rows (give them "
                                         "as target_data= to train_ensemble or create_model_from_arrays): 'coral' "
                                         "aligns the covariance of the fused representation on source and target "
                                         "batches (Sun & Saenko, 2016), 'dann' trains a domain classifier on it "
                                         "through gradient reversal (Ganin et al., 2016); true means 'coral'. "
                                         "Learners without a learned representation (tabular) note that it does "
                                         "not apply to them. The ensemble's combinations weigh the training rows "
                                         "by p(target)/p(source) from a logistic domain classifier "
                                         "(model.domain_weights). None: off.", category="quality",
                                         converter=_domain_adaptation, validator=_domain_adaptation_choice)
    domain_adaptation_weight: float | None = _opt(None, "Strength of domain_adaptation: the weight of the CORAL "
                                                        "term in each step's loss, or DANN's gradient-reversal "
                                                        "coefficient (ramped from 0 to this over training, as Ganin "
                                                        "et al. do). None: 1.0 for coral, 0.3 for dann (at 1.0 DANN "
                                                        "lost 5 points on benchmarks/generalisation.py's shifted "
                                                        "target).", category="quality",
                                                  converter=_optional_number, validator=v.optional(positive))
    knowledge_distillation: bool = _opt(False, "After training, distil the ensemble into one student network "
                                        "(model.student; see model.distill) that predicts from any subset of "
                                        "modalities.", category="quality", converter=_boolean)
    distillation_temperature: float = _opt(2.0, "Temperature of the ensemble's soft targets for the student "
                                           "(knowledge_distillation, model.distill).", category="quality",
                                           converter=_number, validator=positive)
    min_performance: float | None = _opt(None, "A floor on the ensemble's score (accuracy, or R2 for "
                                         "regression), out of fold on the training rows: below it, training "
                                         "warns and the summary's performance_check says it was not met.",
                                         category="quality", converter=_optional_number)
    export_for_integration: bool = _opt(False, "After training, export the ensemble to <run_dir>/export, ready "
                                        "for load_ensemble.", category="run", converter=_boolean)
    # -- tuning ------------------------------------------------------------------------------------
    hpo_trials: int = _opt(0, "Hyperparameter search trials per tabular learner, each scored by "
                              "cross-validation (0: no search unless hpo_time_budget is set).",
                           category="tuning", converter=_integer, validator=non_negative)
    hpo_time_budget: float | None = _opt(None, "Seconds of hyperparameter search per tabular learner "
                                               "(None: bounded by hpo_trials only).", category="tuning",
                                         converter=attrs.converters.optional(_number),
                                         validator=v.optional(positive))
    save_checkpoints: bool = _opt(True, "Write each learner's best weights to checkpoint_dir.",
                                  category="quality", converter=_boolean,
                                  activates=("validator", "checkpoint", _when_true))
    checkpoint_dir: str | None = _opt(None, "Where checkpoints go, one folder per learner (None: <run_dir>/checkpoints, "
                                            "or without run_dir a temporary directory, removed when the run ends).",
                                      category="quality",
                                      converter=attrs.converters.optional(str))
    checkpoint_interval: int = _opt(1, "Epochs between full training-state checkpoints of a neural learner (model, "
                                       "objective, optimizer, scheduler, scaler and RNG states): what resume "
                                       "continues from. Needs save_checkpoints and run_dir or checkpoint_dir.",
                                    category="quality", converter=_integer, validator=positive)
    keep_best_only: bool = _opt(True, "Keep only the newest training state and the best weights per learner; "
                                      "false keeps every checkpoint_interval's state as well.",
                                category="quality", converter=_boolean)
    # -- run ---------------------------------------------------------------------------------------
    random_state: int = _opt(0, "Seed of training: each learner's initialisation and data order derive from it and "
                                "its bag's seed (the bags come from create_ensemble's seed). An integer in "
                                "[0, 2**32); same seed, same results.",
                             category="run", converter=_integer, validator=seed)
    run_dir: str | None = _opt(None, "The run directory: the run's own record (records.jsonl), checkpoints, "
                               "sink output, exports and reports go under it; resume reads it back (None: "
                               "nothing is written but checkpoints, to a temporary directory; with "
                               "tensorboard_logging, wandb_logging, profile_training or export_for_integration, "
                               "train_ensemble uses a new runs/run-<time> in the working directory).",
                               category="run", converter=attrs.converters.optional(str),
                               activates=("sink", "jsonl", lambda d: d is not None))
    verbose: bool = _opt(False, "Log progress (the application configures where logs go).",
                         category="run", converter=_boolean)
    sinks: tuple[str, ...] = _opt([], "Metrics sink plugins to activate, by name.", category="run",
                                  converter=_names)
    log_interval: int = _opt(50, "Log step metrics (loss, learning rate, gradient norm, throughput) to the "
                             "active sinks every N optimizer steps (0: per epoch only).", category="run",
                             converter=_integer, validator=non_negative)
    tensorboard_logging: bool = _opt(False, "Mirror the run's metrics to TensorBoard under run_dir/tensorboard.",
                                     category="run", converter=_boolean,
                                     activates=("sink", "tensorboard", _when_true))
    wandb_logging: bool = _opt(False, "Mirror the run's metrics to Weights & Biases (files under run_dir/wandb).",
                               category="run", converter=_boolean, activates=("sink", "wandb", _when_true))
    profile_training: bool = _opt(False, "Trace a few training steps of each neural learner with torch.profiler "
                                  "(Chrome traces under run_dir/profiler).", category="run", converter=_boolean)
    validators: tuple[str, ...] = _opt([], "Extra validator plugins to activate, by name.", category="run",
                                       converter=_names)
    # -- parallel ----------------------------------------------------------------------------------
    executor: str = _opt("auto", "Executor plugin that runs the learners: 'auto' picks 'serial' when n_jobs is 1, "
                         "'torchrun' when distributed_training, else 'local'; or 'ray', ...",
                         category="parallel", validator=v.instance_of(str))
    n_jobs: int = _opt(1, "Learners trained at once (-1: one per core). Capped at the cores this process may use "
                          "(its CPU affinity, else the CPU count), with a note in the training summary's run_notes "
                          "and a run.n_jobs_capped warning.", category="parallel",
                       converter=_integer, validator=_n_jobs)
    threads_per_learner: int | None = _opt(None, "Threads each learner uses (None: cores // n_jobs). Results are "
                                           "bitwise identical across executors for the same value.",
                                           category="parallel", converter=attrs.converters.optional(_integer),
                                           validator=v.optional(positive))
    memory_limit_mb: float | None = _opt(None, "Memory the learners training at once may use together (None: 90% "
                                         "of the memory available when training starts).", category="parallel",
                                         converter=attrs.converters.optional(_number),
                                         validator=v.optional(positive))
    distributed_training: bool = _opt(False, "Train each learner with torch DDP over num_processes ranks "
                                      "launched by torchrun.", category="parallel", converter=_boolean)
    num_processes: int = _opt(2, "DDP ranks per learner when distributed_training (torchrun --nproc-per-node).",
                              category="parallel", converter=_integer, validator=positive)
    distributed_timeout: float = _opt(300.0, "Seconds a DDP rank waits for its peers (joining the group, each "
                                      "collective) before failing.", category="parallel", converter=_number,
                                      validator=positive)
    progress_bar: bool = _opt(False, "Draw progress bars on stderr (tqdm): the bags with rate and ETA, and the "
                              "epochs of a learner training in this process. `modalbag train` draws them by "
                              "default when stderr is a terminal.", category="parallel",
                              converter=_boolean)
    plugin_options: Mapping[str, Any] = attrs.field(
        factory=dict, converter=dict,
        metadata={"help": "Options owned by plugins (betas, momentum, T_mult, ...); filled by from_dict.",
                  "category": "run", "internal": True},
    )

    def domain_weight(self) -> float:
        """``domain_adaptation_weight``, or the chosen method's default when it is None."""
        if self.domain_adaptation_weight is not None:
            return float(self.domain_adaptation_weight)
        return DOMAIN_ADAPTATION_WEIGHTS.get(self.domain_adaptation or "", 1.0)

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, catalog: Any = None) -> TrainingConfig:
        """Build a config from plain data; every problem is reported at once in a `ConfigError`."""
        config, issues = parse_config(cls, data, catalog)
        if issues:
            if len(issues) == 1 and isinstance(issues[0], UnknownConfigKeyError):
                raise issues[0]
            raise ConfigError([str(i) for i in issues])
        return config

    @classmethod
    def from_toml(cls, path: str | PathLike[str], *, table: str | None = "training",
                  catalog: Any = None) -> TrainingConfig:
        """Read a TOML file: the ``[training]`` table if there is one, else the top level."""
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        if table and table in data:
            data = data[table]
        return cls.from_dict(data, catalog=catalog)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back to an equal config."""
        out = attrs.asdict(self, recurse=False)
        plugin_options = out.pop("plugin_options")
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        return out | dict(plugin_options)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some options changed (validated like `from_dict`)."""
        return self.from_dict({**self.to_dict(), **changes})

    def executor_name(self) -> str:
        """The executor plugin this config runs on, with 'auto' resolved."""
        if self.executor != "auto":
            return self.executor
        if self.distributed_training:
            return "torchrun"
        return "serial" if self.n_jobs == 1 else "local"

    def active_requirements(self) -> list[tuple[str, str, str]]:
        """(option, kind, component) for every plugin that the option values turn on."""
        out = []
        for field in attrs.fields(type(self)):
            rule = field.metadata.get("activates")
            if rule and rule[2](getattr(self, field.name)):
                out.append((field.name, rule[0], rule[1]))
        return out


CONFIG_KEYS: frozenset[str] = frozenset(
    f.name for f in attrs.fields(TrainingConfig) if not f.metadata.get("internal")
)


#: Options that write under ``run_dir``: without one, ``model.train_ensemble`` gives the run a new
#: ``runs/run-<time>`` in the working directory, as TensorBoard's ``SummaryWriter`` does.
RUN_DIR_WRITERS = ("tensorboard_logging", "wandb_logging", "profile_training", "export_for_integration")


def _cross_checks(config: TrainingConfig) -> list[str]:
    issues = []
    if config.enable_denoising:
        for i, stage in enumerate(config.curriculum_stages):
            strays = set(stage.get("objectives", ())) - set(config.denoising_objectives)
            if strays:
                issues.append(f"curriculum stage {i} names objectives {sorted(strays)} that are not in "
                              f"denoising_objectives {list(config.denoising_objectives)}")
        if config.denoising_weight <= 0:
            issues.append("denoising_weight must be > 0 when enable_denoising is true "
                          "(set enable_denoising=false to train without denoising)")
        if not config.denoising_objectives:
            issues.append("denoising_objectives is empty while enable_denoising is true")
    if config.enable_progressive_learning:

        stages, stage_issues = parse_stages(config.progressive_stages)
        issues.extend(stage_issues)
        if not stages and not stage_issues:
            issues.append("enable_progressive_learning is true but progressive_stages is empty: give stages like "
                          "[{'epochs': 20, 'frozen_layers': ['encoder'], 'lr_multiplier': 0.1}, {'epochs': 80}]")
    if config.task_type == "regression" and config.class_weights is not None:
        issues.append("class_weights applies to classification only (task_type is 'regression')")
    if config.label_smoothing and config.task_type == "regression":
        issues.append("label_smoothing applies to classification and multilabel tasks only")
    if config.walk_forward_validation and config.validation_strategy != "time_series":
        issues.append("walk_forward_validation needs validation_strategy='time_series' (rows in time order)")
    if config.validation_strategy == "stratified" and config.task_type != "classification":
        issues.append("validation_strategy='stratified' applies to classification only; use 'random'")
    if (config.hpo_trials or config.hpo_time_budget) and importlib.util.find_spec("optuna") is None:
        issues.append("hpo_trials / hpo_time_budget search with Optuna, which is not installed: "
                      "pip install modalbag[hpo]")
    for option in RUN_DIR_WRITERS:
        if getattr(config, option) and config.run_dir is None:
            issues.append(f"{option} writes under the run directory, but run_dir is None: set run_dir "
                          f"(for example run_dir='runs/first') or {option}=false")
    if config.distributed_training and config.executor not in ("auto", "torchrun"):
        issues.append(f"distributed_training trains each learner over torchrun ranks, but executor is "
                      f"{config.executor!r}: set executor='auto' (or 'torchrun'), or distributed_training=false")
    return issues


def parse_config(cls: type[TrainingConfig], data: Mapping[str, Any], catalog: Any) -> tuple[TrainingConfig, list[Any]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a training config must be a mapping of options, got {type(data).__name__}")
    data, spec_issues = translate_spec_keys(data)  # the spec's names for options modalbag spells otherwise
    data = _objectives_from_stages(data)
    data = _default_progressive_stages(data)
    data = _stage_learning_rates(data)
    issues: list[Any] = list(spec_issues)
    known = {k: val for k, val in data.items() if k in CONFIG_KEYS}
    extra = {k: val for k, val in data.items() if k not in CONFIG_KEYS and k != "plugin_options"}
    extra.update(data.get("plugin_options") or {})
    plugin_options: dict[str, Any] = {}
    if extra:
        owners = _option_owners(catalog)
        for key, value in extra.items():
            if key in owners:
                plugin_options[key] = value
            else:
                issues.append(UnknownConfigKeyError(key, CONFIG_KEYS | set(owners)))
    base = cls()
    good: dict[str, Any] = {}
    for key, value in known.items():
        try:
            attrs.evolve(base, **{key: value})
            good[key] = value
        except (TypeError, ValueError) as exc:
            issues.append(f"{key}: {_message(exc)}")
    config = attrs.evolve(base, plugin_options=plugin_options, **good)
    issues.extend(_cross_checks(config))
    return config, issues


def _objectives_from_stages(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Curriculum stages that each name their objectives, without ``denoising_objectives``: the run's
    objectives are the ones the stages name, in order (the spec's curriculum example names
    'consistency' in its last stage only, beside the default reconstruction and alignment)."""
    stages = data.get("curriculum_stages")
    if "denoising_objectives" in data or not stages or not isinstance(stages, (list, tuple)):
        return data
    if not all(isinstance(stage, Mapping) and "objectives" in stage for stage in stages):
        return data
    try:
        named = [name for stage in stages for name in _names(stage["objectives"])]
    except TypeError:
        return data  # the stages' own check reports it
    return {**data, "denoising_objectives": list(dict.fromkeys(named))}


def _default_progressive_stages(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``enable_progressive_learning`` without stages (the spec's medical example): the spec's own
    three stages (classifier first, then every layer, then fine-tuning), scaled from its 20/30/50 of
    100 epochs to ``epochs``, each stage at least one epoch."""
    if data.get("enable_progressive_learning") is not True or data.get("progressive_stages"):
        return data
    epochs = data.get("epochs", 100)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return data  # the epochs check reports it
    first, second = max(1, round(0.2 * epochs)), max(1, round(0.3 * epochs))
    stages = [{"epochs": first, "frozen_layers": ["encoder"], "lr_multiplier": 0.1, "name": "classifier"},
              {"epochs": second, "lr_multiplier": 1.0, "name": "all layers"},
              {"epochs": max(1, epochs - first - second), "fine_tuning": True, "lr_multiplier": 0.01,
               "name": "fine-tuning"}]
    return {**data, "progressive_stages": stages}


def _stage_learning_rates(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A progressive stage's ``learning_rate`` (the spec's troubleshooting form) is its ``lr_multiplier``
    times the run's ``learning_rate``: ``lr_multiplier = stage learning_rate / learning_rate``."""
    stages, base = data.get("progressive_stages"), data.get("learning_rate", 1e-3)
    if not isinstance(stages, (list, tuple)) or isinstance(base, bool) or not isinstance(base, (int, float)) \
            or base <= 0:
        return data
    out = []
    for stage in stages:
        rate = stage.get("learning_rate") if isinstance(stage, Mapping) else None
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and "lr_multiplier" not in stage:
            stage = {k: v for k, v in stage.items() if k != "learning_rate"} | {"lr_multiplier": rate / base}
        out.append(stage)  # anything else is reported by the stages' own check
    return {**data, "progressive_stages": out}


def _message(exc: Exception) -> str:
    """attrs' ``in_`` validator packs (message, attribute, options, value) into args: keep the message."""
    return str(exc.args[0]) if len(exc.args) > 1 else str(exc)


#: The catalog a config parsed without one reads plugin options from. The registry is a layer above
#: config (it reads config types), so it installs its default catalog here when it is imported
#: (`modalbag.kernel.registry`), which importing modalbag always does.
default_catalog: Callable[[], Any] | None = None


def _option_owners(catalog: Any) -> dict[str, list[Any]]:
    if catalog is None:
        if default_catalog is None:
            raise RuntimeError("no plugin catalog: import modalbag (its registry installs the default catalog)")
        catalog = default_catalog()
    return catalog.option_owners()


__all__ = ["CONFIG_KEYS", "RUN_DIR_WRITERS", "TASK_TYPES", "TrainingConfig", "close_matches", "parse_config"]
