"""``robustness``: how the ensemble's score holds up when modalities go missing or get noisy.

On the user's held-out data: the score for every subset of modalities present at prediction time
(all 2^M - 1 up to ``max_subsets``, sampled beyond, always keeping the full set, each single
modality and each leave-one-out), the worst subset overall and per size, the score against the
share of modalities missing per sample, each modality noised at several levels, and MultiBench's
relative and effective robustness (Liang et al., 2021) over the missing-share curve. A PNG plot is
written where matplotlib is installed and a ``plot_path`` or the run's ``run_dir`` says where.

Without held-out data, the subset scores are measured on the ensemble's out-of-fold predictions of
the training rows (``measured_on`` says which): whole modalities can be removed there, but random
missing values and noise change inputs, so the missing-share curve, the noise scores and the
robustness summaries are None with the reason in ``notes``.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import positive, seed
from modalbag.plugins.reports._common import levels, rates, tuple_of_floats

_DEFAULT_RATES = tuple(round(0.1 * i, 1) for i in range(10))


@attrs.frozen(kw_only=True)
class RobustnessOptions:
    metric: str | None = attrs.field(default=None, metadata={
        "help": "Score used throughout: accuracy, f1 or log_loss (classification, multilabel); mse, mae or r2 "
                "(regression). None: accuracy, micro F1 or R² by task."})
    max_subsets: int = attrs.field(default=255, validator=positive, metadata={
        "help": "Modality subsets scored at most: with more subsets than this, the full set, each single "
                "modality and each leave-one-out are scored, then random subsets up to this count."})
    missing_rates: tuple[float, ...] = attrs.field(default=_DEFAULT_RATES, converter=tuple_of_floats,
                                                   validator=rates, metadata={
        "help": "Probabilities of dropping each present (sample, modality) pair along the missing-share curve: "
                "increasing numbers in [0, 1)."})
    missing_repeats: int = attrs.field(default=3, validator=positive, metadata={
        "help": "Random missing masks drawn per rate; the curve shows their mean score."})
    noise_levels: tuple[float, ...] = attrs.field(default=(0.1, 0.5, 1.0, 2.0), converter=tuple_of_floats,
                                                  validator=levels, metadata={
        "help": "Gaussian noise added to one modality at a time, in standard deviations of each feature."})
    random_state: int = attrs.field(default=0, validator=seed, metadata={
        "help": "Seed of the subset sampling, the missing masks and the noise draws."})


def choose_subsets(modalities: list[str], cap: int, rng: np.random.Generator) -> tuple[list[tuple[str, ...]], bool]:
    """Every non-empty subset when there are at most ``cap``; else the full set, singles, leave-one-outs
    and distinct random subsets up to ``cap``. Returns the subsets and whether they were sampled."""
    m = len(modalities)
    if 2 ** m - 1 <= cap:
        return [s for k in range(1, m + 1) for s in itertools.combinations(modalities, k)], False
    chosen = {tuple(modalities)} | {(x,) for x in modalities}
    chosen |= {tuple(x for x in modalities if x != y) for y in modalities}
    while len(chosen) < cap:
        pick = rng.random(m) < 0.5
        if pick.any():
            chosen.add(tuple(x for x, on in zip(modalities, pick, strict=True) if on))
    return sorted(chosen, key=lambda s: (len(s), s)), True


def relative_robustness(scores: np.ndarray, rates_: np.ndarray) -> float:
    """MultiBench relative robustness: the area under the score-vs-imperfection curve (trapezoids)."""
    return float(np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(rates_)))


def effective_robustness(scores: np.ndarray, reference: np.ndarray, higher_is_better: bool = True) -> float:
    """MultiBench effective robustness: sum_i (f_i - (g_i + f_0 - g_0)).

    ``g`` is a reference model's curve shifted to start where ``f`` does, so the value measures how
    much more slowly the score falls than the reference's, whatever the clean score. Negated for
    lower-is-better metrics, so positive always means more robust than the reference.
    """
    gap = float(np.sum(scores - (reference + scores[0] - reference[0])))
    return gap if higher_is_better else -gap


class RobustnessReport:
    def __init__(self, options: RobustnessOptions | None):
        self.options = options or RobustnessOptions()

    def generate(self, model: Any, data: Any, labels: Any, *, plot_path: str | None = None) -> dict[str, Any]:
        from modalbag.reports.robustness import NO_CHANGED_INPUTS, scorer_for

        o = self.options
        scorer = scorer_for(model, data, labels, o.metric)
        rng = np.random.default_rng(o.random_state)
        notes: dict[str, str] = {}
        full = scorer.score()

        present = [m for m in scorer.modalities if scorer.dataset.masks[m].any()]
        absent = [m for m in scorer.modalities if m not in present]
        if absent:
            notes["absent_modalities"] = f"{absent} are missing from every held-out sample: left out of the subsets"
        subsets, sampled = choose_subsets(present, o.max_subsets, rng)
        if sampled:
            notes["subset_scores"] = (f"{2 ** len(present) - 1} subsets exceed max_subsets={o.max_subsets}: "
                                      f"scored the full set, singles, leave-one-outs and random subsets")
        subset_rows = []
        for subset in subsets:
            masks = scorer.only(subset)
            subset_rows.append({"modalities": list(subset), "score": scorer.score(masks),
                                "n_prior_fallback": int(scorer.fallback(masks).sum())})
        worst = min(subset_rows, key=lambda r: r["score"] if scorer.higher_is_better else -r["score"])
        worst_by_size = {}
        for size in sorted({len(r["modalities"]) for r in subset_rows}):
            rows = [r for r in subset_rows if len(r["modalities"]) == size]
            pick = min(rows, key=lambda r: r["score"] if scorer.higher_is_better else -r["score"])
            worst_by_size[str(size)] = {"modalities": pick["modalities"], "score": pick["score"]}

        if not scorer.perturbable:
            for key in ("missing_share_curve", "noise", "relative_robustness", "effective_robustness"):
                notes[key] = NO_CHANGED_INPUTS
            report = self._report(scorer, full, subset_rows, sampled, worst, worst_by_size, notes)
            report.update(missing_share_curve=None, noise=None, relative_robustness=None, effective_robustness=None,
                          effective_robustness_reference=None, reference_curve=None, plot=None)
            notes["plot"] = "the plot draws the missing-share and noise curves, which need held-out data"
            return report
        curve, reference_id, reference_curve = self._missing_curve(scorer, rng)
        noise: dict[str, list[dict[str, float]]] = {}
        for i, m in enumerate(present):
            noise[m] = []
            for j, level in enumerate(o.noise_levels):
                noised = scorer.noised(m, level, np.random.default_rng([o.random_state, i, j]))
                noise[m].append({"level": level, "score": scorer.score_output(scorer.output_with({m: noised}))})

        scores = np.array([c["score"] for c in curve])
        shares = np.array([c["missing_share"] for c in curve])
        relative = relative_robustness(scores, shares) if len(scores) > 1 else None
        effective = None
        if reference_curve is not None and len(scores) > 1:
            effective = effective_robustness(scores, np.array(reference_curve), scorer.higher_is_better)
            notes["effective_robustness"] = (f"reference: the ensemble's best single learner on clean data "
                                             f"({reference_id}), scored under the same missing masks")
        else:
            notes["effective_robustness"] = "needs a reference learner and at least two missing rates"
        notes["relative_robustness"] = ("area under score vs. missing share (trapezoids over missing_rates), "
                                        "not max-min normalised across methods as in MultiBench's tables")
        report = self._report(scorer, full, subset_rows, sampled, worst, worst_by_size, notes)
        report.update({
            "missing_share_curve": curve,
            "noise": noise,
            "relative_robustness": relative, "effective_robustness": effective,
            "effective_robustness_reference": reference_id,
            "reference_curve": reference_curve,
            "plot": None,
        })
        report["plot"] = self._plot(model, report, plot_path, notes)
        return report

    @staticmethod
    def _report(scorer: Any, full: float, subset_rows: list[dict[str, Any]], sampled: bool,
                worst: dict[str, Any], worst_by_size: dict[str, Any], notes: dict[str, str]) -> dict[str, Any]:
        """The figures measured on either source: the full set's score and the subsets'."""
        return {
            "metric": scorer.metric, "higher_is_better": scorer.higher_is_better, "n_samples": scorer.n,
            "measured_on": scorer.source, "modalities": scorer.modalities, "full_score": full,
            "subset_scores": subset_rows, "subsets_sampled": sampled,
            "worst_subset": {"modalities": worst["modalities"], "score": worst["score"]},
            "worst_subset_by_size": worst_by_size,
            "notes": notes,
        }

    def _missing_curve(self, scorer: Any, rng: np.random.Generator) -> tuple[list[dict[str, Any]], str | None,
                                                                           list[float] | None]:
        """Mean score over ``missing_repeats`` random draws per missing rate, for the ensemble and its
        best single learner under the very same masks."""
        o = self.options
        clean = {lid: scorer.score_output(scorer.learner_output(lid)) for lid in scorer.ensemble.learners}
        reference = (max(clean, key=clean.get) if scorer.higher_is_better else min(clean, key=clean.get)) \
            if clean else None
        curve, ref_curve = [], []
        total = np.sum([scorer.dataset.masks[m] for m in scorer.modalities])
        for rate in o.missing_rates:
            scores, ref_scores, shares = [], [], []
            for _ in range(o.missing_repeats):
                masks = scorer.random_missing(rate, rng)
                scores.append(scorer.score_output(scorer.output(masks)))
                if reference is not None:
                    ref_scores.append(scorer.score_output(scorer.learner_output(reference, masks)))
                kept = np.sum([masks[m] for m in scorer.modalities])
                shares.append(1.0 - kept / total if total else 0.0)
            curve.append({"missing_share": rate, "score": float(np.mean(scores)), "score_sd": float(np.std(scores)),
                          "measured_missing_share": float(np.mean(shares))})
            if reference is not None:
                ref_curve.append(float(np.mean(ref_scores)))
        return curve, reference, (ref_curve if reference is not None else None)

    def _plot(self, model: Any, report: dict[str, Any], plot_path: str | None, notes: dict[str, str]) -> str | None:
        run_dir = getattr(model.training_config, "run_dir", None)
        path = plot_path or (os.path.join(run_dir, "reports", "robustness.png") if run_dir else None)
        if path is None:
            notes["plot"] = "no plot_path given and no run_dir in the training config"
            return None
        try:
            from matplotlib.figure import Figure
        except ImportError:
            notes["plot"] = "matplotlib is not installed: pip install modalbag[plots]"
            return None
        import io

        from modalbag.io.artifacts import atomic_write_bytes

        fig = Figure(figsize=(10, 4))
        left, right = fig.subplots(1, 2)
        shares = [c["missing_share"] for c in report["missing_share_curve"]]
        left.plot(shares, [c["score"] for c in report["missing_share_curve"]], marker="o", label="ensemble")
        if report["reference_curve"] is not None:
            left.plot(shares, report["reference_curve"], marker="s", linestyle="--",
                      label=f"best single learner ({report['effective_robustness_reference']})")
        left.set(xlabel="share of modalities missing per sample", ylabel=report["metric"],
                 title="Missing modalities")
        left.legend()
        for m, rows in report["noise"].items():
            right.plot([r["level"] for r in rows], [r["score"] for r in rows], marker="o", label=m)
        right.axhline(report["full_score"], color="grey", linestyle=":", label="clean")
        right.set(xlabel="noise (x feature standard deviation)", ylabel=report["metric"], title="Noised modality")
        right.legend()
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path


@hookimpl
def modalbag_register_reports(register: Register) -> None:
    register("robustness", RobustnessReport, options=RobustnessOptions,
             summary="score over every modality subset, missing shares and noise; MultiBench robustness")
