"""``medical``: a clinical validation report of a classification ensemble on held-out patients.

Without held-out ``(data, labels)`` it reads the ensemble's out-of-fold predictions of the training
patients instead (``measured_on`` says which): the noised-input robustness figures are then None with
the reason in notes, and the checklist records that the evaluation data are the training patients.

Accuracy, sensitivity, specificity, PPV and NPV (for the positive class of a binary task, macro
one-vs-rest otherwise, and per class), AUROC, calibration (Brier score, expected calibration error),
percentile-bootstrap confidence intervals, robustness (share of accuracy kept when each modality is
missing or noised), clinical importance per modality (ablation) with ``interpretability_required``,
and with ``regulatory_compliance`` a reporting checklist saying which items of a clinical model
report this run documents. The checklist is documentation help, never a claim of compliance.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, positive, seed, strictly_between_0_and_1
from modalbag.plugins.reports._common import require_task, switch


@attrs.frozen(kw_only=True)
class MedicalOptions:
    positive_class: Any = attrs.field(default=None, metadata={
        "help": "Binary tasks: the class value that counts as positive (None: the second class)."})
    threshold: float | None = attrs.field(default=None, validator=attrs.validators.optional(strictly_between_0_and_1), metadata={
        "help": "Binary tasks: predict positive where its probability is at least this, strictly between 0 "
                "and 1 (None: the more probable class)."})
    n_bootstrap: int = attrs.field(default=200, validator=positive, metadata={
        "help": "Bootstrap resamples of the held-out samples behind each confidence interval."})
    ci_level: float = attrs.field(default=0.95, validator=strictly_between_0_and_1, metadata={
        "help": "Confidence level of the percentile-bootstrap intervals, strictly between 0 and 1."})
    calibration_bins: int = attrs.field(default=10, validator=positive, metadata={
        "help": "Equal-width confidence bins of the expected calibration error."})
    noise_level: float = attrs.field(default=0.5, validator=non_negative, metadata={
        "help": "Gaussian noise added to one modality at a time for the robustness figures, in standard "
                "deviations of each feature."})
    interpretability_required: bool | None = attrs.field(default=None, metadata={
        "help": "Add per-modality clinical importance: the accuracy lost without each modality (None: the "
                "training config's interpretability_required)."})
    regulatory_compliance: bool | None = attrs.field(default=None, metadata={
        "help": "Add the checklist of clinical reporting items this run documents, not a compliance claim "
                "(None: the training config's regulatory_compliance)."})
    random_state: int = attrs.field(default=0, validator=seed, metadata={
        "help": "Seed of the bootstrap resamples and of the noise draws."})


def _row_keys(arrays: dict[str, np.ndarray], masks: dict[str, np.ndarray], block: int = 4096) -> list[bytes]:
    """A 16-byte BLAKE2 digest per sample over every modality and its presence: equal rows, equal
    keys. Read ``block`` rows at a time, so a memory-mapped training set is never loaded whole."""
    n = len(next(iter(masks.values())))
    names = sorted(arrays)
    flags = np.stack([masks[m] for m in sorted(masks)], axis=1).astype(np.uint8)
    keys = []
    for start in range(0, n, block):
        parts = [np.ascontiguousarray(np.asarray(arrays[m][start:start + block])).reshape(len(flags[start:start + block]), -1)
                 .view(np.uint8) for m in names]
        joined = np.concatenate([flags[start:start + block], *parts], axis=1)
        keys.extend(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in joined)
    return keys


class MedicalReport:
    def __init__(self, options: MedicalOptions | None):
        self.options = options or MedicalOptions()

    def generate(self, model: Any, data: Any, labels: Any, *, intended_use: str | None = None) -> dict[str, Any]:
        from modalbag.reports import metrics as rm
        from modalbag.reports.robustness import NO_CHANGED_INPUTS, scorer_for

        require_task(model, "medical", ["classification"])
        o = self.options
        notes: dict[str, str] = {}
        scorer = scorer_for(model, data, labels, "accuracy")
        y, proba = scorer.targets, scorer.output()
        classes = [c.item() if hasattr(c, "item") else c for c in np.asarray(model.classes_)]
        k = len(classes)
        binary = k == 2
        positive = self._positive_index(classes) if binary else None
        pred = self._predict(proba, positive)

        def rates_of(rows: np.ndarray) -> dict[str, float | None]:
            if binary:
                return rm.binary_rates(y[rows] == positive, pred[rows] == positive)
            per = [rm.binary_rates(y[rows] == c, pred[rows] == c) for c in range(k)]
            out: dict[str, float | None] = {"accuracy": float(np.mean(y[rows] == pred[rows]))}
            for key in ("sensitivity", "specificity", "ppv", "npv"):
                values = [p[key] for p in per if p[key] is not None]
                out[key] = float(np.mean(values)) if values else None
            return out

        every = np.arange(scorer.n)
        headline = rates_of(every)
        per_class = {}
        for c, name in enumerate(classes):
            r = rm.binary_rates(y == c, pred == c)
            per_class[str(name)] = {"prevalence": float(np.mean(y == c)), "sensitivity": r["sensitivity"],
                                    "specificity": r["specificity"], "ppv": r["ppv"], "npv": r["npv"],
                                    "auroc": rm.auroc(y == c, proba[:, c])}
        auroc = self._auroc(y, proba, positive)
        if auroc is None:
            notes["auroc"] = "undefined: the scored labels hold a single class"
        if not binary:
            notes["sensitivity"] = (f"{k} classes: sensitivity, specificity, PPV and NPV are macro averages of the "
                                    f"one-vs-rest rates in per_class")
        brier = rm.brier_score(y, self._calibration_proba(proba, positive))
        ece = rm.expected_calibration_error(y, proba, o.calibration_bins)

        statistics = {
            "accuracy": lambda rows: rates_of(rows)["accuracy"],
            "sensitivity": lambda rows: rates_of(rows)["sensitivity"],
            "specificity": lambda rows: rates_of(rows)["specificity"],
            "auroc": lambda rows: self._auroc(y[rows], proba[rows], positive),
            "brier_score": lambda rows: rm.brier_score(y[rows], self._calibration_proba(proba[rows], positive)),
        }
        intervals = {name: rm.bootstrap_ci(fn, scorer.n, n_boot=o.n_bootstrap, level=o.ci_level,
                                           seed=o.random_state) for name, fn in statistics.items()}

        full = headline["accuracy"]

        def accuracy_of(output: np.ndarray) -> float:  # at the same operating point as ``full``
            return float(np.mean(self._predict(output, positive) == y))

        robustness, kept = {}, []
        for i, m in enumerate(scorer.modalities):
            missing = accuracy_of(scorer.output(scorer.without([m])))
            noised = None
            if scorer.perturbable:
                noised = accuracy_of(scorer.output_with(
                    {m: scorer.noised(m, o.noise_level, np.random.default_rng([o.random_state, i]))}))
            row = {"accuracy_missing": missing, "accuracy_noised": noised,
                   "kept_missing": missing / full if full else None,
                   "kept_noised": noised / full if full and noised is not None else None}
            robustness[m] = row
            kept += [v for v in (row["kept_missing"], row["kept_noised"]) if v is not None]
        robustness_score = float(np.mean(kept)) if kept else None
        if not scorer.perturbable:
            for m in scorer.modalities:
                notes[f"robustness.{m}.accuracy_noised"] = notes[f"robustness.{m}.kept_noised"] = NO_CHANGED_INPUTS
        if robustness_score is None:
            notes["robustness_score"] = "undefined: accuracy on the clean data is 0"

        interpret = switch(model, o.interpretability_required, "interpretability_required")
        importance = None
        if interpret:
            importance = {m: full - robustness[m]["accuracy_missing"] for m in scorer.modalities}
        else:
            notes["clinical_importance"] = "not computed: pass interpretability_required=True"

        report = {
            "measured_on": scorer.source,
            "n_samples": scorer.n, "classes": classes,
            "positive_class": classes[positive] if binary else None,
            "threshold": o.threshold if binary else None,
            "clinical_accuracy": full,
            "sensitivity": headline["sensitivity"], "specificity": headline["specificity"],
            "ppv": headline["ppv"], "npv": headline["npv"],
            "per_class": per_class, "auroc": auroc,
            "brier_score": brier, "expected_calibration_error": ece, "calibration_bins": o.calibration_bins,
            "confidence_intervals": intervals,
            "robustness": robustness, "robustness_score": robustness_score, "noise_level": o.noise_level,
            "clinical_importance": importance,
            "modality_missingness": {m: float(1.0 - scorer.dataset.masks[m].mean()) for m in scorer.modalities},
            "reporting_checklist": None, "compliance_status": None,
            "notes": notes,
        }
        if switch(model, o.regulatory_compliance, "regulatory_compliance"):
            checklist = self._checklist(model, scorer, report, intended_use, interpret)
            done = sum(item["documented"] for item in checklist)
            report["reporting_checklist"] = checklist
            report["compliance_status"] = (f"{done} of {len(checklist)} reporting items documented by this run "
                                           f"(documentation aid, not a regulatory assessment)")
        else:
            notes["reporting_checklist"] = notes["compliance_status"] = "not computed: pass regulatory_compliance=True"
        return report

    # -- pieces ---------------------------------------------------------------------------------

    def _positive_index(self, classes: list[Any]) -> int:
        from modalbag.errors import ConfigError

        if self.options.positive_class is None:
            return 1
        if self.options.positive_class not in classes:
            raise ConfigError(f"positive_class={self.options.positive_class!r} is not a class of this model; "
                              f"classes: {classes}")
        return classes.index(self.options.positive_class)

    def _predict(self, proba: np.ndarray, positive: int | None) -> np.ndarray:
        """Argmax, or for a binary task with ``threshold``: positive where p(positive) >= threshold."""
        if positive is None or self.options.threshold is None:
            return proba.argmax(axis=1)
        return np.where(proba[:, positive] >= self.options.threshold, positive, 1 - positive)

    @staticmethod
    def _calibration_proba(proba: np.ndarray, positive: int | None) -> np.ndarray:
        """Columns ordered so the positive class is column 1 (what `brier_score` scores for 2 classes)."""
        return proba if positive in (None, 1) else proba[:, ::-1]

    def _auroc(self, y: np.ndarray, proba: np.ndarray, positive: int | None) -> float | None:
        from modalbag.reports import metrics as rm

        if positive is not None:
            return rm.auroc(y == positive, proba[:, positive])
        return rm.macro_auroc(y, proba)

    def _checklist(self, model: Any, scorer: Any, report: dict[str, Any], intended_use: str | None,
                   interpret: bool) -> list[dict[str, Any]]:
        if scorer.rows is None:
            train = set(_row_keys(model.dataset.arrays, model.dataset.masks))
            held = _row_keys(scorer.dataset.arrays, scorer.dataset.masks)
            overlap = sum(key in train for key in held)
            separate = (overlap == 0, f"{overlap} of {scorer.n} held-out samples are identical to a training sample")
        else:
            separate = (False, (f"{scorer.source}: no learner predicts a patient it trained on, but the "
                                f"combination was fitted on them; pass held-out (data, labels)"))
        auroc_ci = report["confidence_intervals"]["auroc"]
        cfg = model.training_config
        prevalence = {c: round(v["prevalence"], 4) for c, v in report["per_class"].items()}

        def item(name: str, documented: bool, evidence: str) -> dict[str, Any]:
            return {"item": name, "documented": bool(documented), "evidence": evidence}

        return [
            item("evaluation data separate from training data", *separate),
            item("sample size and outcome prevalence", True, f"n={scorer.n} ({scorer.source}), prevalence {prevalence}"),
            item("discrimination with a confidence interval", auroc_ci["low"] is not None,
                 f"AUROC {report['auroc']}, {auroc_ci['level']:.0%} CI [{auroc_ci['low']}, {auroc_ci['high']}]"),
            item("calibration", True, f"Brier {report['brier_score']:.4f}, ECE {report['expected_calibration_error']:.4f}"),
            item("sensitivity and specificity at the operating point",
                 report["sensitivity"] is not None and report["specificity"] is not None,
                 "threshold " + (str(report["threshold"]) if report["threshold"] is not None else "argmax")),
            item("performance per outcome class", True, f"{len(report['per_class'])} classes in per_class"),
            item("handling of missing inputs", True,
                 f"share missing per modality {report['modality_missingness']}; samples are routed to the "
                 f"learners whose modalities they have"),
            item("robustness to missing or degraded inputs", report["robustness_score"] is not None,
                 "accuracy kept per modality missing / noised in robustness"),
            item("contribution of each input (interpretability)", interpret,
                 "clinical_importance (ablation)" if interpret else "pass interpretability_required=True"),
            item("training configuration and seed recorded", cfg is not None,
                 f"random_state={cfg.random_state}, run_id={model.run_id}" if cfg is not None else "no training"),
            item("intended use and clinical setting", bool(intended_use),
                 intended_use or "pass intended_use='...' to the report"),
            item("external validation (another site or period)", False,
                 "cannot be determined from the data given; state it in the study report"),
        ]


@hookimpl
def modalbag_register_reports(register: Register) -> None:
    register("medical", MedicalReport, options=MedicalOptions,
             summary="clinical rates, AUROC, calibration, bootstrap CIs, robustness, importance, checklist")
