"""Training reports of a model: every number measured from the run's epoch records.

The formulas live in `modalbag.reports.analytics` (and docs/monitoring.md); these methods gather them per
learner and per run. Anything that was not measured is ``None`` with the reason under ``notes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modalbag.errors import ConfigError, NotFittedError
from modalbag.io.artifacts import atomic_write_bytes
from modalbag.io.machine import describe_machine, machine_line
from modalbag.kernel.records import TrainedLearner
from modalbag.reports import analytics as A
from modalbag.reports import html as H
from modalbag.reports import plots
from modalbag.reports.denoising_impact import measure_denoising_impact
from modalbag.reports.headline import ensemble_headline
from modalbag.reports.robustness import LOWER_IS_BETTER, modality_ablation, resolve_metric
from modalbag.reports.values import Report
from modalbag.training.metrics import task_metrics


def _physical_memory_mb() -> float | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (ValueError, OSError, AttributeError):
        return None


def learner_cross_modal(learner: TrainedLearner) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec's per-learner cross-modal keys, from the last epoch that recorded each objective, and
    the reason for each one left None.

    ``multimodal``: the learner sees two modalities or more. ``reconstruction_scores``: per target
    modality, the ``reconstruction`` objective's unweighted loss (`EpochRecord.modal_reconstruction_loss`,
    lower is better). ``alignment_score``: ``alignment``'s top-1 retrieval accuracy over modality pairs.
    ``consistency_score``: ``consistency``'s agreement of full and modality-dropped predictions.
    """
    def last(read: Any) -> Any:
        return next((v for v in (read(r) for r in reversed(learner.records)) if v is not None and v != {}), None)

    multimodal = len(learner.spec.modalities) > 1
    out = {"multimodal": multimodal,
           "reconstruction_scores": last(lambda r: r.modal_reconstruction_loss),
           "alignment_score": last(lambda r: r.modal_alignment_score.get("all_pairs")),
           "consistency_score": last(lambda r: r.modal_consistency_score)}
    reasons = {}
    for key, objective in (("reconstruction_scores", "reconstruction"), ("alignment_score", "alignment"),
                           ("consistency_score", "consistency")):
        if out[key] is None:
            reasons[key] = (f"the {objective} objective did not run on this learner (it needs enable_denoising with "
                            f"{objective!r} in denoising_objectives, a neural learner and two modalities or more)"
                            if multimodal else
                            f"a single-modality learner has no cross-modal {objective}")
    return out, reasons


class TrainingReports:
    """A trained model's training reports, every number from its learners' records, its ensemble and its
    summary. Built over any object with the model's attributes (`modalbag.MultiModalEnsembleModel`
    delegates to it); it keeps no state of its own."""

    def __init__(self, model: Any):
        self.model = model

    # -- helpers ----------------------------------------------------------------------------------

    def _trained_learners(self) -> dict[str, TrainedLearner]:
        if not getattr(self.model, "learners", None):
            raise NotFittedError("nothing trained yet: call train_ensemble() first")
        return self.model.learners

    def _all_records(self) -> list[Any]:
        return [r for learner in self._trained_learners().values() for r in learner.records]

    # -- the overview -----------------------------------------------------------------------------

    def get_detailed_training_report(self) -> dict[str, Any]:
        """Times, memory, accuracy, convergence, overfitting, denoising, throughput and stability of the run.

        ``total_time`` is the learners' summed training seconds (the wall time when one learner
        trains at a time); per-learner figures are averaged over trained learners. See
        `modalbag.reports.analytics` for each formula.
        """
        learners = self._trained_learners()
        trained = [r for r in learners.values() if r.ok]
        records = self._all_records()
        notes: list[str] = []
        summaries = {lid: A.learner_summary(r) for lid, r in learners.items() if r.ok}
        peak = max((r.memory_usage_mb for r in records if r.memory_usage_mb is not None), default=None)
        if peak is None:
            notes.append("peak_memory: no epoch record carries memory_usage_mb")
        gpu = [r.metrics["gpu_utilization"] for r in records if "gpu_utilization" in r.metrics]
        if not gpu:
            notes.append("gpu_utilization: not measured; the learners trained without a GPU that reports "
                         "utilisation")
        accuracies = [r.accuracy for r in records if r.accuracy is not None]
        if not accuracies:
            notes.append("best_accuracy: no epoch recorded a validation accuracy "
                         f"({'regression task' if self.model.task_type == 'regression' else 'no validation rows'})")
        denoising = A.denoising_analysis(trained)
        if not denoising:
            notes.append("denoising_analysis: no denoising objective losses were recorded (enable_denoising off, "
                         "or no learner had two modalities)")
        impact = getattr(self.model, "denoising_impact", None)
        if impact is None:
            notes.append("denoising_impact: not measured; model.measure_denoising_impact(data, labels) trains a "
                         "twin with denoising flipped and scores both on your held-out data")
        update_rate = A.update_rate(records)
        if update_rate is None:
            notes.append("update_rate: optimizer steps are counted where gradients are clipped; set "
                         "gradient_clipping (neural learners only)")
        stability = A.mean_or_none(s["stability_score"] for s in summaries.values())
        if stability is None:
            notes.append("stability_score: needs learners with at least two epochs")
        best = A.best_learner(learners, self.model.task_type)
        for key, value in (("convergence_epoch", A.median_or_none(s["convergence_epoch"] for s in summaries.values())),
                           ("overfitting_score", A.mean_or_none(s["overfitting_score"] for s in summaries.values())),
                           ("throughput", A.throughput(records))):
            if value is None:
                notes.append(f"{key}: needs learners with validation losses over several epochs"
                             if key != "throughput" else f"{key}: no epoch recorded samples per second")
        return Report({
            "total_learners": len(learners),
            "trained": len(trained),
            "failed": len(learners) - len(trained),
            "success_rate": len(trained) / len(learners),
            "best_learner_id": best,
            "best_validation_score": A.primary_score(learners[best], self.model.task_type) if best else None,
            "validation_metric": A.PRIMARY_METRIC[self.model.task_type],
            "total_time": float(sum(r.training_time for r in learners.values())),
            "total_epochs": len(records),
            "avg_epoch_time": float(np.mean([r.training_time for r in records])) if records else None,
            "peak_memory": peak,
            "memory_usage": peak,  # the spec's name in the per-learner analysis, kept here too
            "gpu_utilization": float(np.mean(gpu)) if gpu else None,
            "best_accuracy": max(accuracies) if accuracies else None,
            "final_loss": A.mean_or_none(r.records[-1].monitored() for r in trained if r.records),
            "convergence_epoch": A.median_or_none(s["convergence_epoch"] for s in summaries.values()),
            "overfitting_score": A.mean_or_none(s["overfitting_score"] for s in summaries.values()),
            "denoising_analysis": denoising,
            "denoising_impact": impact["denoising_impact"] if impact else None,
            "robustness_impact": impact["robustness_impact"] if impact else None,
            "objective_effectiveness": A.mean_or_none(denoising.values()),
            "denoising_share": A.mean_or_none(s["denoising_share"] for s in summaries.values()),
            "throughput": A.throughput(records),
            "update_rate": update_rate,
            "stability_score": stability,
            "notes": notes,
        })

    def measure_denoising_impact(self, data: Mapping[str, Any], labels: Any, *, noise: float = 1.0,
                                 seed: int = 0) -> dict[str, Any]:
        """Train a twin with ``enable_denoising`` flipped and score both on ``(data, labels)`` with all
        modalities, each missing, each alone and noised (see `modalbag.reports.denoising_impact`). The result
        feeds ``denoising_impact`` / ``robustness_impact`` of `get_detailed_training_report`."""
        return measure_denoising_impact(self.model, data, labels, noise=noise, seed=seed)

    def get_learner_training_analysis(self) -> dict[str, dict[str, Any]]:
        """Per learner: trainer and architecture, status, time, the per-learner formulas, and the spec's
        cross-modal keys (see `learner_cross_modal`); ``feature_importance`` only where the trainer
        measured it. Each learner's dict is a `Report`: an unmeasured value prints its reason."""
        out = {}
        for lid, learner in self._trained_learners().items():
            described = None
            if learner.model is not None and hasattr(learner.model, "describe"):
                described = learner.model.describe()
            summary = A.learner_summary(learner)
            cross_modal, reasons = learner_cross_modal(learner)
            if summary["peak_memory_mb"] is None:
                reasons["memory_usage"] = reasons["peak_memory_mb"] = "no epoch record carries memory_usage_mb"
            if summary["final_accuracy"] is None:
                reasons["final_accuracy"] = ("regression task" if self.model.task_type == "regression"
                                             else "no validation accuracy recorded (no validation rows)")
            importance = described.get("feature_importance") if described else None
            out[lid] = Report({
                "trainer": learner.spec.trainer,
                "architecture": described.get("architecture", learner.spec.trainer) if described else learner.spec.trainer,
                "description": described,
                "modalities": list(learner.spec.modalities),
                "status": learner.status,
                "error": learner.error,
                "training_time": learner.training_time,
                "validation": dict(learner.validation),
                **summary,
                "memory_usage": summary["peak_memory_mb"],  # the spec's name
                **cross_modal,
                **({"feature_importance": importance} if importance is not None else {}),
                "notes": [f"{k}: {v}" for k, v in reasons.items()],
            }, reasons)
        return out

    # -- diagnostics ------------------------------------------------------------------------------

    def get_training_diagnostics(self) -> dict[str, Any]:
        """Problems found in the records: denoising that dominates or does not learn, diverged or
        failed learners, validation loss climbing; each with the measured numbers."""
        denoising_issues: list[dict[str, Any]] = []
        loss_issues: list[dict[str, Any]] = []
        for lid, learner in self._trained_learners().items():
            records = learner.records
            ratios = []
            for r in records:
                terms = sum(v for k, v in r.loss_terms.items() if k.startswith("denoising."))
                if r.train_loss > 0 and any(k.startswith("denoising.") for k in r.loss_terms):
                    ratios.append(terms / r.train_loss)
            if ratios and float(np.mean(ratios)) > A.DENOISING_DOMINANCE:
                denoising_issues.append({
                    "type": "denoising_dominates", "learner_id": lid,
                    "description": f"denoising terms averaged {np.mean(ratios):.2f}x the task loss; lower "
                                   f"denoising_weight or use denoising_strategy='curriculum'"})
            for name, value in A.objective_effectiveness(records).items():
                if value <= 0 and len(A.objective_losses(records)[name]) > 1:
                    denoising_issues.append({
                        "type": "objective_not_improving", "learner_id": lid, "objective": name,
                        "description": f"{name} loss did not decrease ({value:+.1%} from its first to last epoch)"})
            if not learner.ok:
                kind = "diverged" if learner.error and "TrainingDivergedError" in learner.error else "failed"
                loss_issues.append({"type": kind, "learner_id": lid, "description": learner.error})
            fall = A.still_improving(records) if learner.ok else None
            if fall is not None:
                k = max(1, round(len(records) / 5))
                loss_issues.append({
                    "type": "still_improving", "learner_id": lid,
                    "description": f"monitored loss fell {fall:.1%} over the last {k} of {len(records)} epochs and "
                                   f"was lowest at the end: training stopped before it converged; raise epochs"})
            score = A.overfitting_score(records)
            if score is not None and score > A.OVERFITTING_THRESHOLD:
                loss_issues.append({"type": "validation_loss_rising", "learner_id": lid,
                                    "description": f"final validation loss is {score:.1%} above its minimum"})
        return {"denoising_issues": denoising_issues, "loss_issues": loss_issues,
                "healthy": not denoising_issues and not loss_issues,
                "thresholds": {"denoising_dominance": A.DENOISING_DOMINANCE,
                               "overfitting": A.OVERFITTING_THRESHOLD, "still_improving": A.STILL_IMPROVING}}

    def get_training_stability_report(self) -> dict[str, Any]:
        """Stability per learner and its issues; ``unstable_training`` when any issue is high-severity
        or the mean stability score is below `modalbag.reports.analytics.STABLE_SCORE`."""
        learners = self._trained_learners()
        per = {lid: A.stability_score(r.records) for lid, r in learners.items()}
        issues = [issue for lid, r in learners.items() for issue in A.stability_issues(lid, r)]
        score = A.mean_or_none(v for lid, v in per.items() if learners[lid].ok)
        unstable = any(i["severity"] == "high" for i in issues) or (score is not None and score < A.STABLE_SCORE)
        return {"unstable_training": unstable, "stability_score": score, "per_learner": per, "issues": issues,
                "threshold": A.STABLE_SCORE,
                "notes": [] if score is not None else ["stability_score: needs learners with at least two epochs"]}

    def assess_training_stability(self) -> float | None:
        """The run's stability score (mean over trained learners of ``D / (D + U)``), None when no
        learner trained for two epochs or more."""
        return self.get_training_stability_report()["stability_score"]

    def check_resource_constraints(self) -> dict[str, Any]:
        """Memory against its limit and slow learners, from the recorded peaks and throughputs."""
        learners = self._trained_learners()
        config = getattr(self.model, "training_config", None)
        records = self._all_records()
        peak = max((r.memory_usage_mb for r in records if r.memory_usage_mb is not None), default=None)
        limit = config.memory_limit_mb if config is not None and config.memory_limit_mb else _physical_memory_mb()
        limit_source = "memory_limit_mb" if config is not None and config.memory_limit_mb else "physical memory"
        memory_issues: list[dict[str, Any]] = []
        if peak is not None and limit and peak > A.MEMORY_PRESSURE * limit:
            memory_issues.append({"type": "near_memory_limit",
                                  "description": f"peak memory {peak:.0f} MiB is {peak / limit:.0%} of the "
                                                 f"{limit:.0f} MiB {limit_source}"})
        for lid, learner in learners.items():
            error = (learner.error or "").lower()
            if not learner.ok and ("memory" in error or "sigkill" in error or "killed" in error):
                memory_issues.append({"type": "learner_out_of_memory", "learner_id": lid, "description": learner.error})
        rates = {lid: A.throughput(r.records) for lid, r in learners.items() if r.ok}
        known = [v for v in rates.values() if v is not None]
        typical = float(np.median(known)) if known else None
        speed_issues = [{"type": "slow_learner", "learner_id": lid,
                         "description": f"{rate:.1f} samples/s, {rate / typical:.0%} of the median {typical:.1f}"}
                        for lid, rate in rates.items()
                        if rate is not None and typical and rate < A.SLOW_FRACTION * typical]
        return {"memory_issues": memory_issues, "speed_issues": speed_issues, "peak_memory_mb": peak,
                "memory_limit_mb": limit, "memory_limit_source": limit_source,
                "memory_fraction": peak / limit if peak is not None and limit else None,
                "throughput_per_learner": rates, "median_throughput": typical}

    # -- multimodal learning ----------------------------------------------------------------------

    def get_multimodal_learning_analysis(self) -> dict[str, Any]:
        """Do learners that fuse modalities beat single-modality ones (on their validation rows)?

        ``cross_modal_gain`` = mean score of multimodal learners - mean score of unimodal ones;
        ``poor_cross_modal_learning`` when the best multimodal learner does not beat the best
        unimodal one. Scores are each learner's own validation rows, so they compare learners, not
        rows.
        """
        learners = {lid: r for lid, r in self._trained_learners().items() if r.ok}
        metric = A.PRIMARY_METRIC[self.model.task_type]
        scores = {lid: A.primary_score(r, self.model.task_type) for lid, r in learners.items()}
        uni = [s for lid, s in scores.items() if s is not None and len(learners[lid].spec.modalities) == 1]
        multi = [s for lid, s in scores.items() if s is not None and len(learners[lid].spec.modalities) > 1]
        notes = []
        if not uni or not multi:
            notes.append("cross_modal_gain: needs both single-modality and multimodal learners")
        modalities = sorted({m for r in learners.values() for m in r.spec.modalities})
        per_modality = {}
        for m in modalities:
            with_m = [s for lid, s in scores.items() if s is not None and m in learners[lid].spec.modalities]
            without = [s for lid, s in scores.items() if s is not None and m not in learners[lid].spec.modalities]
            per_modality[m] = {"learners": len(with_m), "mean_score_with": A.mean_or_none(with_m),
                               "mean_score_without": A.mean_or_none(without)}
        denoising = A.denoising_analysis(learners.values())
        return {
            "metric": metric,
            "unimodal_learners": len(uni), "multimodal_learners": len(multi),
            "mean_unimodal_score": A.mean_or_none(uni), "mean_multimodal_score": A.mean_or_none(multi),
            "best_unimodal_score": max(uni) if uni else None, "best_multimodal_score": max(multi) if multi else None,
            "cross_modal_gain": float(np.mean(multi) - np.mean(uni)) if uni and multi else None,
            "poor_cross_modal_learning": bool(uni and multi and max(multi) <= max(uni)),
            "per_modality": per_modality,
            "denoising_analysis": denoising,
            "notes": notes,
        }

    def analyze_modality_importance(self, data: Mapping[str, Any] | None = None, labels: Any = None, *,
                                    metric: str | None = None) -> dict[str, Any]:
        """The drop in the ensemble's validation score when each modality is removed.

        With ``data`` and ``labels`` (held out): `modalbag.reports.robustness.modality_ablation`, the score
        on them with every modality minus the score with that modality missing from every sample.
        Without: the same on out-of-bag rows of the training data, where each row is predicted
        only by learners that did not train on it (`modalbag.reports.analytics.oob_combined`), with the
        ensemble's weights for the learners that remain; both scores use the rows both can
        predict. ``importance[m] > 0``: the ensemble is better with ``m``.
        """
        ensemble = getattr(self.model, "ensemble", None)
        if ensemble is None:
            raise NotFittedError("the ensemble is not trained yet: call train_ensemble() first")
        name = resolve_metric(self.model.task_type, metric)
        if data is not None:
            if labels is None:
                raise ConfigError("analyze_modality_importance(data, labels): labels are needed with data")
            found = modality_ablation(self.model, data, labels, metric=name)
            return {"metric": name, "source": "held-out data", "n_rows": len(np.asarray(labels)),
                    "baseline_score": next(iter(found.values()))["score_all"] if found else None,
                    "score_all": {m: v["score_all"] for m, v in found.items()},
                    "score_without": {m: v["score_without"] for m, v in found.items()},
                    "importance": {m: v["drop"] for m, v in found.items()}, "notes": []}
        ids = list(ensemble.learners)
        rows_all, out_all = A.oob_combined(ensemble, ids)
        importance, without, with_all, notes = {}, {}, {}, []
        for m in sorted({m for r in ensemble.learners.values() for m in r.spec.modalities}):
            kept = [lid for lid in ids if m not in ensemble.learners[lid].spec.modalities]
            rows_m, out_m = A.oob_combined(ensemble, kept)
            common = np.intersect1d(rows_all, rows_m)
            if len(common) == 0:
                importance[m] = without[m] = with_all[m] = None
                notes.append(f"{m}: no out-of-bag row is predicted without it (every learner uses {m}); "
                             f"pass held-out data to measure it")
                continue
            y = ensemble.targets[common]
            full = task_metrics(self.model.task_type, y, out_all[np.searchsorted(rows_all, common)])[name]
            less = task_metrics(self.model.task_type, y, out_m[np.searchsorted(rows_m, common)])[name]
            with_all[m], without[m] = full, less
            importance[m] = (less - full) if name in LOWER_IS_BETTER else (full - less)
        notes.append("out-of-bag rows: the ensemble's weights were fitted on them, so both scores are optimistic; "
                     "the drop compares like with like")
        baseline = task_metrics(self.model.task_type, ensemble.targets[rows_all], out_all)[name] if len(rows_all) else None
        return {"metric": name, "source": "out-of-bag rows", "n_rows": int(len(rows_all)), "baseline_score": baseline,
                "score_all": with_all, "score_without": without, "importance": importance, "notes": notes}

    # -- validation -------------------------------------------------------------------------------

    def get_validation_report(self) -> dict[str, Any]:
        """Overfitting (validation loss rising from its minimum) and generalization gaps per learner."""
        learners = self._trained_learners()
        per = {}
        for lid, r in learners.items():
            b = A.best_epoch_index(r.records)
            per[lid] = {"status": r.status, "validation": dict(r.validation),
                        "best_epoch": r.records[b].epoch if b is not None else None,
                        "best_val_loss": r.records[b].val_loss if b is not None else None,
                        "train_loss_at_best": r.records[b].train_loss if b is not None else None,
                        "generalization_gap": A.generalization_gap(r.records),
                        "overfitting_score": A.overfitting_score(r.records)}
        ok = [per[lid] for lid, r in learners.items() if r.ok]
        overfit = [lid for lid, v in per.items() if v["overfitting_score"] is not None
                   and v["overfitting_score"] > A.OVERFITTING_THRESHOLD]
        gap = A.mean_or_none(v["generalization_gap"] for v in ok)
        notes = [] if gap is not None else ["generalization_gap: no validation losses were recorded (validation_split 0?)"]
        return {"overfitting_detected": bool(overfit), "overfitting_learners": overfit,
                "mean_overfitting_score": A.mean_or_none(v["overfitting_score"] for v in ok),
                "mean_generalization_gap": gap, "poor_generalization": gap is not None and gap > A.GAP_THRESHOLD,
                "thresholds": {"overfitting": A.OVERFITTING_THRESHOLD, "generalization_gap": A.GAP_THRESHOLD},
                "per_learner": per, "notes": notes}

    def validate_training_results(self, trained_learners: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check trained learners: each has validation metrics, beats chance, and recorded finite losses.

        ``average_performance`` is the mean validation accuracy (R² for regression). Chance is the
        accuracy of always predicting the most frequent training class (R² 0 for regression).
        """
        learners = self._trained_learners()
        wanted = list(trained_learners) if trained_learners else [lid for lid, r in learners.items() if r.ok]
        chosen = {lid: learners[lid] for lid in wanted if lid in learners}
        task = getattr(self.model, "task", None)
        if self.model.task_type == "regression":
            chance = 0.0
        elif self.model.task_type == "classification" and task is not None:
            chance = float(np.max(task.prior))
        else:
            chance = None
        issues, per = [], {}
        for lid, r in chosen.items():
            score = A.primary_score(r, self.model.task_type)
            per[lid] = score
            if not r.ok:
                issues.append(f"{lid}: failed ({r.error})")
            elif score is None:
                issues.append(f"{lid}: no validation metrics (its bag had no validation rows)")
            elif chance is not None and score <= chance:
                issues.append(f"{lid}: validation {A.PRIMARY_METRIC[self.model.task_type]} {score:.4f} is not above "
                              f"chance ({chance:.4f})")
            if any(not np.isfinite(rec.train_loss) for rec in r.records):
                issues.append(f"{lid}: a non-finite training loss was recorded")
        return Report({"valid": not issues, "average_performance": A.mean_or_none(per.values()),
                "metric": A.PRIMARY_METRIC[self.model.task_type], "chance_level": chance, "n_learners": len(chosen),
                "per_learner": per, "issues": issues},
                      {"average_performance": "no trained learner has validation metrics"})

    def validate_cross_modal_learning(self) -> dict[str, Any]:
        """How much each denoising objective learned: ``effectiveness`` is the mean over objectives of
        ``(L_first - L_last) / L_first``; None (with a note) when no objective ran."""
        learners = [r for r in self._trained_learners().values() if r.ok]
        per = A.denoising_analysis(learners)
        config = getattr(self.model, "training_config", None)
        enabled = bool(config.enable_denoising) if config is not None else None
        notes = [] if per else ["effectiveness: no denoising objective losses were recorded"]
        return Report({"denoising_enabled": enabled, "effectiveness": A.mean_or_none(per.values()),
                       "per_objective": per,
                       "denoising_share": A.mean_or_none(A.denoising_share(r.records) for r in learners),
                       "notes": notes})

    def get_pipeline_status(self) -> dict[str, Any]:
        """Which workflow steps have run (data, ensemble config, bags, learners, training, ensemble)."""
        bags = getattr(self.model, "bags", None)
        specs = getattr(self.model, "learner_specs", None)
        learners = getattr(self.model, "learners", None) or {}
        trained = sum(r.ok for r in learners.values())
        steps = [("ensemble_configured", getattr(self.model, "ensemble_config", None) is not None, "create_ensemble()"),
                 ("bags_generated", bags is not None, "generate_bags()"),
                 ("learners_selected", specs is not None, "select_base_learners()"),
                 ("trained", bool(learners), "train_ensemble()"),
                 ("ensemble_ready", getattr(self.model, "ensemble", None) is not None, "train_ensemble()")]
        dataset = getattr(self.model, "dataset", None)
        config = getattr(self.model, "training_config", None)
        return {"data_loaded": dataset is not None,
                "n_samples": dataset.n_samples if dataset is not None else None,
                "modalities": list(dataset.specs) if dataset is not None else [],
                **{name: done for name, done, _ in steps},
                "n_bags": len(bags) if bags is not None else 0,
                "n_learners_selected": len(specs) if specs is not None else 0,
                "n_trained": trained, "n_failed": len(learners) - trained,
                "run_id": getattr(self.model, "run_id", None),
                "run_dir": config.run_dir if config is not None else None,
                "next_step": next((call for _, done, call in steps if not done), None)}

    # -- pictures ---------------------------------------------------------------------------------

    def save_training_plots(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write the run's PNG plots to ``directory``: training curves, learner comparison, and (when
        measurable) modality importance. Needs matplotlib (``modalbag[plots]``)."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        out = {}
        for name, png in self._plots().items():
            path = target / f"{name}.png"
            atomic_write_bytes(path, png)  # temp file, fsync, rename
            out[name] = path
        return out

    def _plots(self, importance: Mapping[str, Any] | None = None) -> dict[str, bytes]:
        learners = self._trained_learners()
        out = {"training_curves": plots.training_curves_png(learners),
               "learner_comparison": plots.learner_comparison_png(learners, A.PRIMARY_METRIC[self.model.task_type])}
        if importance is None and getattr(self.model, "ensemble", None) is not None:
            importance = self.analyze_modality_importance()
        if importance is not None:
            values = {m: v for m, v in importance["importance"].items() if v is not None}
            if values:
                out["modality_importance"] = plots.modality_importance_png(values, importance["metric"])
        return out

    def write_html_report(self, path: str | os.PathLike[str] | None = None, data: Mapping[str, Any] | None = None,
                          labels: Any = None) -> Path:
        """One self-contained HTML file that answers first how good the ensemble is and how that changes
        as modalities go missing, then shows the learners, curves, importance, checks and the run.

        ``path`` defaults to ``<run_dir>/report.html``; ``data``/``labels`` (held out) make the headline
        and modality importance use them instead of out-of-fold training rows. Without matplotlib the
        report has every table and says how to get the images. Returns the path written.
        """
        config = getattr(self.model, "training_config", None)
        if path is None:
            if config is None or config.run_dir is None:
                raise ConfigError("write_html_report needs a path (or train with run_dir set to write "
                                  "<run_dir>/report.html)")
            path = Path(config.run_dir) / "report.html"
        if data is not None and labels is None:
            raise ConfigError("write_html_report(data=..., labels=...): labels are needed with held-out data")
        has_ensemble = getattr(self.model, "ensemble", None) is not None
        headline = ensemble_headline(self.model, data, labels) if has_ensemble else None
        importance = self.analyze_modality_importance(data, labels) if has_ensemble else None
        try:
            images = self._plots(importance)
            if headline is not None:
                images["robustness"] = plots.robustness_png(headline)
            missing_plots = ""
        except plots.PlotsUnavailableError as exc:  # a core install: the numbers, without the images
            images, missing_plots = {}, f"<p class='note'>No plots in this report: {H.html.escape(str(exc))}.</p>"

        def figure(name: str, alt: str) -> str:
            return H.image(images[name], alt) if name in images else missing_plots

        sections = []
        if headline is not None:
            sections.append(("Ensemble", self._headline_html(headline) + figure(
                "robustness", "ensemble score by share of modalities missing and by modalities present")))
        sections.append(("Learners", self._learners_html() + figure(
            "learner_comparison", "validation score and training time per learner")))
        sections.append(("Training curves", figure("training_curves", "training and validation loss per learner")))
        if importance is not None:
            body = H.paragraph(f"Drop in the ensemble's {importance['metric']} when each modality is missing from "
                               f"every row, on {importance['n_rows']} {importance['source']} (score with every "
                               f"modality: {H.fmt(importance['baseline_score'])}).")
            body += figure("modality_importance", "drop in score without each modality")
            body += H.table(["modality", f"drop in {importance['metric']}", f"{importance['metric']} without it"],
                            [[m, v, importance["score_without"].get(m)] for m, v in importance["importance"].items()])
            body += H.notes(importance["notes"])
            sections.append(("Modality importance", body))
        detailed = self.get_detailed_training_report()
        if detailed["denoising_analysis"]:
            sections.append(("Denoising", H.table(["objective", "loss fall, first to last epoch"],
                                                  list(detailed["denoising_analysis"].items()))))
        sections.append(("Checks", self._checks_html()))
        sections.append(("Run", self._run_html(detailed)))
        title = f"modalbag run {getattr(self.model, 'run_id', None) or ''}".strip()
        return H.write_atomic(path, H.page(title, sections))

    def _headline_html(self, headline: Mapping[str, Any]) -> str:
        metric, score = headline["metric"], headline["score"]
        where = f"{headline['rows']} {headline['source']}"
        text = (f"Ensemble {metric} <strong>{H.html.escape(H.fmt(score))}</strong> on {H.html.escape(where)}, "
                f"with every modality present." if score is not None else
                f"The ensemble's {H.html.escape(metric)} could not be measured on {H.html.escape(where)}.")
        shares = H.table(["share of modalities missing", metric],
                         [[f"{p['share_missing']:.0%}", p["score"]] for p in headline["by_share_missing"]])
        subsets = H.table(["modalities present", metric, "rows"],
                          [[" + ".join(s["present"]), s["score"], s["rows"]] for s in headline["by_subset"]])
        return f"<p class='headline'>{text}</p>" + shares + subsets + H.notes(headline["notes"])

    def _learners_html(self) -> str:
        analysis = self.get_learner_training_analysis()
        learners = self._trained_learners()
        metric = A.PRIMARY_METRIC[self.model.task_type]
        best = A.best_learner(learners, self.model.task_type)
        intro = ""
        if best is not None:
            intro = H.paragraph(f"Best single learner: {best} ({learners[best].spec.trainer}, "
                                f"{' + '.join(learners[best].spec.modalities)}), validation {metric} "
                                f"{H.fmt(A.primary_score(learners[best], self.model.task_type))} on its own "
                                f"held-out rows. Each learner sees only its bag's modalities.")
        columns = ["learner", "trainer", "modalities", "status", f"validation {metric}", "epochs", "best epoch",
                   "convergence epoch", "overfitting (share)", "stability (0-1)", "throughput (samples/s)",
                   "training time (s)"]
        rows = [[lid, a["trainer"], a["modalities"], a["status"], a["validation"].get(metric), a["epochs"],
                 a["best_epoch"], a["convergence_epoch"], a["overfitting_score"], a["stability_score"],
                 a["throughput"], a["training_time"]] for lid, a in analysis.items()]
        return intro + H.table(columns, rows)

    def _checks_html(self) -> str:
        stability = self.get_training_stability_report()
        diagnostics = self.get_training_diagnostics()
        resources = self.check_resource_constraints()
        issues = (stability["issues"] + diagnostics["denoising_issues"] + diagnostics["loss_issues"]
                  + resources["memory_issues"] + resources["speed_issues"])
        checked = H.paragraph("Checked in every learner's epoch records: loss still falling when training stopped, "
                              "validation loss rising, divergence and failures, loss spikes and oscillation, "
                              "denoising terms that dominate or do not learn, memory and speed.")
        if not issues:
            return checked + H.paragraph("No issue found.")
        rows = [[i.get("type"), i.get("severity", ""), i.get("learner_id", ""), i.get("description")] for i in issues]
        return checked + H.table(["check", "severity", "learner", "finding"], rows)

    def _run_html(self, detailed: Mapping[str, Any]) -> str:
        import datetime as _dt

        labels = {"total_learners": "learners", "trained": "learners trained", "failed": "learners failed",
                  "total_time": "training time, learners summed (s)", "total_epochs": "epochs, all learners",
                  "avg_epoch_time": "mean epoch time (s)", "peak_memory": "peak memory (MB)",
                  "gpu_utilization": "GPU utilisation (%)", "throughput": "throughput (samples/s)",
                  "update_rate": "optimizer updates per second", "final_loss": "final monitored loss, mean",
                  "convergence_epoch": "convergence epoch, median", "stability_score": "stability (0-1), mean",
                  "overfitting_score": "overfitting (share above the minimum validation loss), mean",
                  "denoising_share": "denoising share of the loss, mean",
                  "denoising_impact": "denoising impact (measured on held-out data)"}
        figures = {label: detailed.get(key) for key, label in labels.items()}
        machine = describe_machine()
        config = getattr(self.model, "training_config", None)
        about = {"run id": getattr(self.model, "run_id", None),
                 "report written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "modalbag": machine["modalbag"], "libraries": machine["libraries"],
                 "machine": machine_line(machine)}
        body = H.key_value_table(figures) + H.notes(detailed["notes"]) + H.key_value_table(about)
        if config is not None:
            body += "<h3>Configuration</h3>" + H.key_value_table(config.to_dict())
        return body
