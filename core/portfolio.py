"""Selection by measurement: each modality subset's trainer is the portfolio candidate that scores
best on held-out rows, and the winner's cross-fitted outputs are what the combination is fitted on.

Fixed rules cannot know which learner suits a dataset (an RBF SVM beats boosted trees on small dense
views; a fusion network wins on raw images with many rows), so the optimization strategy only sets a
*portfolio* (`modalbag.selection.PORTFOLIOS`, pruned where a candidate cannot fit the data's size), the
trainers' own proposal scores order it, and k-fold cross-validation decides:

1. per distinct modality subset S of the ensemble's bags, take the training rows that have every
   modality of S (at most `MAX_ROWS`, taken in one run-seeded order so the subsets' samples nest);
2. fit each candidate on k-1 folds of those rows (k = 5 up to 500 rows, else 3; folds stratified)
   and predict the held-out fold (forward-chaining folds under ``validation_strategy='time_series'``,
   so no row is predicted by a model that saw later rows); score the out-of-fold predictions by log loss after temperature
   scaling (so a well-ranked but over-confident learner is not penalised for what calibration
   fixes), squared error for regression, binary log loss for multilabel;
3. the lowest loss wins (ties: the earlier candidate); every bag over S trains the winner;
4. the winner's out-of-fold predictions are the subset's *cross-fitted* outputs: predictions of
   every row from a model that did not see it, which `modalbag.ensemble` calibrates and combines.

A subset with a single candidate (a trainer named explicitly) is not measured; it is cross-fitted
only on small data (`SINGLE_CANDIDATE_MAX_ROWS`), where its bags' out-of-bag rows are too few.

The measurement runs in the calling process, in a fixed order, with seeds derived from the run's
``random_state`` and the subset, so the choice is the same whatever the executor. Its fits use a
quiet copy of the run (no run directory, sinks or checkpoints). A candidate whose library is not
installed is reported as skipped, never silently replaced by another.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from modalbag.bags import Bag
from modalbag.combination import calibrated_log_probabilities, fit_temperature, task_loss
from modalbag.data import MultimodalDataset
from modalbag.engine import Engine, TaskInfo, fit_learner
from modalbag.errors import PluginError
from modalbag.logs import get_logger
from modalbag.records import LearnerSpec
from modalbag.registry import Catalog
from modalbag.selection import BagProfile

log = get_logger("modalbag.portfolio")

MAX_ROWS = 5000
#: A subset with a single candidate is cross-fitted only up to this many rows: beyond, its bags'
#: out-of-bag rows are evidence enough, and k extra fits (of a fusion network, say) are not worth it.
SINGLE_CANDIDATE_MAX_ROWS = 100


@attrs.frozen
class CrossFit:
    """One modality subset's measurement: each candidate's result and the winner's out-of-fold outputs."""

    modalities: tuple[str, ...]
    winner: str
    rows: np.ndarray = attrs.field(eq=False, repr=False)
    output: np.ndarray = attrs.field(eq=False, repr=False)  # (len(rows), n_outputs), out of fold
    scores: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)  # candidate -> measured or skipped
    folds: int = 0

    def summary(self) -> str:
        measured = {n: s for n, s in self.scores.items() if "loss" in s}
        ranked = ", ".join(f"{n} {s['loss']:.4f}" for n, s in sorted(measured.items(), key=lambda kv: kv[1]["loss"]))
        skipped = [n for n, s in self.scores.items() if "loss" not in s]
        text = f"{self.winner}: lowest {self.folds}-fold CV loss on {len(self.rows)} rows ({ranked})"
        return text + (f"; not measured: {', '.join(skipped)}" if skipped else "")


def subset_seed(random_state: int, modalities: Sequence[str]) -> int:
    return (random_state * 1_000_003 + zlib.crc32("|".join(modalities).encode())) % 2**31


def measurement_rows(dataset: MultimodalDataset, modalities: Sequence[str], random_state: int) -> np.ndarray:
    """The rows that have every one of ``modalities``, at most `MAX_ROWS` of them.

    Beyond the cap, every subset takes its rows in the order of one permutation seeded by the run
    alone, so subsets' samples nest: the experts a pattern combines share as many evidence rows as
    possible (independent samples per subset would leave few rows that every expert predicted).
    """
    present = np.all([dataset.masks[m] for m in modalities], axis=0)
    if present.sum() <= MAX_ROWS:
        return np.flatnonzero(present)
    order = np.random.default_rng(random_state).permutation(dataset.n_samples)
    return np.sort(order[present[order]][:MAX_ROWS])


def folds_for(y: np.ndarray, task_type: str, seed: int,
              time_series: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-fold positions (k = 5 up to 500 rows, else 3), stratified where every class has k rows: small
    data needs the larger training folds and the lower variance; beyond, the cost of k fits wins.
    ``time_series``: forward-chaining folds over the rows in order (each fold predicts later rows
    only; the first block gets no out-of-fold prediction)."""
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    k = 5 if len(y) <= 500 else 3
    if time_series:
        return list(TimeSeriesSplit(min(k, len(y) - 1)).split(y))
    if task_type == "classification":
        counts = np.bincount(y)
        smallest = int(counts[counts > 0].min())
        if smallest >= 2:
            return list(StratifiedKFold(min(k, smallest), shuffle=True, random_state=seed).split(y, y))
    return list(KFold(min(k, len(y)), shuffle=True, random_state=seed).split(y))


def _score(task_type: str, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    if task_type == "classification":
        temperature = fit_temperature(output, y)
        calibrated = np.exp(calibrated_log_probabilities(output, temperature))
        return {"loss": float(task_loss(task_type, y, calibrated).mean()),
                "accuracy": float(np.mean(output.argmax(axis=1) == y)), "temperature": temperature}
    return {"loss": float(task_loss(task_type, y, output).mean())}


def quiet_run(engine: Engine, config: Any, task: TaskInfo) -> Any:
    """A run of the same config that writes nothing: no run directory, sinks, checkpoints or bar."""
    quiet = attrs.evolve(config, run_dir=None, save_checkpoints=False, checkpoint_dir=None, sinks=(),
                         progress_bar=False, executor="serial", n_jobs=1)
    return Engine(engine.catalog).prepare(quiet, task)


class Measurement:
    """Measures the portfolio of every modality subset of a run (see the module docstring)."""

    def __init__(self, engine: Engine, config: Any, task: TaskInfo, dataset: MultimodalDataset,
                 targets: np.ndarray):
        self.engine, self.config, self.task, self.dataset, self.targets = engine, config, task, dataset, targets
        self._run: Any = None

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = quiet_run(self.engine, self.config, self.task)
        return self._run

    def measure_all(self, specs: Sequence[LearnerSpec], choose: bool = True
                    ) -> tuple[list[LearnerSpec], dict[tuple[str, ...], CrossFit]]:
        """Specs with each subset's winner as trainer, and each subset's cross-fit.

        ``choose=False`` keeps every spec's trainer (a resumed run) and only cross-fits it, wherever the
        original run did (a measured subset), so the resumed ensemble combines exactly as it would have.
        """
        first: dict[tuple[str, ...], LearnerSpec] = {}
        for spec in specs:
            first.setdefault(tuple(spec.modalities), spec)
        results: dict[tuple[str, ...], CrossFit] = {}
        for modalities, spec in first.items():
            candidates = (spec.candidates or (spec.trainer,)) if choose else (spec.trainer,)
            found = self.measure(spec, candidates, always=not choose and bool(spec.candidates))
            if found is not None:
                results[modalities] = found
        out = []
        for spec in specs:
            found = results.get(tuple(spec.modalities))
            if found is None or not choose:
                out.append(spec)
                continue
            out.append(self._with_winner(spec, found))
        return out, results

    def _with_winner(self, spec: LearnerSpec, found: CrossFit) -> LearnerSpec:
        architecture = spec.architecture
        if found.winner != spec.trainer:
            proposal = self._proposal(found.winner, spec)
            architecture = dict(proposal.architecture) if proposal is not None else {}
        return attrs.evolve(spec, trainer=found.winner, architecture=architecture, reason=found.summary(),
                            measured={name: dict(score) for name, score in found.scores.items()})

    def _proposal(self, trainer: str, spec: LearnerSpec) -> Any:
        profile = BagProfile(tuple(spec.modalities), self.dataset.specs, self.dataset.n_samples,
                             self.task.task_type, self.task.n_outputs)
        strategy = spec.strategy or "balanced"
        return self.engine.catalog.get("trainer", trainer).factory.propose(profile, strategy)

    def measure(self, spec: LearnerSpec, candidates: Sequence[str], always: bool = False) -> CrossFit | None:
        """Cross-validate ``candidates`` over ``spec``'s subset; None where there is nothing to measure
        (a single candidate on more than `SINGLE_CANDIDATE_MAX_ROWS` rows, unless ``always``)."""
        modalities = tuple(spec.modalities)
        seed = subset_seed(self.config.random_state, modalities)
        rows = measurement_rows(self.dataset, modalities, self.config.random_state)
        if len(rows) < 4 or (len(candidates) == 1 and len(rows) > SINGLE_CANDIDATE_MAX_ROWS and not always):
            return None
        folds = folds_for(self.targets[rows], self.task.task_type, seed,
                          time_series=self.config.validation_strategy == "time_series")
        scored = np.unique(np.concatenate([test for _, test in folds]))  # every row unless forward-chaining
        y = self.targets[rows[scored]]
        scores: dict[str, dict[str, Any]] = {}
        outputs: dict[str, np.ndarray] = {}
        started = time.perf_counter()
        for name in candidates:
            reason = self._unavailable(name, spec)
            if reason is not None:
                scores[name] = {"skipped": reason}
                continue
            began = time.perf_counter()
            try:
                output = self._out_of_fold(spec, name, rows, folds, seed)
            except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, the others go on
                scores[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                continue
            outputs[name] = output[scored]
            scores[name] = {**_score(self.task.task_type, y, output), "seconds": time.perf_counter() - began}
        measured = [n for n in candidates if n in outputs]
        if not measured:
            log.warning("selection.nothing_measured", modalities=list(modalities), scores=scores)
            return None
        winner = min(measured, key=lambda n: (scores[n]["loss"], measured.index(n)))
        found = CrossFit(modalities, winner, rows[scored], outputs[winner], scores, len(folds))
        log.info("selection.measured", modalities=list(modalities), winner=winner, rows=len(rows),
                 folds=len(folds), seconds=round(time.perf_counter() - started, 3),
                 losses={n: round(s["loss"], 4) for n, s in scores.items() if "loss" in s})
        return found

    def _unavailable(self, name: str, spec: LearnerSpec) -> str | None:
        catalog: Catalog = self.engine.catalog
        try:
            component = catalog.get("trainer", name)
        except PluginError as exc:
            return f"not installed: {exc}"
        check = getattr(component.factory, "check_available", None)
        try:
            if check is not None:
                check()
        except PluginError as exc:
            return str(exc)
        if self._proposal(name, spec) is None:
            return "cannot learn this bag's modalities"
        return None

    def _out_of_fold(self, spec: LearnerSpec, trainer: str, rows: np.ndarray,
                     folds: Sequence[tuple[np.ndarray, np.ndarray]], seed: int) -> np.ndarray:
        proposal = self._proposal(trainer, spec)
        fold_spec = attrs.evolve(spec, trainer=trainer, architecture=dict(proposal.architecture), candidates=())
        output = np.zeros((len(rows), self.task.n_outputs))
        for i, (train, test) in enumerate(folds):
            bag = Bag(spec.bag_id, tuple(spec.modalities), rows[train], np.empty(0, dtype=np.int64), seed + i)
            result = fit_learner(fold_spec, bag, self.dataset, self.targets, self.run, self.engine.catalog,
                                 announce=False)
            if not result.ok:
                raise RuntimeError(f"fold {i + 1}: {result.error}")
            held_out = rows[test]
            output[test] = result.model.predict_output({m: self.dataset.arrays[m][held_out] for m in spec.modalities})
        return output


__all__ = ["MAX_ROWS", "CrossFit", "Measurement", "folds_for", "quiet_run"]
