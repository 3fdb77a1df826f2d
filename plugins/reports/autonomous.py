"""``autonomous_vehicle``: a safety validation report for a perception ensemble.

Accuracy on the held-out data; accuracy under sensor-failure scenarios (each sensor missing, each
noised, and with ``worst_case_analysis`` every combination of failed sensors up to
``max_failures``) and the worst of them; the redundancy level (how many sensors can fail, in any
combination, before accuracy falls below the threshold); measured single-sample latency (p50/p99
ms), batch throughput, the learners' memory footprint, power from Linux RAPL energy counters where
the machine has readable ones; with ``adversarial_testing``, accuracy under a fast-gradient-sign
(FGSM) perturbation crafted on the neural learners. Without held-out ``(data, labels)`` the
accuracies are read from the ensemble's out-of-fold predictions of the training rows
(``measured_on`` says which); the noised and adversarial figures then need changed inputs and are
left out with the reason in notes, and latency and throughput are timed on the training rows. The spec's ``reaction_time`` and
``safety_score`` have no measurable definition here: they are ``None`` with the reason in notes.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import pickle
import time
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from modalbag import hookimpl
from modalbag.kernel import Register
from modalbag.kernel.options import non_negative, positive, seed, strictly_between_0_and_1
from modalbag.plugins.reports._common import (
    label,
    levels,
    require_task,
    switch,
    tuple_of_floats,
)

RAPL_ROOT = "/sys/class/powercap"


@attrs.frozen(kw_only=True)
class SafetyOptions:
    max_failures: int = attrs.field(default=2, validator=positive, metadata={
        "help": "With worst_case_analysis, the most sensors (modalities) missing together in a failure "
                "scenario; without it, one at a time."})
    noise_levels: tuple[float, ...] = attrs.field(default=(0.5, 1.0), converter=tuple_of_floats, validator=levels,
                                                  metadata={"help": "Gaussian noise added to one sensor at a time, "
                                                                    "in standard deviations of each feature: one "
                                                                    "scenario per sensor and level."})
    redundancy_fraction: float = attrs.field(default=0.9, validator=strictly_between_0_and_1, metadata={
        "help": "Redundancy threshold as a share of the accuracy with every sensor, strictly between 0 and 1 "
                "(used when min_accuracy is None)."})
    min_accuracy: float | None = attrs.field(default=None, validator=attrs.validators.optional(strictly_between_0_and_1), metadata={
        "help": "Accuracy the redundancy level must keep (None: redundancy_fraction times the accuracy with "
                "every sensor)."})
    max_scenarios: int = attrs.field(default=1024, validator=positive, metadata={
        "help": "Missing-sensor combinations scored at most, for the scenarios and again for the redundancy "
                "search (which stops at the last number of failures that fits)."})
    latency_samples: int = attrs.field(default=200, validator=positive, metadata={
        "help": "Held-out samples predicted one at a time to measure latency (fewer if the data has fewer)."})
    throughput_batch: int = attrs.field(default=256, validator=positive, metadata={
        "help": "Rows per batch when measuring throughput (fewer if the data has fewer)."})
    throughput_seconds: float = attrs.field(default=1.0, validator=non_negative, metadata={
        "help": "Seconds spent predicting batches to measure throughput and power (at least one batch is "
                "predicted)."})
    adversarial_epsilon: float = attrs.field(default=0.1, validator=non_negative, metadata={
        "help": "FGSM step size, in standard deviations of each feature."})
    adversarial_testing: bool | None = attrs.field(default=None, metadata={
        "help": "Measure accuracy under an FGSM perturbation crafted on the neural learners (None: the "
                "training config's adversarial_testing)."})
    worst_case_analysis: bool | None = attrs.field(default=None, metadata={
        "help": "Score every combination of up to max_failures missing sensors, not only single failures "
                "(None: the training config's worst_case_analysis)."})
    random_state: int = attrs.field(default=0, validator=seed, metadata={
        "help": "Seed of the noise drawn for the noised-sensor scenarios."})


# -- measurements that do not depend on the model --------------------------------------------------


def rapl_packages(root: str | None = None) -> list[str]:
    """The top-level RAPL domains (one per CPU package): ``intel-rapl:N``, not their sub-zones."""
    root = root or RAPL_ROOT
    return sorted(p for p in glob.glob(os.path.join(root, "intel-rapl:*")) if os.path.basename(p).count(":") == 1)


def read_energy_uj(root: str | None = None) -> tuple[dict[str, tuple[int, int]] | None, str | None]:
    """``{package: (energy_uj, max_energy_range_uj)}``, or ``None`` and why it cannot be read."""
    root = root or RAPL_ROOT
    packages = rapl_packages(root)
    if not packages:
        return None, f"no RAPL energy counter on this machine ({root}/intel-rapl:* absent)"
    out = {}
    for p in packages:
        try:
            with open(os.path.join(p, "energy_uj")) as fh:
                energy = int(fh.read().strip())
            try:
                with open(os.path.join(p, "max_energy_range_uj")) as fh:
                    top = int(fh.read().strip())
            except OSError:
                top = 0
        except (OSError, ValueError) as exc:
            return None, f"cannot read {p}/energy_uj ({exc.__class__.__name__}: {exc}); reading it often needs root"
        out[p] = (energy, top)
    return out, None


def average_watts(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]],
                  seconds: float) -> float | None:
    """Mean power over ``seconds``: sum over packages of ΔE (µJ, unwrapped at max_energy_range_uj) / 1e6 / s."""
    if seconds <= 0:
        return None
    joules = 0.0
    for p, (e0, top) in before.items():
        e1 = after[p][0]
        delta = e1 - e0 if e1 >= e0 else e1 + top - e0  # the counter wrapped once
        joules += delta / 1e6
    return joules / seconds


def _rows(data: Mapping[str, Any], index: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {m: np.asarray(v[0] if isinstance(v, tuple) else v)[index] for m, v in data.items()}


def _learner_bytes(learner: Any) -> tuple[int | None, str]:
    """Bytes of a learner's parameters and buffers (torch), else of its pickled form."""
    net = getattr(learner, "model", None)
    if net is not None and hasattr(net, "parameters") and hasattr(net, "buffers"):
        tensors = list(net.parameters()) + list(net.buffers())
        return int(sum(t.numel() * t.element_size() for t in tensors)), "parameters and buffers"
    try:
        return len(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)), "pickled size"
    except Exception as exc:  # noqa: BLE001 - any learner may refuse pickling; report, do not fail
        return None, f"not measurable: {type(exc).__name__}"


class SafetyReport:
    def __init__(self, options: SafetyOptions | None):
        self.options = options or SafetyOptions()

    def generate(self, model: Any, data: Any, labels: Any) -> dict[str, Any]:
        from modalbag.reports.robustness import NO_CHANGED_INPUTS, scorer_for

        require_task(model, "safety", ["classification"])
        o = self.options
        notes: dict[str, str] = {
            "reaction_time": "the time from sensing to actuation includes the vehicle's whole stack; modalbag "
                             "measures model inference only (inference_latency)",
            "safety_score": "no measurable definition of a 0-5 safety score; see worst_case_accuracy and "
                            "redundancy_level",
        }
        scorer = scorer_for(model, data, labels, "accuracy")
        if data is None:
            data = scorer.inputs()  # timing needs inputs only: the training rows scored
        clean = scorer.score()
        worst_case = switch(model, o.worst_case_analysis, "worst_case_analysis")
        scenarios = self._scenarios(scorer, worst_case, notes)
        worst = min(scenarios, key=lambda s: s["accuracy"]) if scenarios else None
        redundancy, threshold, by_failures = self._redundancy(scorer, clean, notes)
        latency = self._latency(model, data, scorer.n)
        throughput, watts, power_note = self._throughput_and_power(model, data, scorer.n)
        if power_note:
            notes["power_usage"] = power_note
        footprint, by_learner, method = self._memory(scorer)
        adversarial = None
        if switch(model, o.adversarial_testing, "adversarial_testing") and not scorer.perturbable:
            notes["adversarial"] = NO_CHANGED_INPUTS
        elif switch(model, o.adversarial_testing, "adversarial_testing"):
            adversarial = self._adversarial(scorer, notes)
        else:
            notes["adversarial"] = "not run: pass adversarial_testing=True"
        return {
            "measured_on": scorer.source,
            "n_samples": scorer.n, "driving_accuracy": clean,
            "worst_case_accuracy": worst["accuracy"] if worst else None,
            "worst_case_scenario": worst["scenario"] if worst else None,
            "scenarios": scenarios, "max_failures": o.max_failures if worst_case else 1,
            "redundancy_level": redundancy, "redundancy_threshold": threshold,
            "min_accuracy_by_failures": by_failures,
            "inference_latency": latency["p50_ms"], "latency_ms": latency,
            "throughput": throughput, "memory_footprint": footprint, "memory_by_learner": by_learner,
            "memory_method": method, "power_usage": watts,
            "reaction_time": None, "safety_score": None,
            "adversarial": adversarial,
            "notes": notes,
        }

    # -- failure scenarios ----------------------------------------------------------------------

    def _scenarios(self, scorer: Any, worst_case: bool, notes: dict[str, str]) -> list[dict[str, Any]]:
        o = self.options
        mods = [m for m in scorer.modalities if scorer.dataset.masks[m].any()]
        size = min(o.max_failures if worst_case else 1, len(mods) - 1)
        rows: list[dict[str, Any]] = []
        count = sum(math.comb(len(mods), k) for k in range(1, size + 1))
        # only the first max_scenarios combinations are built: all of them are 2^M with many sensors
        combos = list(itertools.islice((c for k in range(1, size + 1) for c in itertools.combinations(mods, k)),
                                       o.max_scenarios))
        if count > o.max_scenarios:
            notes["scenarios"] = f"{count} failure combinations: scored the first max_scenarios={o.max_scenarios}"
        for failed in combos:
            rows.append({"scenario": f"missing:{label(failed)}", "kind": "missing", "modalities": list(failed),
                         "level": None, "accuracy": scorer.score(scorer.without(failed))})
        if not scorer.perturbable:
            from modalbag.reports.robustness import NO_CHANGED_INPUTS

            notes["noised_scenarios"] = NO_CHANGED_INPUTS
            mods = []
        for i, m in enumerate(mods):
            for j, level in enumerate(o.noise_levels):
                noised = scorer.noised(m, level, np.random.default_rng([o.random_state, i, j]))
                rows.append({"scenario": f"noised:{m}@{level:g}sd", "kind": "noised", "modalities": [m],
                             "level": level, "accuracy": scorer.score_output(scorer.output_with({m: noised}))})
        if not worst_case:
            notes["worst_case_accuracy"] = "single failures only: pass worst_case_analysis=True for combinations"
        return rows

    def _redundancy(self, scorer: Any, clean: float, notes: dict[str, str]
                    ) -> tuple[int, float, dict[str, float]]:
        """Largest k such that every combination of up to k missing sensors keeps accuracy >= threshold."""
        o = self.options
        threshold = o.min_accuracy if o.min_accuracy is not None else o.redundancy_fraction * clean
        mods = [m for m in scorer.modalities if scorer.dataset.masks[m].any()]
        by_failures: dict[str, float] = {}
        level, holding, budget = 0, clean >= threshold, o.max_scenarios
        for k in range(1, len(mods)):
            if math.comb(len(mods), k) > budget:  # counted before any is built
                notes["redundancy_level"] = f"stopped at {k - 1} failures: more combinations than max_scenarios"
                break
            combos = list(itertools.combinations(mods, k))
            budget -= len(combos)
            worst = min(scorer.score(scorer.without(c)) for c in combos)
            by_failures[str(k)] = worst
            if holding and worst >= threshold:
                level = k
            else:
                holding = False
        if clean < threshold:
            notes["redundancy_level"] = "accuracy with every sensor is already below the threshold"
        return level, float(threshold), by_failures

    # -- speed, memory, power -------------------------------------------------------------------

    def _latency(self, model: Any, data: Mapping[str, Any], n: int) -> dict[str, float]:
        """Wall time of ``model.predict`` on one sample, over up to ``latency_samples`` samples."""
        picks = np.arange(min(n, self.options.latency_samples))
        for i in picks[:5]:  # warm caches and lazy imports
            model.predict(_rows(data, slice(i, i + 1)))
        times = []
        for i in picks:
            row = _rows(data, slice(i, i + 1))
            start = time.perf_counter()
            model.predict(row)
            times.append((time.perf_counter() - start) * 1000)
        t = np.array(times)
        return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
                "mean_ms": float(t.mean()), "n": len(t)}

    def _throughput_and_power(self, model: Any, data: Mapping[str, Any], n: int
                              ) -> tuple[float, float | None, str | None]:
        batch = _rows(data, slice(0, min(n, self.options.throughput_batch)))
        size = len(next(iter(batch.values())))
        before, why = read_energy_uj()
        start = time.perf_counter()
        done = 0
        while True:
            model.predict(batch)
            done += size
            elapsed = time.perf_counter() - start
            if elapsed >= self.options.throughput_seconds:
                break
        watts = None
        if before is not None:
            after, why = read_energy_uj()
            if after is not None:
                watts = average_watts(before, after, elapsed)
                why = ("whole-machine CPU package power (RAPL) while predicting batches, including any other "
                       "process running at the time")
        return done / elapsed, watts, why

    def _memory(self, scorer: Any) -> tuple[float | None, dict[str, float | None], dict[str, str]]:
        by_learner, method = {}, {}
        for lid, record in scorer.ensemble.learners.items():
            size, how = _learner_bytes(record.model)
            by_learner[lid] = None if size is None else size / 2 ** 20
            method[lid] = how
        sizes = [v for v in by_learner.values() if v is not None]
        return (float(sum(sizes)) if sizes else None), by_learner, method

    # -- adversarial ----------------------------------------------------------------------------

    def _adversarial(self, scorer: Any, notes: dict[str, str]) -> dict[str, Any] | None:
        """FGSM: x' = x + eps * sd_j * sign(d loss / d x_j) on present rows (Goodfellow et al., 2015).

        The ensemble's perturbation follows the summed cross-entropy gradients of its neural learners
        (other learners have no input gradients and see the same perturbed inputs); each neural
        learner is also attacked alone with its own gradient.
        """
        import torch

        eps = self.options.adversarial_epsilon
        ds = scorer.dataset
        neural = {lid: r for lid, r in scorer.ensemble.learners.items()
                  if isinstance(getattr(r.model, "model", None), torch.nn.Module)}
        if not neural:
            notes["adversarial"] = "no neural learner in the ensemble: gradient-based perturbation needs input gradients"
            return None
        sd = {m: ds.arrays[m][ds.masks[m]].std(axis=0) if ds.masks[m].any() else np.zeros(ds.arrays[m].shape[1:])
              for m in scorer.modalities}
        total = {m: np.zeros(ds.arrays[m].shape, dtype=np.float64) for m in scorer.modalities}
        learners: dict[str, Any] = {}
        for lid, record in scorer.ensemble.learners.items():
            if lid not in neural:
                learners[lid] = {"adversarial_accuracy": None,
                                 "reason": f"{record.spec.trainer} learner: no input gradients"}
                continue
            mods = record.spec.modalities
            rows = np.flatnonzero(scorer.eligible(mods, ds.masks))
            if not len(rows):
                learners[lid] = {"adversarial_accuracy": None, "reason": "no held-out sample has its modalities"}
                continue
            grads = self._input_gradients(record.model.model, {m: ds.arrays[m][rows] for m in mods},
                                          scorer.targets[rows])
            own = {}
            for m in mods:
                total[m][rows] += grads[m]
                own[m] = (ds.arrays[m][rows] + eps * sd[m] * np.sign(grads[m])).astype(np.float32)
            y = scorer.targets[rows]
            clean = float(np.mean(scorer.learner_outputs()[lid][rows].argmax(axis=1) == y))
            attacked = float(np.mean(record.model.predict_output(own).argmax(axis=1) == y))
            learners[lid] = {"clean_accuracy": clean, "adversarial_accuracy": attacked, "n_samples": len(rows)}
        perturbed = {}
        for m in scorer.modalities:
            step = eps * sd[m] * np.sign(total[m])
            step[~ds.masks[m]] = 0.0
            perturbed[m] = (ds.arrays[m] + step).astype(np.float32)
        return {"epsilon": eps, "epsilon_unit": "standard deviations of each feature",
                "clean_accuracy": scorer.score(), "adversarial_accuracy": scorer.score_output(scorer.output_with(perturbed)),
                "learners": learners}

    @staticmethod
    def _input_gradients(net: Any, inputs: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        device = next(net.parameters()).device  # a learner trained on a GPU stays there
        x = {m: torch.tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device, requires_grad=True)
             for m, a in inputs.items()}
        n = len(y)
        masks = torch.ones((n, len(x)), dtype=torch.bool, device=device)
        was_training = net.training
        net.eval()
        try:
            logits = net(x, masks)["logits"]
            target = torch.as_tensor(y, dtype=torch.long, device=device)
            loss = torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")
            grads = torch.autograd.grad(loss, list(x.values()))
        finally:
            net.train(was_training)
        return {m: g.detach().cpu().numpy().astype(np.float64) for m, g in zip(x, grads, strict=True)}


@hookimpl
def modalbag_register_reports(register: Register) -> None:
    register("autonomous_vehicle", SafetyReport, options=SafetyOptions,
             summary="sensor-failure scenarios, redundancy, latency, throughput, memory, power, FGSM")
