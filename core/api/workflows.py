"""The spec's helper workflows as API: pick a strategy, fit it to the machine, train with checks.

Each returns something you can act on: `choose_training_strategy` and
`optimize_training_performance` return `train_ensemble` keyword arguments (a `Recommendation`, a
dict that also says *why* under ``.reasons``); `quality_assured_training` trains and returns a
`QualityReport` that is truthy when the run passed. Every number they return is either a
configuration choice made by a documented rule, or measured (the machine's cores and memory, the
data's size, the trained learners' records) — never a made-up score.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.api.pipeline import EnsembleTrainingPipeline
from modalbag.config.training import CONFIG_KEYS, TrainingConfig
from modalbag.errors import ConfigError, ModalbagError
from modalbag.execution import available_cores, available_memory, estimate_footprint, memory_budget
from modalbag.kernel.components import validate_training_config
from modalbag.kernel.registry import default_catalog
from modalbag.logs import get_logger
from modalbag.reports.values import Report

log = get_logger("modalbag.workflows")

#: Dataset sizes (samples) the strategy rules call small and large.
SMALL_DATASET, LARGE_DATASET = 1_000, 100_000

#: Quality thresholds `quality_assured_training` applies unless the requirements say otherwise
#: (the spec's: performance 0.7, stability 0.8, denoising effectiveness 0.1).
QUALITY_DEFAULTS = {"min_performance": 0.7, "min_stability": 0.8, "min_denoising_effectiveness": 0.1}


class Recommendation(dict):
    """``train_ensemble`` options (a plain dict to ``**``-unpack) with the reason for each choice."""

    def __init__(self, options: Mapping[str, Any] = (), reasons: list[str] | None = None):
        super().__init__(options)
        self.reasons: list[str] = list(reasons or [])

    def set(self, reason: str, **options: Any) -> None:
        self.update(options)
        self.reasons.append(f"{reason}: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))


# -- measuring the data and the machine -----------------------------------------------------------


def describe_data(source: Any) -> dict[str, Any]:
    """Measured characteristics of a model's or a `MultimodalDataset`'s data.

    ``n_samples``, ``n_modalities``, ``modality_types``, ``missing_rate`` (per modality, the share of
    samples without it), ``class_balance`` (smallest class count / largest, classification only),
    and the flags the strategy rules read: ``single_modality``, ``multimodal``, ``small_dataset``
    (< 1,000 samples), ``large_scale`` (>= 100,000).
    """
    dataset = getattr(source, "dataset", source)
    n = dataset.n_samples
    out: dict[str, Any] = {
        "n_samples": n,
        "n_modalities": len(dataset.names),
        "modality_types": {name: spec.type for name, spec in dataset.specs.items()},
        "missing_rate": {name: float(1.0 - dataset.masks[name].mean()) for name in dataset.names},
        "class_balance": None,
    }
    labels = dataset.labels
    task_type = getattr(source, "task_type", "classification")
    if labels is not None and task_type == "classification" and np.asarray(labels).ndim == 1:
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        out["class_balance"] = float(counts.min() / counts.max())
    out.update(single_modality=out["n_modalities"] == 1, multimodal=out["n_modalities"] > 1,
               small_dataset=n < SMALL_DATASET, large_scale=n >= LARGE_DATASET)
    return out


def _cuda_devices() -> int:
    """CUDA devices visible to torch (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _installed(kind: str, name: str) -> bool:

    return name in default_catalog().names(kind)


# -- choose_training_strategy ---------------------------------------------------------------------


def choose_training_strategy(application_requirements: Mapping[str, Any],
                             data_characteristics: Mapping[str, Any] | Any) -> Recommendation:
    """Training options for an application's requirements and its data (the spec's decision rules).

    ``application_requirements`` flags: ``real_time_required``, ``accuracy_critical``,
    ``resource_constrained``. ``data_characteristics``: a dict of flags (``large_scale``,
    ``small_dataset``, ``single_modality``, ``time_series``, ``n_samples``, ``class_balance``) or a
    model / dataset, whose characteristics are then measured (`describe_data`).

    Rules apply in this order, a later one overriding an earlier one's keys, so hard limits win
    over wishes: accuracy_critical, large_scale, real_time_required, resource_constrained, then the
    data rules (single modality: no denoising, whose objectives mostly need two; time series: the
    latest rows validate; class balance below 0.2: stratified validation; a known sample count caps
    the batch at 1/10 of the training rows). Mixed precision is turned on only where a CUDA device
    is present and a precision plugin is installed (it gains nothing on CPU); distributed training
    only with more than one CUDA device.
    """
    req = dict(application_requirements)
    data = (dict(data_characteristics) if isinstance(data_characteristics, Mapping)
            else describe_data(data_characteristics))
    out = Recommendation()
    out.set("spec defaults", epochs=100, batch_size=32, learning_rate=1e-3, optimizer_type="adamw",
            scheduler_type="cosine_restarts")
    gpus = _cuda_devices()
    amp = gpus > 0 and _installed("precision", "amp")
    out.set(f"{gpus} CUDA device(s){', amp plugin installed' if amp else ''}", mixed_precision=amp)
    if req.get("accuracy_critical"):
        out.set("accuracy_critical", epochs=200, early_stopping_patience=30, cross_validation_folds=10,
                enable_denoising=True, denoising_weight=0.2, validation_split=0.3)
    if data.get("large_scale"):
        out.set("large_scale", batch_size=256, n_jobs=-1)
        if gpus > 1:
            out.set(f"large_scale with {gpus} CUDA devices", distributed_training=True, num_processes=gpus)
    if req.get("real_time_required"):
        out.set("real_time_required", epochs=50, batch_size=128, optimizer_type="sgd", scheduler_type="onecycle",
                enable_denoising=False)
    if req.get("resource_constrained"):
        out.set("resource_constrained", batch_size=16, epochs=30, enable_denoising=False, n_jobs=1)
        if _installed("precision", "accumulation"):
            out.set("resource_constrained: keep an effective batch of 64", gradient_accumulation_steps=4)
    if data.get("single_modality") or data.get("n_modalities") == 1:
        out.set("single modality", enable_denoising=False)
    if data.get("time_series"):
        out.set("time_series", validation_strategy="time_series")
    elif data.get("class_balance") is not None and data["class_balance"] < 0.2:
        out.set(f"class balance {data['class_balance']:.2f} < 0.2", validation_strategy="stratified")
    n = data.get("n_samples")
    if n:
        train_rows = int(n * (1 - out.get("validation_split", 0.2)))
        cap = max(8, train_rows // 10)
        if out["batch_size"] > cap:
            out.set(f"{n} samples: at least 10 batches per epoch", batch_size=cap)
    log.info("workflow.strategy", reasons=out.reasons)
    return out


# -- optimize_training_performance ----------------------------------------------------------------


def optimize_training_performance(model: Any, target_performance: Mapping[str, Any]) -> Recommendation:
    """Options that fit ``model``'s training to this machine, with ``target_performance`` on top.

    Measured: available cores and memory, CUDA devices, and each learner's memory footprint
    (`modalbag.execution.estimate_footprint`, so the model's bags and learners are chosen first if
    they were not). Derived: ``n_jobs`` = the most learners that fit in 90% of free memory at once
    (at most one per core and one per learner), ``threads_per_learner`` = cores // n_jobs, the
    batch size = the largest power of two giving every bag at least 10 batches per epoch (16..256),
    mixed precision where CUDA and a precision plugin are present. Keys in ``target_performance``
    win; the result is validated like ``train_ensemble``'s options.
    """

    target = dict(target_performance)
    if model.learner_specs is None:
        model.select_base_learners(task_type=target.get("task_type"), num_classes=target.get("num_classes"),
                                   instantiate=False)
    specs, bags = model.learner_specs, {b.id: b for b in model.bags}
    out = Recommendation()
    cores = available_cores()
    gpus = _cuda_devices()
    amp = gpus > 0 and _installed("precision", "amp")
    out.set(f"{gpus} CUDA device(s){', amp plugin installed' if amp else ''}", mixed_precision=amp)
    smallest = min(len(np.unique(bags[s.bag_id].rows)) for s in specs)
    batch = 2 ** math.floor(math.log2(max(16, smallest * 0.8 / 10)))
    out.set(f"smallest bag has {smallest} distinct rows", batch_size=int(min(256, max(16, batch))))
    base = {k: v for k, v in target.items() if k in CONFIG_KEYS}
    config = TrainingConfig.from_dict({**base, "batch_size": out["batch_size"], "mixed_precision": False},
                                      catalog=model.catalog)
    n_outputs = model._infer_num_classes(config.task_type)
    trainers = {name: model.catalog.get("trainer", name) for name in {s.trainer for s in specs}}
    footprints = [estimate_footprint(s, bags[s.bag_id], model.dataset.specs, config, n_outputs,
                                     trainers[s.trainer]).total for s in specs]
    free = available_memory()
    fit_at_once = len(specs) if free is None else max(1, int(0.9 * free // max(footprints)))
    n_jobs = max(1, min(cores, len(specs), fit_at_once))
    out.set(f"{cores} cores, {len(specs)} learners, "
            f"{'unknown free memory' if free is None else f'{free / 2**20:.0f} MiB free'}, "
            f"largest learner ~{max(footprints) / 2**20:.1f} MiB", n_jobs=n_jobs,
            threads_per_learner=max(1, cores // n_jobs))
    if target:
        out.set("target_performance", **target)
    result = validate_training_config(dict(out), catalog=model.catalog)
    if not result["valid"]:
        raise ConfigError(result["issues"])
    log.info("workflow.optimized", reasons=out.reasons)
    return out


# -- check_training_resources / optimize_for_resources ---------------------------------------------

#: Bytes a checkpoint holds per byte of fusion-network weights: the weights and Adam's two moments.
CHECKPOINT_COPIES = 3


def _planned_config(model: Any, requirements: Mapping[str, Any]) -> TrainingConfig:
    base = {k: v for k, v in requirements.items() if k in CONFIG_KEYS}
    return TrainingConfig.from_dict({**base, "mixed_precision": False}, catalog=model.catalog)


def check_training_resources(model: Any, training_requirements: Mapping[str, Any]) -> dict[str, Any]:
    """Will the planned run fit this machine? Measured against planned, before anything trains.

    Measured: the cores this process may use, free memory (MemAvailable, capped by a cgroup limit),
    free disk where checkpoints go (``checkpoint_dir``, else ``run_dir``, else the temporary
    directory) and CUDA devices. Planned: learners at once = min(``n_jobs`` (-1: cores), learners);
    memory = learners at once x the largest learner's estimate (`modalbag.execution.estimate_footprint`);
    disk, with ``save_checkpoints`` = sum over fusion-network learners of ``CHECKPOINT_COPIES`` x their
    weights' bytes (the footprint's model part is 5 copies: weights, gradients, two moments, a best
    copy). ``sufficient`` when every known need fits; ``limitations`` says which does not, with the
    numbers; ``recommended_options`` and ``adjustments`` (see `optimize_for_resources`) fit memory by
    lowering ``n_jobs`` then ``batch_size``, cap ``n_jobs`` at the cores and turn checkpoints off when
    the disk cannot hold them. A measurement the machine does not give is None, with a note, and
    never counts as a limitation. Chooses the learners first if none were.
    """
    requirements = dict(training_requirements)
    if model.learner_specs is None:
        model.select_base_learners(task_type=requirements.get("task_type"), num_classes=requirements.get("num_classes"),
                                   instantiate=False)
    config = _planned_config(model, requirements)
    specs, bags = model.learner_specs, {b.id: b for b in model.bags}
    n_outputs = model._infer_num_classes(config.task_type)
    trainers = {name: model.catalog.get("trainer", name) for name in {s.trainer for s in specs}}
    footprints = [estimate_footprint(s, bags[s.bag_id], model.dataset.specs, config, n_outputs, trainers[s.trainer])
                  for s in specs]
    cores = available_cores()
    at_once = max(1, min(cores if config.n_jobs == -1 else config.n_jobs, len(specs)))
    largest = max(f.total for f in footprints)
    free, budget = available_memory(), memory_budget(config)
    notes: dict[str, str] = {}
    limitations: list[str] = []
    if budget is None:
        notes["memory_budget_mb"] = "this machine reports no free memory (no /proc/meminfo) and memory_limit_mb is unset"
    elif at_once * largest > budget:
        limitations.append(f"memory: {at_once} learner(s) at once need ~{at_once * largest / 2**20:.0f} MiB, over the "
                           f"{budget / 2**20:.0f} MiB budget ({'memory_limit_mb' if config.memory_limit_mb else '90% of free memory'})")
    if config.n_jobs > cores:
        limitations.append(f"cores: n_jobs={config.n_jobs} learners at once on {cores} core(s)")
    disk_path = config.checkpoint_dir or config.run_dir or tempfile.gettempdir()
    disk_free = _free_disk(disk_path)
    disk_need = 0
    if config.save_checkpoints:
        disk_need = sum(f.model // 5 * CHECKPOINT_COPIES for f in footprints if f.source == "estimate")
        if any(f.source != "estimate" for f in footprints):
            notes["disk_needed_mb"] = "learners whose trainer estimates its own memory are not counted (their files' size is unknown)"
    if disk_free is None:
        notes["disk_free_mb"] = f"no existing folder at or above {disk_path} to measure"
    elif disk_need > disk_free:
        limitations.append(f"disk: checkpoints need ~{disk_need / 2**20:.0f} MiB, {disk_free / 2**20:.0f} MiB free at {disk_path}")
    recommended, adjustments = _fit_resources(model, requirements, config, cores, disk_need, disk_free)
    return Report({
        "sufficient": not limitations, "limitations": limitations,
        "cores": cores, "n_jobs": config.n_jobs, "concurrent_learners": at_once, "n_learners": len(specs),
        "memory_available_mb": None if free is None else free / 2**20,
        "memory_budget_mb": None if budget is None else budget / 2**20,
        "learner_memory_mb": largest / 2**20, "memory_needed_mb": at_once * largest / 2**20,
        "disk_path": str(disk_path), "disk_free_mb": None if disk_free is None else disk_free / 2**20,
        "disk_needed_mb": disk_need / 2**20, "cuda_devices": _cuda_devices(),
        "recommended_options": recommended, "adjustments": adjustments, "notes": notes,
    })


def _free_disk(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system of ``path`` or its nearest existing parent."""
    current = Path(path).absolute()
    for folder in (current, *current.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def _fit_resources(model: Any, requirements: dict[str, Any], config: TrainingConfig, cores: int, disk_need: int,
                   disk_free: int | None) -> tuple[dict[str, Any], list[str]]:
    """The option changes that make the planned run fit, and why each was made."""
    adjustments: list[str] = []
    options = {k: v for k, v in requirements.items() if k in CONFIG_KEYS}
    if config.n_jobs > cores:
        options["n_jobs"] = cores
        adjustments.append(f"n_jobs {config.n_jobs} -> {cores}: one learner per core")
    options = _fit_memory(model, options, adjustments)
    if disk_free is not None and disk_need > disk_free:
        options["save_checkpoints"] = False
        adjustments.append(f"save_checkpoints -> False: checkpoints need ~{disk_need / 2**20:.0f} MiB, "
                           f"{disk_free / 2**20:.0f} MiB free")
    changed = {k: v for k, v in options.items() if requirements.get(k, object()) != v}
    return changed, adjustments


def optimize_for_resources(training_requirements: Mapping[str, Any], resource_check: Mapping[str, Any]
                           ) -> Recommendation:
    """``training_requirements`` with `check_training_resources`' recommended changes applied: a
    `Recommendation` (``train_ensemble`` keyword arguments, the reasons under ``.reasons``)."""
    out = Recommendation(training_requirements)
    out.update(resource_check.get("recommended_options") or {})
    out.reasons.extend(resource_check.get("adjustments") or [])
    log.info("workflow.resources_fitted", reasons=out.reasons)
    return out


# -- quality_assured_training ---------------------------------------------------------------------


@attrs.frozen
class QualityCheck:
    """One check of a quality-assured run: what was measured against which threshold."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    severity: str  # "error": fails the run; "warning": reported only
    detail: str


@attrs.frozen
class QualityReport:
    """The outcome of `quality_assured_training`; truthy when every error-severity check passed."""

    passed: bool
    checks: tuple[QualityCheck, ...]
    adjustments: tuple[str, ...] = ()
    trained: int = 0
    options: Mapping[str, Any] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)

    def failed(self) -> list[QualityCheck]:
        return [c for c in self.checks if not c.passed]


def denoising_effectiveness(learners: Mapping[str, Any], objectives: tuple[str, ...]) -> float | None:
    """Mean relative decrease of the unweighted denoising losses over training:
    ``mean_l mean_k (L_k,first - L_k,last) / L_k,first``, with ``L_k`` objective k's own loss (the
    ``<k>.loss`` record metric) at the first and last epoch it was active. Per objective, because
    objectives may start at different epochs (``curriculum``): a summed loss would compare one
    objective's first epoch with several objectives' last. ``None`` when no learner recorded a
    denoising loss over two epochs (for example, only single-modality or tabular learners)."""
    gains = []
    for record in learners.values():
        per_objective = []
        for k in objectives:
            series = [r.metrics[f"{k}.loss"] for r in record.records if f"{k}.loss" in r.metrics]
            if len(series) >= 2 and series[0] > 0:
                per_objective.append((series[0] - series[-1]) / series[0])
        if per_objective:
            gains.append(float(np.mean(per_objective)))
    return float(np.mean(gains)) if gains else None


def _primary_metric(summary: Mapping[str, Any], task_type: str) -> tuple[str, float | None]:
    key = "r2" if task_type == "regression" else "accuracy"
    return key, (summary.get("average_performance") or {}).get(key)


def _fit_memory(model: Any, options: dict[str, Any], adjustments: list[str]) -> dict[str, Any]:
    """Lower n_jobs, then the batch size, until the learners training at once fit the memory budget."""

    config = TrainingConfig.from_dict({**options, "mixed_precision": False}, catalog=model.catalog)
    budget = memory_budget(config)
    if budget is None:
        return options
    bags = {b.id: b for b in model.bags}
    n_outputs = model._infer_num_classes(config.task_type)
    trainers = {name: model.catalog.get("trainer", name) for name in {s.trainer for s in model.learner_specs}}

    def largest(cfg: TrainingConfig) -> int:
        return max(estimate_footprint(s, bags[s.bag_id], model.dataset.specs, cfg, n_outputs,
                                      trainers[s.trainer]).total for s in model.learner_specs)

    need = largest(config)
    n_jobs = config.n_jobs if config.n_jobs > 0 else len(model.learner_specs)
    if n_jobs * need > budget and n_jobs > 1:
        fit = max(1, int(budget // need))
        options["n_jobs"] = fit
        adjustments.append(f"n_jobs {n_jobs} -> {fit}: {n_jobs} learners of ~{need / 2**20:.0f} MiB exceed the "
                           f"{budget / 2**20:.0f} MiB budget")
    while need > budget and config.batch_size > 8:
        config = config.replace(batch_size=config.batch_size // 2)
        need = largest(config)
        options["batch_size"] = config.batch_size
        adjustments.append(f"batch_size -> {config.batch_size}: one learner needs ~{need / 2**20:.0f} MiB of "
                           f"the {budget / 2**20:.0f} MiB budget")
    return options


def quality_assured_training(model: Any, training_requirements: Mapping[str, Any]) -> QualityReport:
    """Train ``model`` with checks before and after (the spec's quality-assurance workflow).

    Before: choose learners if none were, validate the options (every issue at once; nothing trains
    if any), and lower ``n_jobs`` / ``batch_size`` until the estimated memory of the learners
    training at once fits the budget. After: the ensemble's average held-out validation score
    (accuracy; R² for regression) against ``min_performance`` (error), the stability score
    (``model.assess_training_stability()``)
    against ``min_stability`` and, with denoising on, `denoising_effectiveness` against
    ``min_denoising_effectiveness`` (warnings). Thresholds default to `QUALITY_DEFAULTS`.
    A `ModalbagError` while training fails the report instead of raising.
    """
    requirements = dict(training_requirements)
    thresholds = {k: requirements.pop(k, v) for k, v in QUALITY_DEFAULTS.items()}
    checks: list[QualityCheck] = []
    adjustments: list[str] = []
    notes: list[str] = []

    def report(passed: bool, trained: int = 0) -> QualityReport:
        result = QualityReport(passed, tuple(checks), tuple(adjustments), trained, dict(requirements), tuple(notes))
        log.info("workflow.quality", passed=passed, failed=[c.name for c in result.failed()])
        return result

    validation = validate_training_config(requirements, catalog=model.catalog)
    checks.append(QualityCheck("config", validation["valid"], None, None, "error",
                               "; ".join(validation["issues"]) or "every option valid"))
    if not validation["valid"]:
        return report(False)
    if model.learner_specs is None:
        model.select_base_learners(task_type=requirements.get("task_type"), num_classes=requirements.get("num_classes"),
                                   optimization_strategy="balanced", instantiate=False)
        adjustments.append(f"selected {len(model.learner_specs)} base learners (none were selected)")
    requirements = _fit_memory(model, requirements, adjustments)
    try:
        trained = model.train_ensemble(**requirements)
    except ModalbagError as exc:
        checks.append(QualityCheck("training", False, None, None, "error", f"{type(exc).__name__}: {exc}"))
        return report(False)
    summary = model.get_training_summary()
    checks.append(QualityCheck("training", summary["failed"] == 0, float(summary["trained"]),
                               float(summary["total_learners"]), "warning",
                               f"{summary['trained']} of {summary['total_learners']} learners trained"))
    metric, value = _primary_metric(summary, model.task_type)
    threshold = thresholds["min_performance"]
    checks.append(QualityCheck("performance", value is not None and value >= threshold, value, threshold, "error",
                               f"average validation {metric} of the trained learners"))
    if value is None:
        notes.append(f"performance: no learner had validation rows to measure {metric} on (validation_split)")
    stability = model.assess_training_stability()  # the one stability score (docs/monitoring.md)
    checks.append(QualityCheck("stability", stability is None or stability >= thresholds["min_stability"], stability,
                               thresholds["min_stability"], "warning",
                               "mean stability score D/(D+U) of the training loss (falls over falls plus rises)"))
    if stability is None:
        notes.append("stability: no learner trained for two epochs or more")
    cfg = model.training_config
    if cfg.enable_denoising:
        effect = denoising_effectiveness(model.learners, cfg.denoising_objectives)
        checks.append(QualityCheck("denoising", effect is None or effect >= thresholds["min_denoising_effectiveness"],
                                   effect, thresholds["min_denoising_effectiveness"], "warning",
                                   "relative decrease of the denoising losses over training"))
        if effect is None:
            notes.append("denoising: no learner recorded a denoising loss (objectives need neural learners "
                         "with enough modalities)")
    passed = all(c.passed for c in checks if c.severity == "error")
    return report(passed, len(trained))


# -- create_training_pipeline ---------------------------------------------------------------------


def create_training_pipeline(task_type: str = "classification", num_classes: int = 2, enable_denoising: bool = True,
                             epochs: int = 50, **kwargs: Any) -> Any:
    """An `EnsembleTrainingPipeline` over a validated `TrainingConfig` (``kwargs``: any option)."""

    options = {"task_type": task_type, "num_classes": num_classes, "enable_denoising": enable_denoising,
               "epochs": epochs, **kwargs}
    return EnsembleTrainingPipeline(TrainingConfig.from_dict(options))


__all__ = ["QUALITY_DEFAULTS", "QualityCheck", "QualityReport", "Recommendation", "choose_training_strategy",
           "create_training_pipeline", "denoising_effectiveness", "describe_data", "optimize_training_performance",
           "quality_assured_training"]
