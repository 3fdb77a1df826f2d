"""Shared machinery of the tabular trainers (``sklearn_linear``, ``random_forest``, ``xgboost``,
``lightgbm``, ``catboost``, and the classical ``logistic``, ``svm``, ``knn``, ``hist_gradient_boosting``):
features, splits, search, records, and files beside each native model.

Not a plugin (no entry point): the trainer modules beside it import it. The libraries themselves are
imported only inside the functions that train or load, so listing or selecting trainers imports none.

**Features.** A bag's modalities become one float32 matrix, each column remembering its modality so
importance can be summed per modality. Reductions, fitted on nothing (the same function of a sample
at training and prediction time):

- vectors (``tabular``, ``text`` embeddings, ``image`` feature vectors; shape ``(d,)``): used as they
  are, one column per value, named ``name[j]``;
- raw images ``(C, H, W)``: per channel the mean, standard deviation, minimum and maximum over pixels,
  then the channel averaged over a ``grid`` x ``grid`` grid of cells (row-major; the grid shrinks to
  ``H`` or ``W`` when smaller): ``C * (4 + grid**2)`` columns named ``name:c0:mean``, ``name:c0:cell1,2``;
- sequences ``(T, F)``: per feature the mean, standard deviation, minimum, maximum, first value, last
  value and least-squares slope over the time steps: ``7 * F`` columns named ``name:f3:slope``.

A sample that lacks a modality gets NaN in every column of that modality: the gradient-boosting
libraries and scikit-learn's forests route NaN natively; ``sklearn_linear`` imputes it (see there), and
so do ``logistic``, ``svm`` and ``knn``, on the same design.

**Validation.** The engine holds out the validation rows (`modalbag.data.bags.split_validation`); the
GBMs stop early on them natively. With ``cross_validation_folds > 1`` (or ``walk_forward_validation``)
the trainer also scores its parameters by K-fold cross-validation over its training rows, stratified
for classification, forward-chaining for ``validation_strategy='time_series'``; folds split *distinct*
rows, so a bootstrap copy of a sample never sits on both sides. Results are in ``describe()`` and the
learner's notes.

**Hyperparameter search** (``hpo_trials`` / ``hpo_time_budget``): Optuna's seeded TPE sampler over the
trainer's documented ``SEARCH_SPACE``, each trial scored by the same cross-validation folds, within
the budget; the best parameters then train the final model. Needs ``pip install modalbag[hpo]``. A
trainer without a search space (``logistic``, which cross-validates its own strength) skips it with a note.

**Selection.** `tabular_score` is the score every tabular trainer proposes with: high for bags whose
modalities are all ``tabular`` (where boosted trees are the strongest learners), below the neural
trainer's for embeddings and raw images or sequences, which the fusion network learns better.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import importlib.util
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from modalbag.config.training import TrainingConfig
from modalbag.data.bags import distinct_rows
from modalbag.errors import ConfigError, MissingExtraError
from modalbag.io.artifacts import to_json
from modalbag.kernel import BagData, FitState, Run
from modalbag.kernel.options import integer_at_least, positive
from modalbag.kernel.records import EpochRecord, LearnerSpec
from modalbag.training.metrics import primary_loss, task_metrics

FORMAT = "modalbag.tabular"
FORMAT_VERSION = 1
METADATA_FILE = "learner.json"


def library_available(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def import_library(module: str, trainer: str, extra: str | None) -> Any:
    """Import an optional library, or raise `MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(trainer, module, extra) from exc


# -- features ----------------------------------------------------------------------------------

SEQUENCE_STATS = ("mean", "std", "min", "max", "first", "last", "slope")
IMAGE_STATS = ("mean", "std", "min", "max")


@attrs.frozen
class Block:
    """One modality's columns: which reduction makes them, and their names."""

    modality: str
    type: str
    shape: tuple[int, ...] = attrs.field(converter=tuple)
    reduction: str  # "vector", "image", "sequence"
    grid: int = 0

    @property
    def columns(self) -> list[str]:
        m = self.modality
        if self.reduction == "vector":
            return [f"{m}[{j}]" for j in range(self.shape[0])]
        if self.reduction == "sequence":
            return [f"{m}:f{j}:{s}" for j in range(self.shape[1]) for s in SEQUENCE_STATS]
        cells = [f"cell{r},{c}" for r in range(self._grid_hw[0]) for c in range(self._grid_hw[1])]
        return [f"{m}:c{ch}:{s}" for ch in range(self.shape[0]) for s in (*IMAGE_STATS, *cells)]

    @property
    def _grid_hw(self) -> tuple[int, int]:
        return min(self.grid, self.shape[1]), min(self.grid, self.shape[2])

    @property
    def width(self) -> int:
        if self.reduction == "vector":
            return self.shape[0]
        if self.reduction == "sequence":
            return self.shape[1] * len(SEQUENCE_STATS)
        gh, gw = self._grid_hw
        return self.shape[0] * (len(IMAGE_STATS) + gh * gw)

    def describe(self) -> str:
        if self.reduction == "vector":
            return f"{self.shape[0]} values as they are"
        if self.reduction == "sequence":
            return (f"sequence {self.shape}: per feature {', '.join(SEQUENCE_STATS)} over time "
                    f"({self.width} columns)")
        gh, gw = self._grid_hw
        return (f"image {self.shape}: per channel {', '.join(IMAGE_STATS)} and a {gh}x{gw} grid of "
                f"cell means ({self.width} columns)")

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """The block's columns for samples ``x`` (n, *shape): float32 (n, width)."""
        if self.reduction == "vector":
            return x
        if self.reduction == "sequence":
            return _sequence_features(x)
        return _image_features(x, *self._grid_hw)


def _sequence_features(x: np.ndarray) -> np.ndarray:
    n, t, f = x.shape
    x64 = x.astype(np.float64, copy=False)
    mean = x64.mean(axis=1)
    steps = np.arange(t, dtype=np.float64) - (t - 1) / 2.0
    denominator = float(np.sum(steps ** 2))
    slope = (np.einsum("t,ntf->nf", steps, x64 - mean[:, None, :]) / denominator if denominator > 0
             else np.zeros((n, f)))
    stats = (mean, x64.std(axis=1), x.min(axis=1), x.max(axis=1), x[:, 0], x[:, -1], slope)
    return np.stack(stats, axis=2).reshape(n, f * len(SEQUENCE_STATS)).astype(np.float32)


def _image_features(x: np.ndarray, gh: int, gw: int) -> np.ndarray:
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w).astype(np.float64, copy=False)
    stats = [flat.mean(axis=2), flat.std(axis=2), flat.min(axis=2), flat.max(axis=2)]
    row_edges = (np.arange(gh + 1) * h) // gh  # every cell non-empty because gh <= h
    col_edges = (np.arange(gw + 1) * w) // gw
    sums = np.add.reduceat(np.add.reduceat(x.astype(np.float64), row_edges[:-1], axis=2), col_edges[:-1], axis=3)
    areas = np.outer(np.diff(row_edges), np.diff(col_edges))
    cells = (sums / areas).reshape(n, c, gh * gw)
    return np.concatenate([np.stack(stats, axis=2), cells], axis=2).reshape(n, -1).astype(np.float32)


@attrs.frozen
class FeatureLayout:
    """How a bag's modalities become columns, and which modality each column came from."""

    blocks: tuple[Block, ...]

    @classmethod
    def build(cls, modalities: Sequence[str], specs: Mapping[str, Any], image_grid: int = 4) -> FeatureLayout:
        blocks = []
        for m in modalities:
            spec = specs[m]
            shape = tuple(spec.shape)
            if len(shape) == 1:
                blocks.append(Block(m, spec.type, shape, "vector"))
            elif len(shape) == 2:
                blocks.append(Block(m, spec.type, shape, "sequence"))
            elif len(shape) == 3:
                blocks.append(Block(m, spec.type, shape, "image", image_grid))
            else:
                raise ValueError(f"modality {m!r} has per-sample shape {shape}; tabular trainers take vectors, "
                                 f"(T, F) sequences or (C, H, W) images")
        return cls(tuple(blocks))

    @property
    def n_features(self) -> int:
        return sum(b.width for b in self.blocks)

    @property
    def feature_names(self) -> list[str]:
        return [name for b in self.blocks for name in b.columns]

    @property
    def feature_modalities(self) -> np.ndarray:
        """The modality of every column, in column order."""
        return np.array([b.modality for b in self.blocks for _ in range(b.width)], dtype=object)

    def describe(self) -> dict[str, str]:
        return {b.modality: b.describe() for b in self.blocks}

    def transform(self, arrays: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray] | None = None,
                  rows: np.ndarray | None = None) -> np.ndarray:
        """The (n, n_features) float32 matrix for ``rows`` of ``arrays`` (all rows when None).

        Samples whose ``masks[m]`` is False get NaN in modality ``m``'s columns.
        """
        take = (lambda a: a) if rows is None else (lambda a: a[rows])
        first = self.blocks[0]
        if len(self.blocks) == 1 and first.reduction == "vector" and masks is None:
            return np.ascontiguousarray(take(arrays[first.modality]), dtype=np.float32)
        n = len(rows) if rows is not None else len(arrays[first.modality])
        out = np.empty((n, self.n_features), dtype=np.float32)
        start = 0
        for block in self.blocks:
            stop = start + block.width
            out[:, start:stop] = block.reduce(take(arrays[block.modality])).reshape(n, block.width)
            if masks is not None and block.modality in masks:
                present = np.asarray(take(masks[block.modality]), dtype=bool)
                out[~present, start:stop] = np.nan
            start = stop
        return out

    def to_dict(self) -> list[dict[str, Any]]:
        return [attrs.asdict(b) for b in self.blocks]

    @classmethod
    def from_dict(cls, data: Sequence[Mapping[str, Any]]) -> FeatureLayout:
        return cls(tuple(Block(**b) for b in data))


def feature_importance(layout: FeatureLayout, raw: np.ndarray, kind: str, top: int = 10) -> dict[str, Any]:
    """Normalised importance: the ``top`` features and the share of each modality (sums to 1)."""
    raw = np.nan_to_num(np.abs(np.asarray(raw, dtype=np.float64)))
    total = raw.sum()
    share = raw / total if total > 0 else raw
    names = layout.feature_names
    modality_of = layout.feature_modalities
    order = np.argsort(-share, kind="stable")[:top]
    return {
        "importance_type": kind,
        "top_features": {names[i]: float(share[i]) for i in order if share[i] > 0},
        "modality_weights": {b.modality: float(share[modality_of == b.modality].sum()) for b in layout.blocks},
    }


# -- targets, weights and splits ---------------------------------------------------------------


def sample_weights(class_weights: Any, y: np.ndarray, task_type: str, n_classes: int) -> np.ndarray | None:
    """Per-row weights from ``class_weights`` (classification only), else None."""
    if class_weights is None or task_type != "classification":
        return None
    full = np.ones(n_classes, dtype=np.float64)
    if isinstance(class_weights, Mapping):
        for cls, weight in class_weights.items():
            if not 0 <= cls < n_classes:
                raise ConfigError(f"class_weights names class {cls}, but there are {n_classes} classes")
            full[cls] = weight
    else:
        if len(class_weights) != n_classes:
            raise ConfigError(f"class_weights has {len(class_weights)} entries for {n_classes} classes")
        full[:] = class_weights
    return full[y].astype(np.float32)


@attrs.frozen
class Folds:
    """Cross-validation folds over a learner's training rows, as row ids."""

    splitter: str
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]

    def __len__(self) -> int:
        return len(self.folds)


def cv_folds(rows: np.ndarray, targets: np.ndarray, k: int, *, task_type: str, time_series: bool,
             seed: int) -> Folds:
    """K folds over the *distinct* rows of ``rows``: train keeps every bootstrap copy, val is distinct.

    Time series: scikit-learn's ``TimeSeriesSplit`` over the rows in index (time) order, so each fold
    validates on a block that comes after all of its training rows (walk-forward, expanding window).
    Classification: ``StratifiedKFold`` when every class present has at least ``k`` rows. Otherwise
    shuffled ``KFold``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

    distinct = np.unique(rows)
    if len(distinct) < k + 1:
        raise ValueError(f"{k}-fold cross-validation needs more than {k} distinct training rows, got {len(distinct)}")
    labels = None
    if time_series:
        splitter: Any = TimeSeriesSplit(n_splits=k)
    elif task_type == "classification" and np.bincount(targets[distinct])[np.unique(targets[distinct])].min() >= k:
        splitter, labels = StratifiedKFold(k, shuffle=True, random_state=seed), targets[distinct]
    else:
        splitter = KFold(k, shuffle=True, random_state=seed)
    folds = []
    for train_idx, val_idx in splitter.split(distinct, labels):
        folds.append((rows[np.isin(rows, distinct[train_idx])], distinct[val_idx]))
    return Folds(type(splitter).__name__, tuple(folds))


# -- search space ------------------------------------------------------------------------------


@attrs.frozen
class IntRange:
    low: int
    high: int
    log: bool = False

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


@attrs.frozen
class FloatRange:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@attrs.frozen
class Choice:
    options: tuple[Any, ...] = attrs.field(converter=tuple)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna logs every trial to stderr by default; a library prints nothing unless asked."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


# -- records -----------------------------------------------------------------------------------


@attrs.define
class RoundRecorder:
    """Turns each boosting round's measured losses into an `EpochRecord` and calls ``epoch_end``.

    Validators steer a GBM as they steer a neural fit: `round` returns True when one set
    ``fit.control.should_stop`` and the library's callback stops training there.
    """

    run: Run
    fit: FitState
    n_rows: int
    learning_rate: float | None
    best_round: int = 0
    best_value: float = math.inf
    _last: float = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()

    def round(self, number: int, train_loss: float, val_loss: float | None) -> bool:
        seconds = time.perf_counter() - self._last
        record = EpochRecord(epoch=number, train_loss=float(train_loss),
                             val_loss=None if val_loss is None else float(val_loss),
                             learning_rate=self.learning_rate, training_time=seconds,
                             samples_per_second=self.n_rows / seconds if seconds > 0 else None)
        fit = self.fit
        fit.epoch = number
        fit.records.append(record)
        monitored = record.monitored()
        if monitored < self.best_value:
            self.best_value, self.best_round = monitored, number
        self.run.hook.modalbag_epoch_end(run=self.run, fit=fit, record=record)
        self._last = time.perf_counter()
        if fit.control.should_stop:
            fit.notes.append(f"stopped after boosting round {number}: {fit.control.stop_reason}")
            return True
        return False


# -- the learner -------------------------------------------------------------------------------


def optional_positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """None, or a finite number > 0."""
    if value is not None:
        positive(instance, attribute, value)


def unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class TabularOptions:
    """Options every tabular trainer takes.

    ``image_grid``: cells per side of the grid raw images are averaged over; ``threads``: threads the
    library trains with (None: one for a training matrix under `SMALL_MATRIX` values, where
    synchronising threads costs more than they save, else the library's default);
    ``top_features``: features ``describe()`` lists.
    """

    image_grid: int = attrs.field(default=4, validator=integer_at_least(1), metadata={
        "help": "Cells per side of the grid raw images are averaged over (per channel) to make columns."})
    threads: int | None = attrs.field(default=None, validator=optional_positive, metadata={
        "help": "Threads the library trains with (None: one for a small training matrix, else the "
                "library's default)."})
    top_features: int = attrs.field(default=10, validator=integer_at_least(1), metadata={
        "help": "Features describe() lists by importance."})


@attrs.frozen
class Matrix:
    """Rows of a learner's feature matrix with their targets and weights."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None

    def __len__(self) -> int:
        return len(self.x)


#: Boosting rounds each epoch of the training budget (``epochs``) allows when ``n_estimators`` is None:
#: the strategy's rounds are capped at ``epochs * ROUNDS_PER_EPOCH``. The default 100 epochs allow 1,500,
#: every strategy's rounds; ``--set training.epochs=5`` allows 75, so a quick look stays quick.
ROUNDS_PER_EPOCH = 15

#: The rule, as the boosting trainers' ``n_estimators`` help states it.
ROUNDS_RULE = (f"at most epochs x {ROUNDS_PER_EPOCH} (the default 100 epochs bound none; --set training.epochs=5 "
               f"gives at most {5 * ROUNDS_PER_EPOCH}); a value set here is used as it is")


def budget_rounds(chosen: int | None, strategy_rounds: int, epochs: int) -> tuple[int, str | None]:
    """Boosting rounds for a fit: ``chosen`` (the user's ``n_estimators``) as it is, else the strategy's
    rounds capped at ``epochs * ROUNDS_PER_EPOCH``; with the note saying so when the cap applies."""
    if chosen:
        return int(chosen), None
    budget = max(1, int(epochs) * ROUNDS_PER_EPOCH)
    if budget >= strategy_rounds:
        return int(strategy_rounds), None
    return budget, (f"boosting rounds capped at {budget} (epochs={epochs} x {ROUNDS_PER_EPOCH}) instead of the "
                    f"strategy's {strategy_rounds}; set n_estimators to choose them")


#: Below this many values (rows x features) a tabular learner trains on one thread by default.
SMALL_MATRIX = 100_000

#: Scores for selection: (speed, balanced, accuracy) for bags whose modalities are all tabular.
_STRATEGY = {"speed": 0, "balanced": 1, "accuracy": 2}


def tabular_score(profile: Any, strategy: str, all_tabular: tuple[float, float, float],
                  mixed: float = 1.2, embeddings: float = 0.8, raw: float = 0.5) -> float:
    """A tabular trainer's score for a bag (see the module docstring): the neural trainer proposes
    1.0 for one modality and 1.5 for several (+0.5 with raw images or sequences)."""
    specs = [profile.specs[m] for m in profile.modalities]
    if any(len(s.shape) > 1 for s in specs):
        return raw
    tabular = [s.type == "tabular" for s in specs]
    if all(tabular):
        return all_tabular[_STRATEGY[strategy]]
    return mixed if any(tabular) else embeddings


def library_proposal(library: str, profile: Any, strategy: str, scores: tuple[float, float, float],
                     architectures: Mapping[str, Mapping[str, Any]], reason: str) -> Any:
    """A trainer's proposal for a bag, or None when its optional library is not installed (such a
    trainer is listed but never selected automatically)."""
    from modalbag.kernel.proposals import LearnerProposal

    if not library_available(library):
        return None
    return LearnerProposal(tabular_score(profile, strategy, scores), dict(architectures[strategy]), reason)


class TabularLearner(abc.ABC):
    """What every tabular trainer shares; a subclass supplies the library calls.

    Subclasses set ``trainer`` (its plugin name), ``library`` (the module imported), ``extra`` (the
    ``modalbag[...]`` extra that installs it), ``SEARCH_SPACE`` (native parameter name -> range) and
    implement `_params`, `_train`, `_predict`, `_raw_importance`, `_save_model` and `_load_model`.
    """

    trainer: ClassVar[str]
    library: ClassVar[str]
    extra: ClassVar[str | None]
    importance_type: ClassVar[str]
    SEARCH_SPACE: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, spec: LearnerSpec, config: Any, options: Any):
        self.spec, self.config = spec, config
        self.options = options if options is not None else self.options_class()()
        self.task_type: str = config.task_type
        self.n_outputs: int | None = None
        self.layout: FeatureLayout | None = None
        self.model: Any = None
        self.params: dict[str, Any] = {}
        self.cross_validation: dict[str, Any] | None = None
        self.search: dict[str, Any] | None = None
        self.info: dict[str, Any] = {}
        self.threads: int | None = self.options.threads
        self._rounds_note: str | None = None

    @classmethod
    def options_class(cls) -> type:
        return TabularOptions

    # -- availability -------------------------------------------------------------------------

    @classmethod
    def check_available(cls) -> None:
        """Raise `MissingExtraError` (with the ``pip install`` that fixes it) if the library is missing."""
        if not library_available(cls.library):
            raise MissingExtraError(cls.trainer, cls.library, cls.extra)

    @classmethod
    def _lib(cls) -> Any:
        return import_library(cls.library, cls.trainer, cls.extra)

    @staticmethod
    def estimate_footprint(spec: LearnerSpec, bag: Any, specs: Mapping[str, Any], config: Any,
                           n_outputs: int) -> int:
        """Bytes while training, for executors that budget memory: the float32 feature matrix about
        three times over (ours, the library's binned copy, the validation or fold rows) plus 64 MiB."""
        n_features = FeatureLayout.build(spec.modalities, specs).n_features
        return int(len(bag.rows) * n_features * 4 * 3 + 64 * 2 ** 20)

    # -- subclass hooks -----------------------------------------------------------------------

    @abc.abstractmethod
    def _params(self, seed: int) -> dict[str, Any]:
        """Supplied by each library's subclass."""

    @abc.abstractmethod
    def _train(self, params: dict[str, Any], train: Matrix, val: Matrix | None,
               recorder: RoundRecorder | None) -> Any:
        """Supplied by each library's subclass."""

    @abc.abstractmethod
    def _predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Supplied by each library's subclass."""

    @abc.abstractmethod
    def _raw_importance(self) -> np.ndarray:
        """Supplied by each library's subclass."""

    @abc.abstractmethod
    def _save_model(self, directory: Path) -> list[str]:
        """Supplied by each library's subclass."""

    @abc.abstractmethod
    def _load_model(self, directory: Path, files: list[str]) -> Any:
        """Supplied by each library's subclass."""

    def _learning_rate(self, params: Mapping[str, Any]) -> float | None:
        return None

    def _rounds(self, chosen: int | None, strategy_rounds: int) -> int:
        """Boosting rounds within the config's epochs budget (`budget_rounds`); the fit notes a cap."""
        rounds, self._rounds_note = budget_rounds(chosen, strategy_rounds, self.config.epochs)
        return rounds

    def _records_per_round(self) -> bool:
        """True when `_train` reports each round through the recorder (else one record is written)."""
        return False

    # -- fitting ------------------------------------------------------------------------------

    @property
    def _patience(self) -> int:
        return self.config.early_stopping_patience

    def fit(self, data: BagData, run: Run, fit: FitState) -> None:
        """Train on ``data.train_rows``; stop early (GBMs) and record losses on ``data.val_rows``."""
        self.check_available()
        config = self.config
        self.cross_validation = self.search = None
        self.info = {}
        self.n_outputs = run.task.n_outputs
        self.layout = FeatureLayout.build(self.spec.modalities, data.specs, self.options.image_grid)
        train_rows, val_rows = data.train_rows, data.val_rows
        if len(train_rows) < 2:
            raise ValueError(f"bag {self.spec.bag_id} has {len(train_rows)} training rows; it needs at least 2")
        small = len(train_rows) * self.layout.n_features < SMALL_MATRIX
        self.threads = self.options.threads or (1 if small else None)
        universe = distinct_rows(np.concatenate([train_rows, val_rows]))  # np.unique, in linear time
        x_all = self.layout.transform(data.arrays, data.masks, universe)

        def matrix(rows: np.ndarray) -> Matrix:
            y = data.targets[rows]
            w = sample_weights(config.class_weights, y, self.task_type, self.n_outputs)
            return Matrix(x_all[np.searchsorted(universe, rows)], y, w)

        seed = fit.seed
        self._rounds_note = None
        params = self._params(seed)
        if self._rounds_note:
            fit.notes.append(self._rounds_note)
        folds = self._folds(train_rows, data.targets, seed)
        searching = folds is not None and bool(config.hpo_trials or config.hpo_time_budget)
        if searching and not self.SEARCH_SPACE:
            fit.notes.append(f"hyperparameter search skipped: trainer {self.trainer!r} has no search space "
                             f"(it tunes itself)")
        elif searching:
            params = self._hyperparameter_search(params, folds, matrix, seed)
            fit.notes.append(f"hyperparameter search: {self.search['trials']} trials, best mean CV loss "
                             f"{self.search['best_cv_loss']:.4f} with {self.search['best_params']}")
        if folds is not None and self.cross_validation is None and self._cv_requested:
            self.cross_validation = self._cross_validate(params, folds, matrix)
        if self.cross_validation is not None:
            fit.notes.append(_cv_note(self.cross_validation, self.task_type))
        self.params = params
        train = matrix(train_rows)
        val = matrix(val_rows) if len(val_rows) else None
        recorder = RoundRecorder(run, fit, len(train), self._learning_rate(params))
        started = time.perf_counter()
        self.model = self._train(params, train, val, recorder)
        seconds = time.perf_counter() - started
        if not self._records_per_round():
            self._single_record(run, fit, train, val, seconds)

    @property
    def _cv_requested(self) -> bool:
        return self.config.cross_validation_folds > 1 or self.config.walk_forward_validation

    def _folds(self, train_rows: np.ndarray, targets: np.ndarray, seed: int) -> Folds | None:
        config = self.config
        searching = bool(config.hpo_trials or config.hpo_time_budget)
        if not (self._cv_requested or searching):
            return None
        k = config.cross_validation_folds
        if k <= 1:
            k = 5 if config.walk_forward_validation else 3
        return cv_folds(train_rows, targets, k, task_type=self.task_type,
                        time_series=config.validation_strategy == "time_series", seed=seed)

    def _fold_scores(self, params: dict[str, Any], folds: Folds,
                     matrix: Callable[[np.ndarray], Matrix]) -> list[dict[str, float]]:
        scores = []
        for train_rows, val_rows in folds.folds:
            train, val = matrix(train_rows), matrix(val_rows)
            output = self._predict(self._train(params, train, val, None), val.x)
            metrics = task_metrics(self.task_type, val.y, output)
            metrics["loss"] = primary_loss(self.task_type, val.y, output)
            scores.append(metrics)
        return scores

    def _cross_validate(self, params: dict[str, Any], folds: Folds,
                        matrix: Callable[[np.ndarray], Matrix]) -> dict[str, Any]:
        return _cv_summary(folds, self._fold_scores(params, folds, matrix))

    def _hyperparameter_search(self, params: dict[str, Any], folds: Folds,
                               matrix: Callable[[np.ndarray], Matrix], seed: int) -> dict[str, Any]:
        optuna = import_library("optuna", self.trainer, "hpo")
        config = self.config

        def objective(trial: Any) -> float:
            candidate = params | {name: dim.suggest(trial, name) for name, dim in self.SEARCH_SPACE.items()}
            scores = self._fold_scores(candidate, folds, matrix)
            trial.set_user_attr("scores", scores)
            return float(np.mean([s["loss"] for s in scores]))

        started = time.perf_counter()
        with _quiet_optuna(optuna):
            study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
            study.optimize(objective, n_trials=config.hpo_trials or None, timeout=config.hpo_time_budget,
                           n_jobs=1, catch=())
        best = study.best_trial
        self.search = to_json({"library": "optuna", "sampler": "TPESampler", "seed": seed,
                                 "trials": len(study.trials), "seconds": time.perf_counter() - started,
                                 "best_params": dict(best.params), "best_cv_loss": float(best.value),
                                 "space": {name: attrs.asdict(dim) | {"kind": type(dim).__name__}
                                           for name, dim in self.SEARCH_SPACE.items()}})
        if self._cv_requested:
            self.cross_validation = _cv_summary(folds, best.user_attrs["scores"])
        return params | dict(best.params)

    def _single_record(self, run: Run, fit: FitState, train: Matrix, val: Matrix | None, seconds: float) -> None:
        """One record for trainers without rounds: losses measured on the training and validation rows."""
        train_loss = primary_loss(self.task_type, train.y, self._predict(self.model, train.x))
        val_loss, metrics = None, {}
        if val is not None:
            output = self._predict(self.model, val.x)
            val_loss = primary_loss(self.task_type, val.y, output)
            metrics = task_metrics(self.task_type, val.y, output)
        record = EpochRecord(epoch=1, train_loss=train_loss, val_loss=val_loss, accuracy=metrics.get("accuracy"),
                             f1_score=metrics.get("f1"), mse=metrics.get("mse"), r2=metrics.get("r2"),
                             training_time=seconds, samples_per_second=len(train) / seconds if seconds > 0 else None)
        fit.epoch = 1
        fit.records.append(record)
        run.hook.modalbag_epoch_end(run=run, fit=fit, record=record)

    # -- prediction ---------------------------------------------------------------------------

    def predict_output(self, inputs: Mapping[str, np.ndarray],
                       masks: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Class probabilities (n, C), label probabilities (n, L) or regression values (n, k)."""
        if self.model is None or self.layout is None:
            raise RuntimeError("this learner has not been fitted")
        x = self.layout.transform(inputs, masks)
        return self._predict(self.model, x)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.trainer, "modalities": list(self.spec.modalities),
                               "task_type": self.task_type}
        if self.layout is None:
            return out
        out |= {"n_features": self.layout.n_features, "features": self.layout.describe(),
                "params": to_json(self.params), **to_json(self.info)}
        if self.model is not None:
            out["feature_importance"] = feature_importance(self.layout, self._raw_importance(),
                                                           self.importance_type, self.options.top_features)
        if self.cross_validation is not None:
            out["cross_validation"] = self.cross_validation
        if self.search is not None:
            out["hyperparameter_search"] = self.search
        return out

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the learner to directory ``path``: the library's native model file(s) and
        ``learner.json`` (features, task, parameters, validation results). No pickle."""
        if self.model is None or self.layout is None:
            raise RuntimeError("this learner has not been fitted")
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._save_model(directory)
        lib = self._lib()
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "trainer": self.trainer, "library": self.library,
                "library_version": getattr(lib, "__version__", None), "model_files": files,
                "spec": to_json(attrs.asdict(self.spec)), "task_type": self.task_type,
                "n_outputs": self.n_outputs, "layout": self.layout.to_dict(),
                "options": to_json(attrs.asdict(self.options)), "params": to_json(self.params),
                "info": to_json(self.info), "cross_validation": self.cross_validation, "search": self.search}
        (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, path: str | Path) -> TabularLearner:
        """A learner written by `save`, ready to predict."""
        directory = Path(path)
        meta = read_metadata(directory)
        if meta["trainer"] != cls.trainer:
            raise ValueError(f"{directory} holds a {meta['trainer']!r} learner, not {cls.trainer!r}")
        cls.check_available()
        spec_data = dict(meta["spec"])
        spec_data["modalities"] = tuple(spec_data["modalities"])
        spec = LearnerSpec(**spec_data)
        config = TrainingConfig.from_dict({"task_type": meta["task_type"]})
        options = cls.options_class()(**meta["options"])
        learner = cls(spec, config, options)
        learner.n_outputs = meta["n_outputs"]
        learner.layout = FeatureLayout.from_dict(meta["layout"])
        learner.params = dict(meta["params"])
        learner.info = dict(meta["info"])
        learner.cross_validation, learner.search = meta["cross_validation"], meta["search"]
        learner.model = learner._load_model(directory, list(meta["model_files"]))
        return learner


def read_metadata(directory: Path) -> dict[str, Any]:
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved tabular learner: it has no {METADATA_FILE}")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is format {meta.get('format')!r} version {meta.get('version')!r}; "
                         f"this modalbag reads {FORMAT!r} version {FORMAT_VERSION}")
    return meta


def load_learner(path: str | Path, catalog: Any = None) -> Any:
    """Load any saved tabular learner: its ``learner.json`` names the trainer plugin that reads it."""
    from modalbag.kernel.registry import default_catalog

    meta = read_metadata(Path(path))
    component = (catalog or default_catalog()).get("trainer", meta["trainer"])
    return component.factory.load(path)


# -- helpers -----------------------------------------------------------------------------------


def _cv_summary(folds: Folds, scores: list[dict[str, float]]) -> dict[str, Any]:
    keys = scores[0].keys()
    return {"splitter": folds.splitter, "folds": len(folds), "scores": scores,
            "mean": {k: float(np.mean([s[k] for s in scores])) for k in keys},
            "std": {k: float(np.std([s[k] for s in scores])) for k in keys}}


def _cv_note(cv: Mapping[str, Any], task_type: str) -> str:
    key = "r2" if task_type == "regression" else "accuracy"
    return (f"{cv['folds']}-fold cross-validation ({cv['splitter']}): loss {cv['mean']['loss']:.4f} "
            f"± {cv['std']['loss']:.4f}, {key} {cv['mean'][key]:.4f} ± {cv['std'][key]:.4f}")


__all__ = ["Block", "FeatureLayout", "Folds", "MissingExtraError", "RoundRecorder", "TabularLearner",
           "TabularOptions", "cv_folds", "feature_importance", "load_learner", "sample_weights", "tabular_score"]
