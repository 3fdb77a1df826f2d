"""Selection by measurement: each modality subset's trainer is the portfolio candidate that scores
best on held-out rows, and the winner's cross-fitted outputs are what the combination is fitted on.

Fixed rules cannot know which learner suits a dataset (an RBF SVM beats boosted trees on small dense
views; a fusion network wins on raw images with many rows), so the optimization strategy only sets a
*portfolio* (`modalbag.engine.selection.PORTFOLIOS`, pruned where a candidate cannot fit the data's size), the
trainers' own proposal scores order it, and k-fold cross-validation decides:

1. per distinct modality subset S of the ensemble's bags, take the training rows that have every
   modality of S (at most `MAX_ROWS`, taken in one run-seeded order so the subsets' samples nest);
2. fit each candidate on k-1 folds of those rows (k = 5 up to 500 rows, else 3; folds stratified)
   and predict the held-out fold (forward-chaining folds under ``validation_strategy='time_series'``,
   so no row is predicted by a model that saw later rows); score the out-of-fold predictions by log loss after temperature
   scaling (so a well-ranked but over-confident learner is not penalised for what calibration
   fixes), squared error for regression, binary log loss for multilabel;
3. the lowest loss wins (ties: the earlier candidate). Under ``speed`` and ``balanced`` the candidates
   race: after the first `RACE_FOLDS` folds, one whose loss on those folds' held-out rows is clearly
   worse than the best's (`race`: a paired test and a margin), or merely behind it at several times
   its estimated cost, stops there and is reported as stopped; a close, cheap candidate always runs
   every fold;
4. the winner's out-of-fold predictions are the subset's *cross-fitted* outputs: predictions of
   every row from a model that did not see it, which `modalbag.ensemble.ensemble` calibrates and combines.

**k-fold bagging.** Where the measurement used every row of S (at most `MAX_ROWS`, and not under
forward-chaining folds), S's bootstrap bags are replaced by its k *fold bags*: each holds the
training folds of one split and is validated on its held-out fold, and its learner is the winner's
model measured on that split, kept rather than fitted again. S's expert is then the average of k
models that each saw (k-1)/k of the rows, the way cross-validation bagging works: no refit, no row
lost to a bootstrap's duplicates or to a second validation split, and every row predicted by the one
model that did not see it. (A neural winner is early-stopped on its held-out fold, so its
out-of-fold outputs lean slightly optimistic, as in any k-fold bagging that stops early.) Beyond
`MAX_ROWS`, the measurement sees a sample and S's bootstrap bags train the winner on all rows.

**Narrowing.** Under the ``speed`` and ``balanced`` strategies the whole portfolio is measured on the
*probe* subsets (each single modality and the largest subsets of the plan), first; the other
subsets then fit only the candidate whose loss relative to each probe's best (``loss / best loss``)
is lowest on average over the probes. The learner that suits the data's views alone and all
together rarely loses by much on a pair, and the candidates that do not suit it (a boosted-tree
model on a thousand dense rows of ten classes) then cost a handful of fits instead of k per subset.
``accuracy`` measures the whole portfolio everywhere.

A subset with a single candidate (a trainer named explicitly) is not measured; it is cross-fitted
(and fold-bagged) only on small data (`SINGLE_CANDIDATE_MAX_ROWS`), where its bags' out-of-bag rows
are too few.

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

from modalbag.data.bags import Bag
from modalbag.data.dataset import MultimodalDataset
from modalbag.engine.engine import Engine
from modalbag.ensemble.combination import calibrated_log_probabilities, fit_temperature, task_loss
from modalbag.errors import PluginError
from modalbag.execution.fitting import fit_learner
from modalbag.kernel.proposals import BagProfile
from modalbag.kernel.records import LearnerSpec, TrainedLearner
from modalbag.kernel.registry import Catalog
from modalbag.kernel.run import TaskInfo
from modalbag.logs import get_logger
from modalbag.training.metrics import task_metrics

log = get_logger("modalbag.portfolio")

MAX_ROWS = 5000
#: A subset with a single candidate is cross-fitted only up to this many rows: beyond, its bags'
#: out-of-bag rows are evidence enough, and k extra fits (of a fusion network, say) are not worth it.
SINGLE_CANDIDATE_MAX_ROWS = 100
#: Subsets up to this many rows are measured (and fold-bagged) with 5 folds, larger ones with 3.
FIVE_FOLDS_MAX_ROWS = 500
#: Racing: after this many folds, a candidate clearly worse than the best stops (`race`).
RACE_FOLDS = 2
#: ... clearly worse: its paired per-row loss difference above this many standard errors ...
RACE_Z = 2.5
#: ... and its loss above this multiple of the best's.
RACE_MARGIN = 1.2
#: A candidate that cost at least this multiple of the leader's time on those folds must not be worse ...
RACE_COSTLY = 4.0
#: ... by more than this many standard errors to earn the remaining folds ...
RACE_COSTLY_Z = 0.5
#: ... where its estimated seconds per fit are at least this: below, finishing costs next to nothing.
RACE_COSTLY_MIN_SECONDS = 0.02
#: Why a candidate that is installed was not measured on a subset (the other reasons name what is missing).
CANNOT_LEARN = "cannot learn this bag's modalities"


@attrs.frozen
class CrossFit:
    """One modality subset's measurement: each candidate's result and the winner's out-of-fold outputs."""

    modalities: tuple[str, ...]
    winner: str
    rows: np.ndarray = attrs.field(eq=False, repr=False)
    output: np.ndarray = attrs.field(eq=False, repr=False)  # (len(rows), n_outputs), out of fold
    scores: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)  # candidate -> measured or skipped
    folds: int = 0
    #: True when the subset's bags are the measurement's fold bags (its learners are the winner's fold models).
    fold_bagged: bool = False
    #: The winner's calibration fitted on its fold models' joint out-of-fold outputs (`Measurement._calibrate_cross_fit`),
    #: recorded in the fold learners' architecture so that a refit of one (a resumed run) is identical.
    calibration: Mapping[str, Any] | None = None

    def summary(self) -> str:
        measured = {n: s for n, s in self.scores.items() if "loss" in s}
        ranked = ", ".join(f"{n} {s['loss']:.4f}" for n, s in sorted(measured.items(), key=lambda kv: kv[1]["loss"]))
        stopped = [n for n, s in self.scores.items() if "stopped" in s]
        narrowed = [n for n, s in self.scores.items() if "narrowed" in s]
        skipped = [n for n, s in self.scores.items() if not {"loss", "stopped", "narrowed"} & set(s)]
        text = f"{self.winner}: lowest {self.folds}-fold CV loss on {len(self.rows)} rows ({ranked})"
        text += f"; raced out after {RACE_FOLDS} folds: {', '.join(stopped)}" if stopped else ""
        text += f"; narrowed away by the probe subsets: {', '.join(narrowed)}" if narrowed else ""
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

    k = 5 if len(y) <= FIVE_FOLDS_MAX_ROWS else 3
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
    """A run of the same config that writes nothing: no run directory, sinks, checkpoints or bar.

    The caller's plugin instances take part (an objective or validator a user passed shapes the
    measured models, which k-fold bagging keeps as learners); configured sinks do not.
    """
    quiet = attrs.evolve(config, run_dir=None, save_checkpoints=False, checkpoint_dir=None, sinks=(),
                         progress_bar=False, executor="serial", n_jobs=1)
    return Engine(engine.catalog, engine.plugins).prepare(quiet, task)


@attrs.frozen
class Plan:
    """What the measurement decided for a run: its bags and specs (fold bags in place of a measured
    subset's bootstrap bags, ids renumbered in plan order), each measured subset's cross-fit, and the
    learners the measurement already fitted on their bags (to be recorded, not fitted again)."""

    bags: list[Bag]
    specs: list[LearnerSpec]
    cross_fits: dict[tuple[str, ...], CrossFit]
    fitted: dict[str, TrainedLearner] = attrs.field(factory=dict)


def probe_subsets(subsets: Sequence[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The subsets the whole portfolio is measured on: each single modality and the largest ones."""
    if not subsets:
        return set()
    largest = max(len(s) for s in subsets)
    return {s for s in subsets if len(s) == 1 or len(s) == largest}


def relative_probe_losses(probes: Sequence[CrossFit]) -> dict[str, float]:
    """Each candidate measured on every probe: its mean of ``loss / best loss`` over them (1 = best everywhere)."""
    ratios: dict[str, list[float]] = {}
    for found in probes:
        losses = {n: s["loss"] for n, s in found.scores.items() if "loss" in s}
        if not losses:
            continue
        best = min(losses.values())
        for name, loss in losses.items():
            ratios.setdefault(name, []).append((loss + 1e-12) / (best + 1e-12))
    complete = len([p for p in probes if any("loss" in s for s in p.scores.values())])
    return {n: float(np.mean(r)) for n, r in ratios.items() if len(r) == complete}


def _narrowed_reason(name: str, kept: str, regret: Mapping[str, float]) -> str:
    if name not in regret:
        return f"not measured on every probe subset; {kept} was kept"
    return (f"narrowed away: its loss averaged {regret[name]:.3f}x the best over the probe subsets (each modality "
            f"alone and the largest subsets), {kept}'s {regret[kept]:.3f}x")


class Measurement:
    """Measures the portfolio of every modality subset of a run (see the module docstring)."""

    def __init__(self, engine: Engine, config: Any, task: TaskInfo, dataset: MultimodalDataset,
                 targets: np.ndarray):
        self.engine, self.config, self.task, self.dataset, self.targets = engine, config, task, dataset, targets
        self._run: Any = None
        self._reported: set[str] = set()

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = quiet_run(self.engine, self.config, self.task)
        return self._run

    @property
    def _time_series(self) -> bool:
        return self.config.validation_strategy == "time_series"

    def measure_all(self, bags: Sequence[Bag], specs: Sequence[LearnerSpec], choose: bool = True) -> Plan:
        """The run's plan: each subset's winner as trainer, fold bags where the subset is small enough.

        ``choose=False`` (a resumed run) keeps the recorded bags and specs: fold-bagged subsets carry
        their evidence in their learners, and a measured subset with bootstrap bags is cross-fitted
        again with its recorded trainer, so the resumed ensemble combines exactly as it would have.
        """
        first: dict[tuple[str, ...], LearnerSpec] = {}
        for spec in specs:
            first.setdefault(tuple(spec.modalities), spec)
        if not choose:
            return self._remeasure(bags, specs, first)
        candidates = {s: tuple(spec.candidates or (spec.trainer,)) for s, spec in first.items()}
        fold_rows = {s: rows for s, spec in first.items()
                     if (rows := self._fold_bag_rows(s, len(candidates[s]))) is not None}
        plan_bags, plan_specs, slots = self._renumber(bags, specs, fold_rows)
        probes = probe_subsets(list(first))
        narrowing = all(spec.strategy != "accuracy" for spec in first.values()) and len(probes) < len(first)
        order = [s for s in first if s in probes] + [s for s in first if s not in probes]
        results: dict[tuple[str, ...], CrossFit] = {}
        fitted: dict[str, TrainedLearner] = {}
        regret: dict[str, float] | None = None
        for modalities in order:
            spec, names, narrowed = first[modalities], candidates[modalities], ()
            if narrowing and modalities not in probes and len(names) > 1:
                if regret is None:
                    regret = relative_probe_losses([results[p] for p in order if p in probes and p in results])
                best = min((n for n in names if n in regret), key=lambda n: regret[n], default=None)
                if best is not None:
                    names, narrowed = (best,), tuple(n for n in names if n != best)
            if modalities in slots:
                found, models = self._measure_fold_bags(spec, names, slots[modalities])
                fitted |= models
            else:
                found = self.measure(spec, names)
            if found is None:
                continue
            if narrowed:
                assert regret is not None
                found = attrs.evolve(found, scores={**found.scores, **{
                    n: {"narrowed": _narrowed_reason(n, names[0], regret)} for n in narrowed}})
            results[modalities] = found
        plan_specs = [self._with_winner(spec, results[tuple(spec.modalities)])
                      if tuple(spec.modalities) in results else spec for spec in plan_specs]
        by_id = {spec.learner_id: spec for spec in plan_specs}
        for lid, learner in fitted.items():
            learner.spec = by_id[lid]
        return Plan(plan_bags, plan_specs, results, fitted)

    def _remeasure(self, bags: Sequence[Bag], specs: Sequence[LearnerSpec],
                   first: Mapping[tuple[str, ...], LearnerSpec]) -> Plan:
        fold_bagged = {tuple(b.modalities) for b in bags if b.fold is not None}
        results = {}
        for modalities, spec in first.items():
            if modalities in fold_bagged:
                continue
            found = self.measure(spec, (spec.trainer,), always=bool(spec.candidates))
            if found is not None:
                results[modalities] = found
        return Plan(list(bags), list(specs), results)

    def _fold_bag_rows(self, modalities: tuple[str, ...], n_candidates: int) -> np.ndarray | None:
        """The rows of ``modalities``' fold bags, or None where its bags stay bootstrap bags."""
        if self._time_series:
            return None
        present = np.all([self.dataset.masks[m] for m in modalities], axis=0)
        n = int(present.sum())
        if n < 4 or n > MAX_ROWS or (n_candidates == 1 and n > SINGLE_CANDIDATE_MAX_ROWS):
            return None
        return np.flatnonzero(present)

    def _renumber(self, bags: Sequence[Bag], specs: Sequence[LearnerSpec],
                  fold_rows: Mapping[tuple[str, ...], np.ndarray]
                  ) -> tuple[list[Bag], list[LearnerSpec], dict[tuple[str, ...], list[tuple[Bag, LearnerSpec]]]]:
        """The plan's bags in order, a fold-bagged subset's k fold bags where its first bag was (its
        other bags dropped), ids renumbered from 0; and each fold-bagged subset's (bag, spec) slots."""
        spec_of = {spec.bag_id: spec for spec in specs}
        out_bags: list[Bag] = []
        out_specs: list[LearnerSpec] = []
        slots: dict[tuple[str, ...], list[tuple[Bag, LearnerSpec]]] = {}
        for bag in bags:
            spec = spec_of.get(bag.id)
            if spec is None:
                continue
            modalities = tuple(spec.modalities)
            if modalities not in fold_rows:
                new = attrs.evolve(bag, id=len(out_bags))
                out_bags.append(new)
                out_specs.append(attrs.evolve(spec, learner_id=new.learner_id, bag_id=new.id))
                continue
            if modalities in slots:
                continue
            rows = fold_rows[modalities]
            seed = subset_seed(self.config.random_state, modalities)
            slots[modalities] = []
            for i, (train, test) in enumerate(folds_for(self.targets[rows], self.task.task_type, seed)):
                new = Bag(len(out_bags), modalities, rows[train], rows[test], seed + i, fold=i)
                new_spec = attrs.evolve(spec, learner_id=new.learner_id, bag_id=new.id)
                out_bags.append(new)
                out_specs.append(new_spec)
                slots[modalities].append((new, new_spec))
        return out_bags, out_specs, slots

    def _with_winner(self, spec: LearnerSpec, found: CrossFit) -> LearnerSpec:
        architecture = spec.architecture
        if found.winner != spec.trainer:
            proposal = self._proposal(found.winner, spec)
            architecture = dict(proposal.architecture) if proposal is not None else {}
        if found.fold_bagged and found.calibration is not None:
            architecture = {**architecture, "calibration": dict(found.calibration)}
        return attrs.evolve(spec, trainer=found.winner, architecture=architecture, reason=found.summary(),
                            measured={name: dict(score) for name, score in found.scores.items()})

    def _proposal(self, trainer: str, spec: LearnerSpec) -> Any:
        profile = BagProfile(tuple(spec.modalities), self.dataset.specs, self.dataset.n_samples,
                             self.task.task_type, self.task.n_outputs)
        strategy = spec.strategy or "balanced"
        return self.engine.catalog.get("trainer", trainer).factory.propose(profile, strategy)

    def measure(self, spec: LearnerSpec, candidates: Sequence[str], always: bool = False) -> CrossFit | None:
        """Cross-validate ``candidates`` over ``spec``'s subset on (at most `MAX_ROWS` of) its rows,
        the models discarded; None where there is nothing to measure (a single candidate on more
        than `SINGLE_CANDIDATE_MAX_ROWS` rows, unless ``always``)."""
        modalities = tuple(spec.modalities)
        seed = subset_seed(self.config.random_state, modalities)
        rows = measurement_rows(self.dataset, modalities, self.config.random_state)
        if len(rows) < 4 or (len(candidates) == 1 and len(rows) > SINGLE_CANDIDATE_MAX_ROWS and not always):
            return None
        folds = folds_for(self.targets[rows], self.task.task_type, seed, time_series=self._time_series)
        slots = [(Bag(spec.bag_id, modalities, rows[train], rows[test], seed + i, fold=i), spec)
                 for i, (train, test) in enumerate(folds)]
        found, _ = self._measure_slots(spec, candidates, slots, keep=False)
        return found

    def _measure_fold_bags(self, spec: LearnerSpec, candidates: Sequence[str],
                           slots: Sequence[tuple[Bag, LearnerSpec]]) -> tuple[CrossFit | None, dict[str, TrainedLearner]]:
        found, models = self._measure_slots(spec, candidates, slots, keep=True)
        if found is not None:
            found = attrs.evolve(found, fold_bagged=True)
        return found, models

    def _measure_slots(self, spec: LearnerSpec, candidates: Sequence[str], slots: Sequence[tuple[Bag, LearnerSpec]],
                       keep: bool) -> tuple[CrossFit | None, dict[str, TrainedLearner]]:
        """Fit each candidate on every (fold bag, spec) slot and score its out-of-fold outputs, racing
        them where the strategy allows (see `race`); with ``keep``, also return the winner's fitted
        learners by learner id."""
        modalities = tuple(spec.modalities)
        rows = np.unique(np.concatenate([bag.oob_rows for bag, _ in slots]))  # every row unless forward-chaining
        y = self.targets[rows]
        scores: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        running: dict[str, _Partial] = {}
        for name in candidates:
            reason = self._unavailable(name, spec)
            if reason is not None:
                scores[name] = {"skipped": reason}
                if reason != CANNOT_LEARN and name not in self._reported:  # once a run, not once a subset
                    self._reported.add(name)
                    log.warning("selection.candidate_unavailable", trainer=name, reason=reason,
                                consequence="the same config and seed may choose differently where it is installed")
                continue
            running[name] = _Partial(np.zeros((len(rows), self.task.n_outputs)), np.zeros(len(rows), dtype=bool), {})
        racing = spec.strategy != "accuracy" and len(running) > 1 and len(slots) > RACE_FOLDS
        stages = (slots[:RACE_FOLDS], slots[RACE_FOLDS:]) if racing else (slots,)
        defer = self._can_defer_calibration(rows, slots)
        for i, stage in enumerate(stages):
            for name in list(running):
                began = time.perf_counter()
                try:
                    self._out_of_fold(name, rows, stage, running[name], defer)
                    if i == len(stages) - 1:
                        self._calibrate_cross_fit(rows, slots, running[name])
                except Exception as exc:  # noqa: BLE001 - a failing candidate is reported, the others go on
                    scores[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                    del running[name]
                    continue
                running[name].seconds += time.perf_counter() - began
            if racing and i == 0 and len(running) > 1:
                costs = {name: getattr(self._proposal(name, spec), "cost", None) for name in running}
                for name, why in race(self.task.task_type, self.targets[rows], running, costs).items():
                    scores[name] = {"stopped": why, "seconds": running.pop(name).seconds}
        best: str | None = None
        for name, partial in running.items():
            scores[name] = {**_score(self.task.task_type, y, partial.output), "seconds": partial.seconds}
            if best is None or scores[name]["loss"] < scores[best]["loss"]:  # ties: the earlier candidate
                best = name
        scores = {n: scores[n] for n in candidates if n in scores}  # the portfolio's order
        if best is None:
            log.warning("selection.nothing_measured", modalities=list(modalities), scores=scores)
            return None, {}
        found = CrossFit(modalities, best, rows, running[best].output, scores, len(slots),
                         calibration=running[best].calibration)
        log.info("selection.measured", modalities=list(modalities), winner=best, rows=len(rows),
                 folds=len(slots), seconds=round(time.perf_counter() - started, 3),
                 losses={n: round(s["loss"], 4) for n, s in scores.items() if "loss" in s},
                 stopped=[n for n, s in scores.items() if "stopped" in s])
        return found, running[best].learners if keep else {}

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
            return CANNOT_LEARN
        return None

    def _can_defer_calibration(self, rows: np.ndarray, slots: Sequence[tuple[Bag, LearnerSpec]]) -> bool:
        """Whether the fold models can share one calibration: classification, every row predicted
        (not forward-chaining) and every fold trained on every class of the rows."""
        if self.task.task_type != "classification":
            return False
        held_out = np.concatenate([bag.oob_rows for bag, _ in slots])
        if len(held_out) != len(rows):
            return False
        classes = np.unique(self.targets[rows])
        return all(len(np.unique(self.targets[bag.rows])) == len(classes) for bag, _ in slots)

    def _calibrate_cross_fit(self, rows: np.ndarray, slots: Sequence[tuple[Bag, LearnerSpec]],
                             partial: _Partial) -> None:
        """Fold models that left their calibration to the cross-fit (a trainer's
        ``CROSS_FIT_CALIBRATION``) get one, fitted on all their out-of-fold outputs, and the outputs
        are predicted again with it: k internal calibration folds per fold model saved, and the
        calibration sees every row instead of a fold's share."""
        learners = [partial.learners[spec.learner_id].model for _, spec in slots]
        if not learners or not all(getattr(learner, "deferred_calibration", False) for learner in learners):
            return
        calibration = learners[0].fit_cross_fit_calibration(partial.output, self.targets[rows])
        partial.calibration = calibration
        for (bag, spec), learner in zip(slots, learners, strict=True):
            learner.set_cross_fit_calibration(calibration)
            held_out = bag.oob_rows  # a fold bag's validation rows
            output = learner.predict_output({m: self.dataset.arrays[m][held_out] for m in spec.modalities})
            partial.output[np.searchsorted(rows, held_out)] = output
            trained = partial.learners[spec.learner_id]
            trained.validation = {**trained.validation,
                                  **task_metrics(self.task.task_type, self.targets[held_out], output)}
            trained.notes.append("calibration fitted on its cross-fit's out-of-fold outputs; its validation "
                                 "metrics are measured with it")

    def _out_of_fold(self, trainer: str, rows: np.ndarray, slots: Sequence[tuple[Bag, LearnerSpec]],
                     partial: _Partial, defer_calibration: bool = False) -> None:
        """Fit ``trainer`` on each slot and write its outputs on the slot's held-out rows into ``partial``
        (``defer_calibration``: a trainer that can leaves its calibration to `_calibrate_cross_fit`)."""
        planned = slots[0][1]  # the rule's choice keeps its (possibly user-edited) architecture
        architecture = (dict(planned.architecture) if trainer == planned.trainer
                        else dict(self._proposal(trainer, planned).architecture))
        if defer_calibration and getattr(self.engine.catalog.get("trainer", trainer).factory,
                                         "CROSS_FIT_CALIBRATION", False):
            architecture["calibration"] = "cross_fit"
        for bag, spec in slots:
            fold_spec = attrs.evolve(spec, trainer=trainer, architecture=architecture, candidates=(),
                                     measured={}, reason="")
            result = fit_learner(fold_spec, bag, self.dataset, self.targets, self.run, self.engine.catalog,
                                 announce=False)
            if not result.ok:
                raise RuntimeError(f"fold {bag.fold + 1}: {result.error}")
            held_out = bag.oob_rows
            at = np.searchsorted(rows, held_out)
            partial.output[at] = result.model.predict_output(
                {m: self.dataset.arrays[m][held_out] for m in spec.modalities})
            partial.done[at] = True
            partial.learners[spec.learner_id] = result


@attrs.define
class _Partial:
    """A candidate's out-of-fold outputs so far (``done``: the rows predicted), fitted learners and seconds."""

    output: np.ndarray
    done: np.ndarray
    learners: dict[str, TrainedLearner]
    seconds: float = 0.0
    calibration: Mapping[str, Any] | None = None


def race(task_type: str, y: np.ndarray, running: Mapping[str, _Partial],
         costs: Mapping[str, float | None] | None = None) -> dict[str, str]:
    """The candidates to stop after the first `RACE_FOLDS` folds, with why.

    On the rows those folds held out, each candidate's per-row loss (after temperature scaling, as
    `_score`) is compared with the best candidate's, row by row: a candidate is stopped when the mean
    of the paired differences exceeds `RACE_Z` standard errors, a one-sided test that it is worse,
    and its loss is more than `RACE_MARGIN` times the best's. A candidate close to the best always
    finishes; one that is clearly worse does not cost the remaining folds.

    Cost counts too: a candidate whose estimated cost per fit (``costs``: each trainer's
    `LearnerProposal.cost`, a deterministic formula, so the choice never depends on timing noise) is
    `RACE_COSTLY` times the leader's (and not negligible: `RACE_COSTLY_MIN_SECONDS`) is stopped when
    it is merely behind (`RACE_COSTLY_Z` standard errors). Boosted trees on a few hundred dense rows cost 5-15 times an SVM and rarely catch up; the
    strategies that race trade that small chance for the time, and ``accuracy`` (which does not race)
    still measures every candidate on every fold.
    """
    done = next(iter(running.values())).done
    yy = y[done]
    losses = {}
    for name, partial in running.items():
        out = partial.output[done]
        if task_type == "classification":
            out = np.exp(calibrated_log_probabilities(out, fit_temperature(out, yy)))
        losses[name] = task_loss(task_type, yy, out)
    leader = min(losses, key=lambda n: losses[n].mean())
    best = float(losses[leader].mean())
    stopped = {}
    for name, loss in losses.items():
        if name == leader:
            continue
        diff = loss - losses[leader]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
        mine, theirs = (costs or {}).get(name), (costs or {}).get(leader)
        cost = mine / theirs if mine is not None and theirs and mine >= RACE_COSTLY_MIN_SECONDS else 0.0
        against = (f"stopped after {RACE_FOLDS} folds: loss {loss.mean():.4f} on their {len(yy)} held-out rows "
                   f"against {leader}'s {best:.4f} ({diff.mean() / max(se, 1e-300):.1f} standard errors worse")
        if diff.mean() > RACE_Z * se and loss.mean() > RACE_MARGIN * best:
            stopped[name] = against + ")"
        elif cost >= RACE_COSTLY and diff.mean() > RACE_COSTLY_Z * se:
            stopped[name] = against + f", at an estimated {cost:.1f}x its cost per fit)"
    return stopped


__all__ = ["CANNOT_LEARN", "MAX_ROWS", "CrossFit", "Measurement", "Plan", "folds_for", "probe_subsets", "quiet_run", "relative_probe_losses"]
