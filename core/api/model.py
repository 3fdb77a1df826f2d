"""`MultiModalEnsembleModel`: the user-facing workflow of the spec, over the core's parts.

data -> ``create_ensemble`` / ``generate_bags`` -> ``select_base_learners`` -> ``train_ensemble``
-> ``predict`` / ``evaluate`` / ``get_training_summary``. Each step can be called alone; a later
step runs the earlier ones with defaults when they were skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from modalbag.api.distillation import distill
from modalbag.api.strategy import configure_training_strategy
from modalbag.api.workflows import Recommendation, check_training_resources, optimize_for_resources
from modalbag.config.training import RUN_DIR_WRITERS, TASK_TYPES, TrainingConfig
from modalbag.data.bags import Bag, EnsembleConfig, generate_bags, modality_informativeness
from modalbag.data.dataset import MultimodalDataset, encode_labels, encode_training_labels, prediction_inputs
from modalbag.data.domain import AdaptedDataset, DomainWeights, importance_weights, target_domain_inputs
from modalbag.data.frames import frame_to_modalities, is_dataframe, modalities_from_frame
from modalbag.data.preprocessing import Preprocessing
from modalbag.data.synthetic import SyntheticTask
from modalbag.engine.engine import Engine
from modalbag.engine.portfolio import CANNOT_LEARN, Measurement
from modalbag.engine.selection import select_learners
from modalbag.ensemble.ensemble import Ensemble, PredictionResult
from modalbag.errors import ConfigError, DataError, ModalbagError, NotFittedError
from modalbag.io.files import load_array
from modalbag.kernel.components import build_options, wanted_components
from modalbag.kernel.modalities import resolve_modalities
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog, default_catalog
from modalbag.kernel.run import TaskInfo
from modalbag.logs import get_logger
from modalbag.reports.diversity import diversity_report
from modalbag.reports.domains import ReportRunner
from modalbag.reports.headline import ensemble_headline
from modalbag.reports.training import TrainingReports
from modalbag.store.lock import run_directory_lock
from modalbag.store.persistence import ModelStore, read_export
from modalbag.store.runrecord import default_run_dir
from modalbag.training.metrics import task_metrics

log = get_logger("modalbag.model")


class TrainingFailedError(ModalbagError, RuntimeError):
    """Every learner failed: nothing to predict with. The message lists each learner's error."""


class MultiModalEnsembleModel:
    """An ensemble of learners over modality subsets of one multimodal dataset."""

    def __init__(self, dataset: MultimodalDataset, *, task_type: str = "classification",
                 catalog: Catalog | None = None, plugins: Sequence[object] = (),
                 synthetic_task: SyntheticTask | None = None, target_data: Any = None):
        if task_type not in TASK_TYPES:
            raise ConfigError(f"task_type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
        self.dataset = dataset
        self.task_type = task_type
        self.catalog = catalog or default_catalog()
        self.plugins = tuple(plugins)
        self.synthetic_task = synthetic_task
        self.ensemble_config: EnsembleConfig | None = None
        self.bags: list[Bag] | None = None
        self.learner_specs: list[LearnerSpec] | None = None
        self.learners: dict[str, TrainedLearner] = {}
        self.training_config: TrainingConfig | None = None
        self.ensemble: Ensemble | None = None
        self.cross_fits: dict[tuple[str, ...], Any] = {}
        self.task: TaskInfo | None = None
        self.run_id: str | None = None
        self.run_notes: list[str] = []  # what the last run did differently from its config, and why
        self.preprocessing: Preprocessing | None = None
        self._export_dir: Path | None = None  # the last export written or loaded
        self.student: TrainedLearner | None = None  # knowledge_distillation's network, when asked for
        self._validation_predictions: dict[str, dict[str, np.ndarray]] | None = None
        #: Unlabelled target-domain rows for ``domain_adaptation`` (``target_data=``), checked against
        #: the training modalities; None without.
        self.target_data: MultimodalDataset | None = (None if target_data is None
                                                      else target_domain_inputs(target_data, dataset.specs))
        #: The importance weights of the last domain_adaptation run (``.summary()``: the domain
        #: classifier's AUC, the weights' range and effective rows); None without.
        self.domain_weights: DomainWeights | None = None

    @classmethod
    def from_export(cls, path: str | Path, *, catalog: Catalog | None = None) -> MultiModalEnsembleModel:
        """The model an export folder (or a run directory's export) holds, ready to predict; see
        `load_ensemble`."""
        saved = read_export(path, catalog=catalog)
        model = cls(saved.dataset, task_type=saved.task.task_type, catalog=saved.catalog)
        model.training_config, model.ensemble_config, model.bags = (saved.training_config, saved.ensemble_config,
                                                                    saved.bags)
        model.learners, model.task, model.run_id = saved.learners, saved.task, saved.run_id
        model.learner_specs = [r.spec for r in saved.learners.values()]
        model.ensemble = saved.ensemble
        model._validation_predictions = saved.validation_predictions
        model._export_dir = saved.root
        return model

    # -- bags -------------------------------------------------------------------------------------

    def create_ensemble(self, n_bags: int = 20, dropout_strategy: str = "adaptive", **options: Any) -> EnsembleConfig:
        """Set how bags are drawn (``sample_ratio``, ``modality_keep_prob``, ``max_modalities``,
        ``allow_repeats``, ``random_state``); `generate_bags` draws them."""
        try:
            self.ensemble_config = EnsembleConfig(n_bags=n_bags, dropout_strategy=dropout_strategy, **options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"create_ensemble: {exc}") from exc
        self.bags = self.learner_specs = None
        return self.ensemble_config

    def generate_bags(self) -> list[Bag]:
        """Draw the bags: modality subset, bootstrap rows, out-of-bag rows and seed of each."""
        config = self.ensemble_config or self.create_ensemble()
        info = None
        if config.dropout_strategy == "adaptive" and self.dataset.labels is not None:
            targets, _ = encode_labels(self.dataset.labels, self.task_type)
            info = modality_informativeness(self.dataset, targets, self.task_type, config.random_state)
        self.bags = generate_bags(self.dataset, config, info)
        self.learner_specs = None
        return self.bags

    # -- learners ---------------------------------------------------------------------------------

    def select_base_learners(self, task_type: str | None = None, num_classes: int | None = None,
                             optimization_strategy: str = "balanced", instantiate: bool = True,
                             trainers: Sequence[str] | None = None) -> dict[str, Any]:
        """Choose a trainer and architecture per bag; returns ``{learner_id: learner}``.

        With ``instantiate=True`` each value is an unfitted learner object of its trainer plugin,
        otherwise its `LearnerSpec`.
        """
        task_type = self._task_type(task_type)
        if self.bags is None:
            self.generate_bags()
        assert self.bags is not None
        if num_classes is not None and self.dataset.labels is not None:
            encode_training_labels(self.dataset.labels, task_type, num_classes)  # checks num_classes against them
        n_classes = num_classes or self._infer_num_classes(task_type)
        self.learner_specs = select_learners(self.bags, self.dataset.specs, task_type=task_type,
                                             num_classes=n_classes, strategy=optimization_strategy,
                                             catalog=self.catalog, trainers=trainers)
        if not instantiate:
            return {s.learner_id: s for s in self.learner_specs}
        config = TrainingConfig.from_dict({"task_type": task_type, "num_classes": num_classes}, catalog=self.catalog)
        out = {}
        for spec in self.learner_specs:
            comp = self.catalog.get("trainer", spec.trainer)

            out[spec.learner_id] = comp.factory(spec, config, build_options(comp, config))
        return out

    def _task_type(self, task_type: str | None) -> str:
        if task_type is not None and task_type != self.task_type:
            if self.learners:
                raise ConfigError(f"this model was trained for {self.task_type!r}; create a new model for "
                                  f"task_type={task_type!r}")
            self.task_type = task_type
        return self.task_type

    def _infer_num_classes(self, task_type: str) -> int:
        if self.dataset.labels is None or task_type == "regression":
            return 1
        _, classes = encode_labels(self.dataset.labels, task_type)
        return len(classes) if classes is not None else 1

    # -- preparing training -------------------------------------------------------------------------

    def apply_multimodal_preprocessing(self, text_normalization: bool = False, image_augmentation: bool = False,
                                       feature_scaling: bool = True, modality_dropout: float = 0.0) -> Preprocessing:
        """Choose the preprocessing the next ``train_ensemble`` uses; returns the stored choice."""
        self.preprocessing = Preprocessing.choose(text_normalization, image_augmentation, feature_scaling,
                                                  modality_dropout)
        return self.preprocessing

    def configure_training_strategy(self, learners: Mapping[str, Any] | None = None, *, epochs: int | None = None,
                                    probe_batches: int = 4, **config: Any) -> dict[str, Any]:
        """Recommend how to train ``learners`` on this machine from timed probe steps (see
        `modalbag.api.strategy.configure_training_strategy`)."""
        return configure_training_strategy(self, learners, epochs=epochs, probe_batches=probe_batches, **config)

    # -- training ---------------------------------------------------------------------------------

    def train_ensemble(self, resume: bool = False, target_data: Any = None, **config: Any) -> dict[str, TrainedLearner]:
        """Train every bag's learner; returns the learners that trained (failures are in the summary).

        Takes every `TrainingConfig` option (and plugin options) as keyword arguments. With
        ``run_dir`` the run is recorded there and exported to ``<run_dir>/export`` at the end;
        ``resume=True`` continues the run recorded in ``run_dir`` (see `modalbag.store.runrecord`).
        An option that writes under ``run_dir`` (`RUN_DIR_WRITERS`) without one gets a new
        ``runs/run-<time>`` in the working directory, as TensorBoard's ``SummaryWriter`` does.
        ``target_data``: unlabelled rows of the domain the model will be used on, ``{modality: array}``
        like the training data, for ``domain_adaptation`` (kept with the model for later runs; also
        accepted by the constructor and ``create_model_from_arrays``).
        """
        if self.dataset.labels is None:
            raise DataError("this model has no labels: pass labels= when creating it")
        if target_data is not None:
            self.target_data = target_domain_inputs(target_data, self.dataset.specs)
        run_dir = config.get("run_dir")
        writers = [option for option in RUN_DIR_WRITERS if config.get(option)]
        if not run_dir and writers and not resume:
            run_dir = config["run_dir"] = str(default_run_dir("run"))
            log.info("run.default_run_dir", run_dir=run_dir, options=writers)
        if not run_dir:
            return self._train(resume, config)
        with run_directory_lock(run_dir):  # one run writes a run directory, from its record to its export
            return self._train(resume, config)

    def _train(self, resume: bool, config: dict[str, Any]) -> dict[str, TrainedLearner]:
        previous, config = ModelStore(self).resume_record(config) if resume else (None, config)
        preprocessing = {} if self.preprocessing is None else self.preprocessing.training_options()
        config = {**preprocessing, **config}  # explicit options win
        task_type = self._task_type(config.get("task_type"))
        cfg = TrainingConfig.from_dict({**config, "task_type": task_type}, catalog=self.catalog)
        if cfg.denoising_modalities:  # modality types stand for their modalities: the run sees names only
            cfg = attrs.evolve(cfg, denoising_modalities=resolve_modalities(
                "denoising_modalities", cfg.denoising_modalities, self.dataset.specs))
        dataset = self._adapted_dataset(cfg)
        targets, classes = encode_training_labels(self.dataset.labels, task_type, cfg.num_classes,
                                                  self.dataset.n_samples)
        task = TaskInfo.from_targets(task_type, targets, classes)
        engine = Engine(self.catalog, self.plugins)
        run = engine.prepare(cfg, task)  # config and plugin errors surface here, before any training
        if previous is not None:  # the interrupted run's id, bags and specs: its checkpoints apply
            run.run_id, self.bags, self.learner_specs = previous.run_id, previous.bags(), previous.specs()
        if self.bags is None:
            if self.ensemble_config is None:
                self.create_ensemble(random_state=cfg.random_state)
            self.generate_bags()
        if self.learner_specs is None:
            self.select_base_learners(task_type, cfg.num_classes, instantiate=False)
        assert self.bags is not None and self.learner_specs is not None
        # each modality subset's trainer chosen by measurement (its fold models kept as its bags where
        # the subset is small); its cross-fit weighs the ensemble
        plan = Measurement(engine, cfg, task, dataset, targets).measure_all(
            self.bags, self.learner_specs, choose=previous is None)
        self.bags, self.learner_specs, self.cross_fits = plan.bags, plan.specs, plan.cross_fits
        bags = {b.id: b for b in self.bags}
        self.learners = engine.train(run, self.learner_specs, bags, dataset, targets, resume=previous,
                                     adopted=plan.fitted)
        self.training_config, self.task, self.run_id = cfg, task, run.run_id
        self.run_notes = list(run.notes)
        trained = {lid: r for lid, r in self.learners.items() if r.ok}
        if not trained:
            errors = "\n".join(f"  {lid}: {r.error}" for lid, r in self.learners.items())
            raise TrainingFailedError(f"every learner failed:\n{errors}")
        self.domain_weights = None
        if cfg.domain_adaptation:  # the combinations weigh each training row by how target-like it is
            assert self.target_data is not None  # _adapted_dataset refuses the run without it
            self.domain_weights = importance_weights(self.dataset, self.target_data, cfg.random_state)
            log.info("training.domain_weights", **self.domain_weights.summary())
        self.ensemble = Ensemble.fit(trained, self.dataset, targets, task, bags, cfg.random_state, self.cross_fits,
                                     diversity_weight=cfg.ensemble_diversity_weight,
                                     row_weights=None if self.domain_weights is None else self.domain_weights.weights)
        ModelStore(self).run_finished()
        if cfg.min_performance is not None:
            check = self.performance_check()
            if check["met"] is False:
                log.warning("training.below_min_performance", **check)
        if cfg.knowledge_distillation:
            self.student = self.distill(temperature=cfg.distillation_temperature)
        if cfg.export_for_integration:
            assert cfg.run_dir is not None  # the config check requires it
            self.export_training_artifacts(Path(cfg.run_dir) / "export")
        return trained

    def _adapted_dataset(self, cfg: TrainingConfig) -> MultimodalDataset:
        """The training data, carrying the target domain's rows when ``domain_adaptation`` is on."""
        if not cfg.domain_adaptation:
            return self.dataset
        if self.target_data is None:
            raise ConfigError(f"domain_adaptation={cfg.domain_adaptation!r} adapts the learners to unlabelled rows "
                              f"of the target domain, but none were given: pass target_data={{modality: array}} "
                              f"(the training modalities: {', '.join(self.dataset.names)}) to train_ensemble or "
                              f"create_model_from_arrays, or set domain_adaptation=None")
        return AdaptedDataset.of(self.dataset, self.target_data)

    def distill(self, *, temperature: float | None = None, modality_dropout: float = 0.3,
                **options: Any) -> TrainedLearner:
        """One student network taught the ensemble's soft targets, predicting from any subset of
        modalities; see `modalbag.api.distillation`. ``temperature`` defaults to the run's
        ``distillation_temperature``."""
        if temperature is None:
            temperature = 2.0 if self.training_config is None else self.training_config.distillation_temperature
        return distill(self, temperature=temperature, modality_dropout=modality_dropout, **options)

    def performance_check(self) -> dict[str, Any]:
        """The ensemble's out-of-fold score on the training rows against ``min_performance``: ``metric``,
        ``score``, ``min_performance``, ``met`` (None with a ``note`` where the score cannot be measured
        or no floor is set)."""
        floor = None if self.training_config is None else self.training_config.min_performance
        metric = "r2" if self.task_type == "regression" else "accuracy"
        headline = ensemble_headline(self, metric=metric)
        score = headline["score"]
        out: dict[str, Any] = {"metric": metric, "score": score, "source": headline["source"],
                               "min_performance": floor, "met": None}
        if floor is None:
            out["note"] = "no min_performance set"
        elif score is None:
            out["note"] = "; ".join(headline["notes"]) or "the out-of-fold score could not be measured"
        else:
            out["met"] = bool(score >= floor)
        return out

    # -- prediction -------------------------------------------------------------------------------

    def _require_ensemble(self) -> Ensemble:
        if self.ensemble is None:
            raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
        return self.ensemble

    def modality_data(self, data: Any) -> Any:
        """``data`` as ``{name: array}``: a DataFrame is split into the column groups the model was
        trained on (`modalbag.data.frames`); a mapping (or None) is returned as it is."""
        if not is_dataframe(data):
            return data
        if self.dataset.columns is None:
            raise DataError(f"this model was trained on one array per modality, not on a DataFrame's column groups: "
                            f"give the data as {{name: array}} with the modalities {', '.join(self.dataset.names)}")
        return frame_to_modalities(data, self.dataset.columns)

    def predict_details(self, data: Mapping[str, Any]) -> PredictionResult:
        """Predictions plus which samples fell back to the prior and how many learners each used.

        ``data``: ``{name: array}``, or a DataFrame when the model was trained on one (its column
        groups are read again by name; a row all NaN in a group lacks that modality)."""
        ensemble = self._require_ensemble()
        return ensemble.predict(prediction_inputs(self.modality_data(data), self.dataset.specs))

    def predict(self, data: Mapping[str, Any]) -> np.ndarray:
        """Class labels (classification), a 0/1 matrix (multilabel) or values (regression)."""
        return self.predict_details(data).predictions

    def predict_proba(self, data: Mapping[str, Any]) -> np.ndarray:
        """Class probabilities (n, C), columns in the order of ``classes_``."""
        if self.task_type == "regression":
            raise ConfigError("predict_proba is for classification and multilabel tasks; use predict")
        return self.predict_details(data).output

    @property
    def classes_(self) -> np.ndarray | None:
        return None if self.task is None else self.task.classes

    def evaluate(self, data: Mapping[str, Any], labels: Any) -> dict[str, float]:
        """Task metrics of the ensemble on ``(data, labels)``, plus how many samples used the prior."""
        ensemble = self._require_ensemble()
        assert self.task is not None and self.training_config is not None
        details = self.predict_details(data)
        y = np.asarray(labels)
        if self.task_type == "classification":
            known = {c: i for i, c in enumerate(self.task.classes.tolist())}
            try:
                y = np.array([known[v] for v in y.tolist()])
            except KeyError as exc:
                raise DataError(f"label {exc.args[0]!r} was not seen in training; classes: {list(known)}") from exc
        else:
            y, _ = encode_labels(y, self.task_type, self.training_config.num_classes)
        if len(y) != len(details.output):
            raise DataError(f"labels have {len(y)} rows but the data has {len(details.output)} samples")
        metrics = task_metrics(self.task_type, y, details.output)
        metrics["n_samples"] = len(y)
        metrics["n_fallback"] = int(details.fallback.sum())
        del ensemble
        return metrics

    # -- export ------------------------------------------------------------------------------------

    def export_training_artifacts(self, directory: str | Path) -> Path:
        """Write everything ensemble integration needs to ``directory`` (replaced atomically); see
        `ModelStore.export_training_artifacts` and docs/export.md."""
        return ModelStore(self).export_training_artifacts(directory)

    def validation_predictions(self) -> dict[str, dict[str, np.ndarray]]:
        """Each trained learner's output on its own validation rows: ``{id: {rows, output, targets}}``."""
        return ModelStore(self).validation_predictions()

    def prepare_for_integration(self, directory: str | Path | None = None, *,
                                tolerance: float = 1e-6) -> dict[str, Any]:
        """Export, reload the export and check it against this model; see `ModelStore.prepare_for_integration`."""
        return ModelStore(self).prepare_for_integration(directory, tolerance=tolerance)

    # -- training reports (from the run's records) ---------------------------------------------------

    def get_detailed_training_report(self) -> dict[str, Any]:
        """Times, memory, accuracy, convergence, overfitting, denoising, throughput and stability of the
        run. See `TrainingReports.get_detailed_training_report`."""
        return TrainingReports(self).get_detailed_training_report()

    def measure_denoising_impact(self, data: Mapping[str, Any], labels: Any, *, noise: float = 1.0,
                                 seed: int = 0) -> dict[str, Any]:
        """Train a twin with ``enable_denoising`` flipped and score both on ``(data, labels)`` with all
        modalities, each missing, each alone and noised (see `modalbag.reports.denoising_impact`). See
        `TrainingReports.measure_denoising_impact`."""
        return TrainingReports(self).measure_denoising_impact(self.modality_data(data), labels, noise=noise, seed=seed)

    def get_learner_training_analysis(self) -> dict[str, dict[str, Any]]:
        """Per learner: trainer and architecture, status, time, and the per-learner formulas. See
        `TrainingReports.get_learner_training_analysis`."""
        return TrainingReports(self).get_learner_training_analysis()

    def get_training_diagnostics(self) -> dict[str, Any]:
        """Problems found in the records: denoising that dominates or does not learn, diverged or failed
        learners, validation loss climbing; each with the measured numbers. See
        `TrainingReports.get_training_diagnostics`."""
        return TrainingReports(self).get_training_diagnostics()

    def get_training_stability_report(self) -> dict[str, Any]:
        """Stability per learner and its issues; ``unstable_training`` when any issue is high-severity or
        the mean stability score is below `modalbag.reports.analytics.STABLE_SCORE`. See
        `TrainingReports.get_training_stability_report`."""
        return TrainingReports(self).get_training_stability_report()

    def assess_training_stability(self) -> float | None:
        """The run's stability score (mean over trained learners of ``D / (D + U)``), None when no learner
        trained for two epochs or more. See `TrainingReports.assess_training_stability`."""
        return TrainingReports(self).assess_training_stability()

    def check_training_resources(self, training_requirements: Mapping[str, Any] = ()) -> dict[str, Any]:
        """Before training: cores, free memory and disk measured against what the planned run needs
        (``sufficient``, ``limitations``, ``recommended_options``). See
        `modalbag.api.workflows.check_training_resources`."""
        return check_training_resources(self, training_requirements)

    def optimize_for_resources(self, training_requirements: Mapping[str, Any] = (),
                               resource_check: Mapping[str, Any] | None = None) -> Recommendation:
        """``training_requirements`` changed to fit this machine (fewer learners at once, a smaller batch,
        no checkpoints when the disk is short), with the reasons; checks the resources first unless
        ``resource_check`` is given. See `modalbag.api.workflows.optimize_for_resources`."""
        check = resource_check if resource_check is not None else self.check_training_resources(training_requirements)
        return optimize_for_resources(training_requirements, check)

    def check_resource_constraints(self) -> dict[str, Any]:
        """Memory against its limit and slow learners, from the recorded peaks and throughputs. See
        `TrainingReports.check_resource_constraints`."""
        return TrainingReports(self).check_resource_constraints()

    def get_multimodal_learning_analysis(self) -> dict[str, Any]:
        """Do learners that fuse modalities beat single-modality ones (on their validation rows)?. See
        `TrainingReports.get_multimodal_learning_analysis`."""
        return TrainingReports(self).get_multimodal_learning_analysis()

    def analyze_modality_importance(self, data: Mapping[str, Any] | None = None, labels: Any = None, *,
                                    metric: str | None = None) -> dict[str, Any]:
        """The drop in the ensemble's validation score when each modality is removed. See
        `TrainingReports.analyze_modality_importance`."""
        return TrainingReports(self).analyze_modality_importance(self.modality_data(data), labels, metric=metric)

    def get_diversity_report(self, data: Mapping[str, Any] | None = None, labels: Any = None) -> dict[str, Any]:
        """The experts' pairwise disagreement and error correlation on their out-of-fold rows, and with
        held-out data the accuracy with and without ``ensemble_diversity_weight``. See
        `modalbag.reports.diversity`."""
        return diversity_report(self, self.modality_data(data), labels)

    def get_validation_report(self) -> dict[str, Any]:
        """Overfitting (validation loss rising from its minimum) and generalization gaps per learner. See
        `TrainingReports.get_validation_report`."""
        return TrainingReports(self).get_validation_report()

    def validate_training_results(self, trained_learners: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check trained learners: each has validation metrics, beats chance, and recorded finite losses.
        See `TrainingReports.validate_training_results`."""
        return TrainingReports(self).validate_training_results(trained_learners)

    def validate_cross_modal_learning(self) -> dict[str, Any]:
        """How much each denoising objective learned: ``effectiveness`` is the mean over objectives of
        ``(L_first - L_last) / L_first``; None (with a note) when no objective ran. See
        `TrainingReports.validate_cross_modal_learning`."""
        return TrainingReports(self).validate_cross_modal_learning()

    def get_pipeline_status(self) -> dict[str, Any]:
        """Which workflow steps have run (data, ensemble config, bags, learners, training, ensemble). See
        `TrainingReports.get_pipeline_status`."""
        return TrainingReports(self).get_pipeline_status()

    def save_training_plots(self, directory: str | PathLike[str]) -> dict[str, Path]:
        """Write the run's PNG plots to ``directory``: training curves, learner comparison, and (when
        measurable) modality importance. See `TrainingReports.save_training_plots`."""
        return TrainingReports(self).save_training_plots(directory)

    def write_html_report(self, path: str | PathLike[str] | None = None, data: Mapping[str, Any] | None = None,
                          labels: Any = None) -> Path:
        """One self-contained HTML file: the reports' numbers and the plots inline (PNG data URIs). See
        `TrainingReports.write_html_report`."""
        return TrainingReports(self).write_html_report(path, self.modality_data(data), labels)

    # -- reports on held-out data (report plugins) --------------------------------------------------

    def report(self, name: str, data: Mapping[str, Any] | None = None, labels: Any = None,
               **inputs: Any) -> dict[str, Any]:
        """Run the report plugin ``name`` on held-out ``(data, labels)`` (see `ReportRunner.run`); with a
        ``run_dir`` it is also written to ``<run_dir>/reports/<name>.json``."""
        run_dir = self.training_config.run_dir if self.training_config is not None else None
        return ReportRunner(self.catalog, run_dir).run(name, self, self.modality_data(data), labels, **inputs)

    def get_robustness_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                              **inputs: Any) -> dict[str, Any]:
        """Scores over modality subsets, missing shares and noise; MultiBench robustness (``robustness``)."""
        return self.report("robustness", data, labels, **inputs)

    def get_medical_validation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                      **inputs: Any) -> dict[str, Any]:
        """Clinical rates, AUROC, calibration, intervals, robustness, importance (``medical``)."""
        return self.report("medical", data, labels, **inputs)

    def get_safety_validation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                     **inputs: Any) -> dict[str, Any]:
        """Sensor-failure scenarios, redundancy, latency, throughput, memory, power (``autonomous_vehicle``)."""
        return self.report("autonomous_vehicle", data, labels, **inputs)

    def get_financial_performance_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                         **inputs: Any) -> dict[str, Any]:
        """Predictions as trading signals on the user's returns (``finance``)."""
        return self.report("finance", data, labels, **inputs)

    def get_recommendation_report(self, data: Mapping[str, Any] | None = None, labels: Any = None,
                                  **inputs: Any) -> dict[str, Any]:
        """Ranking metrics, coverage, diversity, cold start and modality contributions (``recommendation``)."""
        return self.report("recommendation", data, labels, **inputs)

    # -- reports ----------------------------------------------------------------------------------

    def get_training_summary(self) -> dict[str, Any]:
        """Measured results of the last ``train_ensemble``: performance, times, status, errors."""
        if not self.learners:
            raise NotFittedError("nothing trained yet: call train_ensemble() first")
        trained = [r for r in self.learners.values() if r.ok]
        keys = ("accuracy", "f1") if self.task_type != "regression" else ("mse", "r2")
        average = {}
        for key in keys:
            values = [r.validation[key] for r in trained if key in r.validation]
            average[key] = float(np.mean(values)) if values else None
        return {
            "run_id": self.run_id,
            "task_type": self.task_type,
            "total_learners": len(self.learners),
            "trained": len(trained),
            "failed": len(self.learners) - len(trained),
            "average_performance": average,
            "average_performance_source": "each learner's held-out validation rows (validation_split)",
            "training_times": {lid: r.training_time for lid, r in self.learners.items()},
            "learner_status": {lid: r.status for lid, r in self.learners.items()},
            "epochs_trained": {lid: len(r.records) for lid, r in self.learners.items()},
            "learner_performance": {lid: dict(r.validation) for lid, r in self.learners.items()},
            "modalities": {lid: list(r.spec.modalities) for lid, r in self.learners.items()},
            "errors": {lid: r.error for lid, r in self.learners.items() if not r.ok},
            "notes": {lid: list(r.notes) for lid, r in self.learners.items() if r.notes},
            "run_notes": list(self.run_notes),
            "selection": self._selection_summary(),
            "unavailable_candidates": self._unavailable_candidates(),
            "combination": self._combination_summary(),
            "active_plugins": None,
        } | self._plugins_used()

    def _selection_summary(self) -> dict[str, Any]:
        """Per modality subset: the trainer chosen, why, and every candidate's measured score."""
        out = {}
        for record in self.learners.values():
            spec = record.spec
            key = "+".join(sorted(spec.modalities))
            if key not in out:
                out[key] = {"trainer": spec.trainer, "reason": spec.reason, "candidates": list(spec.candidates),
                            "measured": {n: dict(v) for n, v in spec.measured.items()}}
        return out

    def _unavailable_candidates(self) -> dict[str, str]:
        """Portfolio trainers that could not compete because their library or plugin is missing, with
        the reason: the same config and seed choose differently where they are installed."""
        out: dict[str, str] = {}
        for record in self.learners.values():
            for name, score in record.spec.measured.items():
                reason = score.get("skipped")
                if reason is not None and reason != CANNOT_LEARN:
                    out.setdefault(name, reason)
        return out

    def _combination_summary(self) -> dict[str, Any]:
        """The rule chosen for every availability pattern fitted so far (all modalities at least)."""
        if self.ensemble is None or not self.ensemble.learners:
            return {}
        self.ensemble.combination_for(list(self.ensemble.learners))  # the all-modalities pattern
        out = {" & ".join(sorted({m for lid in key for m in self.ensemble.learners[lid].spec.modalities})):
               {"rule": c.rule, "experts": list(c.experts), "cv_loss": dict(c.cv_loss), "rows": c.n_rows}
               for key, c in self.ensemble.combinations.items()}
        shared = self.ensemble.shared
        if shared is not None:  # beyond five modalities: every other pattern, restricted from it
            out["every other pattern (shared)"] = {"rule": shared.rule, "experts": list(shared.experts),
                                                   "cv_loss": {}, "rows": shared.n_rows,
                                                   "weights": [round(float(w), 4) for w in shared.weights]}
        return out

    def _plugins_used(self) -> dict[str, Any]:
        cfg = self.training_config
        if cfg is None:
            return {}

        return {"active_plugins": [f"{kind}.{name}" for _, kind, name in wanted_components(cfg)]
                + sorted({f"trainer.{r.spec.trainer}" for r in self.learners.values()})}


# -- constructors ---------------------------------------------------------------------------------


def create_model_from_arrays(data: Any, labels: Any = None, *, task_type: str = "classification",
                             masks: Mapping[str, Any] | None = None, modalities: Mapping[str, Any] | None = None,
                             **model_options: Any) -> MultiModalEnsembleModel:
    """A model over in-memory arrays: ``{name: array}`` or ``{name: (array, modality_type)}``, or one
    DataFrame whose column groups are the modalities: ``create_model_from_arrays(df, labels,
    modalities={"text": "emb_*", "meta": ["age", "income"]})`` (a group: column names or a
    ``"prefix*"`` pattern, optionally ``(columns, type)``; a row all NaN in a group lacks that
    modality; see `modalbag.data.frames`). The model keeps the groups' column names, also through
    export and `load_ensemble`, so ``predict(df)`` reads the same columns from a new table."""
    columns = None
    if is_dataframe(data):
        data, columns = modalities_from_frame(data, modalities)
    elif modalities is not None:
        raise ConfigError("modalities= names a DataFrame's column groups; the data here is already one array per "
                          "modality ({name: array}): leave modalities out, or pass the DataFrame")
    dataset = MultimodalDataset.from_arrays(data, labels, masks=masks)
    dataset.columns = columns
    if labels is not None:
        encode_labels(labels, task_type, None, dataset.n_samples)  # fail now, not at training
    return MultiModalEnsembleModel(dataset, task_type=task_type, **model_options)


def create_model_from_files(paths: Mapping[str, str | PathLike[str] | tuple[Any, str]], labels: Any = None, *,
                            task_type: str = "classification", **model_options: Any) -> MultiModalEnsembleModel:
    """A model over files: ``{name: path}`` or ``{name: (path, modality_type)}``; ``labels`` an
    array or a file. Reads .npy (memory-mapped), .npz, .csv/.tsv, and .h5/.parquet when their
    library is installed."""

    data: dict[str, Any] = {}
    for name, entry in paths.items():
        path, kind = entry if isinstance(entry, tuple) else (entry, None)
        array = load_array(path, name=name)
        data[name] = (array, kind) if kind else array
    if isinstance(labels, (str, PathLike)):
        labels = np.asarray(load_array(labels, name="labels"))
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
    return create_model_from_arrays(data, labels, task_type=task_type, **model_options)


def load_ensemble(path: str | Path, *, catalog: Catalog | None = None) -> MultiModalEnsembleModel:
    """A `MultiModalEnsembleModel` from an export folder or a run directory, ready to predict.

    Every file's checksum is verified before it is parsed; a missing, tampered, truncated or
    other-version file is an `ArtifactError` naming it. Training reports work on the result (the
    epoch records are part of the export); retraining needs the data, which an export does not hold.
    """
    return MultiModalEnsembleModel.from_export(path, catalog=catalog)


def create_synthetic_model(modalities: Mapping[str, Any], n_samples: int = 1000, n_classes: int = 2, *,
                           task_type: str = "classification", random_state: int = 0, noise: float = 0.5,
                           **model_options: Any) -> MultiModalEnsembleModel:
    """A model over a synthetic task: ``{name: (dim, modality_type)}`` (``((C, H, W), 'image')`` for
    raw images, ``((T, F), 'sequence')``). ``model.synthetic_task.sample(n, seed)`` draws held-out data."""
    task = SyntheticTask.create(modalities, n_classes=n_classes, task_type=task_type,
                                random_state=random_state, noise=noise)
    data, labels = task.sample(n_samples, random_state)
    typed = {name: (array, task.maps[name].kind) for name, array in data.items()}
    return create_model_from_arrays(typed, labels, task_type=task_type, synthetic_task=task, **model_options)


__all__ = [
    "MultiModalEnsembleModel",
    "TrainingFailedError",
    "create_model_from_arrays",
    "create_model_from_files",
    "create_synthetic_model",
    "load_ensemble",
]
