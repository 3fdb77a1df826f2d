"""`EnsembleTrainingPipeline`: the spec's lower-level API, training learners you built on data you split.

`MultiModalEnsembleModel.train_ensemble` draws bags from one dataset; this trains given learner
objects (``select_base_learners(instantiate=True)``' values, or your own objects keeping the
`modalbag.kernel.protocols.Learner` protocol) each on its own arrays, with the same engine, plugins and
records::

    pipeline = EnsembleTrainingPipeline(TrainingConfig.from_dict({...}))
    trained, metrics = pipeline.train_ensemble(learners, learner_configs, bag_data)

The pipeline's config governs training: a learner a trainer plugin built for another config is
rebuilt for this one. ``bag_data[learner_id]`` maps each of the learner's modalities to an array (NaN rows: missing) and
``"labels"`` to its labels. Labels are encoded over all bags together, so every learner predicts
the same classes in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset, encode_training_labels
from modalbag.engine.engine import Engine
from modalbag.errors import DataError
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.components import build_options
from modalbag.kernel.modalities import resolve_modalities
from modalbag.kernel.records import EpochRecord, LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog, default_catalog
from modalbag.kernel.run import TaskInfo

LABELS = "labels"


class EnsembleTrainingPipeline:
    """Trains a set of learners, each on its own bag's arrays, with one run's active plugins."""

    def __init__(self, config: TrainingConfig | Mapping[str, Any] | None = None, *, catalog: Catalog | None = None,
                 plugins: Sequence[object] = ()):
        self.catalog = catalog or default_catalog()
        if config is None or isinstance(config, Mapping):
            config = TrainingConfig.from_dict(dict(config or {}), catalog=self.catalog)
        self.config = config
        self.plugins = tuple(plugins)
        #: Every learner's outcome from the last `train_ensemble`, failed ones included.
        self.results: dict[str, TrainedLearner] = {}

    def train_ensemble(self, learners: Mapping[str, Any],
                       learner_configs: Sequence[LearnerSpec] | Mapping[str, LearnerSpec],
                       bag_data: Mapping[str, Mapping[str, Any]],
                       ) -> tuple[dict[str, Any], dict[str, list[EpochRecord]]]:
        """Fit every learner on its bag's data.

        Returns ``(trained, metrics)``: the fitted learner objects of the learners that trained, and
        every learner's epoch records (a failed learner keeps the epochs it finished; its error is
        in ``self.results[learner_id].error``). A learner that fails does not stop the others.
        """
        specs = _specs_by_id(learner_configs)
        _check_inputs(learners, specs, bag_data)
        order = list(learners)
        labels = [np.asarray(bag_data[lid][LABELS]) for lid in order]
        cfg = self.config
        datasets = []
        for i, lid in enumerate(order):
            spec = specs[lid]
            arrays = {m: (bag_data[lid][m], spec.modality_types.get(m)) if spec.modality_types.get(m)
                      else bag_data[lid][m] for m in spec.modalities}
            datasets.append(MultimodalDataset.from_arrays(arrays, labels[i]))
        if cfg.denoising_modalities:  # modality types stand for their modalities: the run sees names only
            every = {name: s for dataset in datasets for name, s in dataset.specs.items()}
            cfg = attrs.evolve(cfg, denoising_modalities=resolve_modalities(
                "denoising_modalities", cfg.denoising_modalities, every))
        targets, classes = encode_training_labels(np.concatenate(labels), cfg.task_type, cfg.num_classes)
        task = TaskInfo.from_targets(cfg.task_type, targets, classes)
        engine = Engine(self.catalog, self.plugins)
        run = engine.prepare(cfg, task)
        run.hook.modalbag_run_start(run=run)
        offsets = np.cumsum([0] + [len(y) for y in labels])
        self.results = {}
        for i, lid in enumerate(order):
            spec, dataset = specs[lid], datasets[i]
            n = dataset.n_samples
            bag = Bag(id=spec.bag_id, modalities=tuple(spec.modalities), rows=np.arange(n),
                      oob_rows=np.empty(0, dtype=np.int64), seed=cfg.random_state + spec.bag_id)
            self.results[lid] = fit_learner(spec, bag, dataset, targets[offsets[i]:offsets[i + 1]], run,
                                            self.catalog, learner=self._for_this_config(learners[lid], spec))
        run.hook.modalbag_run_end(run=run, learners=self.results)
        trained = {lid: r.model for lid, r in self.results.items() if r.ok}
        return trained, {lid: list(r.records) for lid, r in self.results.items()}

    def _for_this_config(self, learner: Any, spec: LearnerSpec) -> Any:
        """The learner to fit: trainer plugins' learners keep the config they were built with, so one
        built for another config (``select_base_learners(instantiate=True)`` uses defaults) is rebuilt
        by its trainer for this pipeline's config. Other objects are fitted as given."""
        built_with = getattr(learner, "config", None)
        if not isinstance(built_with, TrainingConfig) or built_with == self.config:
            return learner

        component = self.catalog.get("trainer", spec.trainer)
        return component.factory(spec, self.config, build_options(component, self.config))

    def get_training_summary(self, all_metrics: Mapping[str, Sequence[EpochRecord]]) -> dict[str, Any]:
        """Per-learner and overall figures computed from ``all_metrics`` (the second return value).

        ``best_val_loss`` is the lowest validation loss over a learner's epochs (``None`` when it
        had no validation rows); ``training_time`` the sum of its epoch times.
        """
        learners: dict[str, Any] = {}
        for lid, records in all_metrics.items():
            records = list(records)
            val = [(r.val_loss, r.epoch) for r in records if r.val_loss is not None]
            best = min(val) if val else None
            last = records[-1] if records else None
            result = self.results.get(lid)
            learners[lid] = {
                "status": result.status if result is not None else None,
                "error": result.error if result is not None else None,
                "epochs": len(records),
                "final_train_loss": last.train_loss if last else None,
                "best_val_loss": best[0] if best else None,
                "best_epoch": best[1] if best else None,
                "final_accuracy": last.accuracy if last else None,
                "final_f1": last.f1_score if last else None,
                "final_mse": last.mse if last else None,
                "training_time": float(sum(r.training_time for r in records)),
            }
        accuracies = [v["final_accuracy"] for v in learners.values() if v["final_accuracy"] is not None]
        return {
            "total_learners": len(learners),
            "trained": sum(v["status"] == "trained" for v in learners.values()),
            "failed": sum(v["status"] == "failed" for v in learners.values()),
            "total_training_time": float(sum(v["training_time"] for v in learners.values())),
            "average_final_accuracy": float(np.mean(accuracies)) if accuracies else None,
            "learners": learners,
        }


def _specs_by_id(learner_configs: Sequence[LearnerSpec] | Mapping[str, LearnerSpec]) -> dict[str, LearnerSpec]:
    values = learner_configs.values() if isinstance(learner_configs, Mapping) else learner_configs
    out = {}
    for spec in values:
        if not isinstance(spec, LearnerSpec):
            raise DataError(f"learner_configs must hold LearnerSpec records (select_base_learners(instantiate="
                            f"False)), got {type(spec).__name__}")
        out[spec.learner_id] = spec
    return out


def _check_inputs(learners: Mapping[str, Any], specs: Mapping[str, LearnerSpec],
                  bag_data: Mapping[str, Mapping[str, Any]]) -> None:
    if not learners:
        raise DataError("train_ensemble needs at least one learner")
    problems = []
    for lid in learners:
        if lid not in specs:
            problems.append(f"learner {lid!r} has no entry in learner_configs")
            continue
        if lid not in bag_data:
            problems.append(f"learner {lid!r} has no entry in bag_data")
            continue
        data = bag_data[lid]
        missing = [m for m in (*specs[lid].modalities, LABELS) if m not in data]
        if missing:
            problems.append(f"bag_data[{lid!r}] lacks {missing}; it needs each of the learner's modalities "
                            f"{list(specs[lid].modalities)} and {LABELS!r}")
    if problems:
        raise DataError("; ".join(problems))


__all__ = ["EnsembleTrainingPipeline"]
