"""Modality-dropout bagging: each bag is a modality subset plus a bootstrap of the samples.

Strategies decide which subsets the ensemble gets:

- ``uniform``: each modality kept with probability ``modality_keep_prob`` (redrawn when empty).
- ``adaptive``: the full set and every single modality first (the bags that keep an ensemble
  accurate when modalities go missing), then subsets favouring the informative modalities, with
  every subset size represented.
- ``exhaustive``: every non-empty subset, smallest first, up to ``n_bags``.

A subset repeats (with a fresh bootstrap) only after every candidate subset has been used, and
never when ``allow_repeats=False``. A bag's rows are drawn among the samples that have at least
one of its modalities; its out-of-bag rows are the others that do, and weigh the ensemble.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
from collections.abc import Iterator, Sequence

import attrs
import numpy as np

from modalbag.config.validators import seed
from modalbag.data.dataset import MultimodalDataset
from modalbag.errors import ConfigError, DataError

DROPOUT_STRATEGIES = ("uniform", "adaptive", "exhaustive")


@attrs.frozen
class Bag:
    """One ensemble member's view of the data.

    A bootstrap bag's ``oob_rows`` are the eligible rows its draw missed. A *fold* bag (``fold`` set:
    `modalbag.engine.portfolio`'s k-fold bagging of a measured modality subset) holds the training folds of
    one cross-validation split, distinct rows, and ``oob_rows`` is the held-out fold: the learner's
    validation rows and its out-of-fold evidence.
    """

    id: int
    modalities: tuple[str, ...]
    rows: np.ndarray = attrs.field(eq=False, repr=lambda r: f"<{len(r)} rows>")
    oob_rows: np.ndarray = attrs.field(eq=False, repr=lambda r: f"<{len(r)} rows>")
    seed: int
    fold: int | None = None

    @property
    def learner_id(self) -> str:
        return f"bag_{self.id:03d}"


def _at_least_one(instance: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{attribute.name} must be at least 1 (or None for no cap), got {value!r}")


@attrs.frozen
class EnsembleConfig:
    """How bags are drawn (``create_ensemble``'s arguments)."""

    n_bags: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    dropout_strategy: str = attrs.field(default="adaptive", validator=attrs.validators.in_(DROPOUT_STRATEGIES))
    sample_ratio: float = attrs.field(default=1.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    modality_keep_prob: float = attrs.field(default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    max_modalities: int | None = attrs.field(default=None, validator=_at_least_one)
    allow_repeats: bool = True
    random_state: int = attrs.field(default=0, validator=seed)


def modality_informativeness(dataset: MultimodalDataset, labels: np.ndarray, task_type: str,
                             random_state: int = 0, max_rows: int = 2000) -> dict[str, float]:
    """How well each modality alone predicts the labels: 3-fold CV score of a ridge model.

    Cheap by design (a linear model on at most ``max_rows`` rows, raw arrays mean-pooled to
    vectors); it only ranks modalities for the ``adaptive`` strategy. Scores are in [0, 1].
    """
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(random_state)
    scores = {}
    for name in dataset.names:
        rows = np.flatnonzero(dataset.masks[name])
        if len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, max_rows, replace=False))
        x = _as_vectors(dataset.arrays[name][rows])
        y = labels[rows]
        if task_type == "classification":
            counts = np.bincount(y)
            if len(rows) < 30 or (counts[counts > 0] < 3).any():
                scores[name] = 0.0
                continue
            baseline = counts.max() / counts.sum()
            cv = cross_val_score(make_pipeline(StandardScaler(), RidgeClassifier(alpha=10.0)), x, y, cv=3)
            scores[name] = float(max(0.0, (cv.mean() - baseline) / max(1e-9, 1 - baseline)))
        else:
            target = y if y.ndim == 1 else y.reshape(len(y), -1)
            if len(rows) < 30:
                scores[name] = 0.0
                continue
            cv = cross_val_score(make_pipeline(StandardScaler(), Ridge(alpha=10.0)), x, target, cv=3, scoring="r2")
            scores[name] = float(np.clip(cv.mean(), 0.0, 1.0))
    return scores


def _as_vectors(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.ndim == 3:  # sequence (n, T, F): mean and std over time
        return np.concatenate([array.mean(axis=1), array.std(axis=1)], axis=1)
    return array.reshape(len(array), array.shape[1], -1).mean(axis=2)  # image: channel means


#: Up to this many candidate subsets (every non-empty subset of at most ``max_modalities``: 4,095 for
#: 12 modalities), `choose_subsets` builds and orders all of them, as modalbag always did: a seed draws
#: the same bags as before. Beyond, it produces only the first ``n_bags`` of the same preference order,
#: lazily (the eager way is 2^M: 18 s at 20 modalities, out of memory at 30). The lazy order is the same
#: rule, but ties are broken differently: ``adaptive`` ranks modalities of equal informativeness in a
#: seeded random order and takes equal-mean subsets in a seeded random order among those it has reached
#: (not a uniformly random one among all of them), and ``uniform`` draws its subsets from the generator
#: in blocks, so the same seed gives other subsets than an eager run would.
EAGER_SUBSETS_MAX = 4096


def _candidate_subsets(names: Sequence[str], max_size: int) -> list[tuple[str, ...]]:
    return [s for k in range(1, max_size + 1) for s in itertools.combinations(names, k)]


def _count_subsets(m: int, max_size: int) -> int:
    return sum(math.comb(m, k) for k in range(1, max_size + 1))


def choose_subsets(names: Sequence[str], config: EnsembleConfig,
                   informativeness: dict[str, float] | None, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """The modality subset of each bag, in bag order.

    Up to `EAGER_SUBSETS_MAX` candidate subsets, every candidate is built and ordered; beyond, only the
    first ``n_bags`` of the strategy's preference order are produced (see `EAGER_SUBSETS_MAX` for what
    differs), so the cost grows with ``n_bags`` and the number of modalities, not with 2^M.
    """
    names = tuple(names)
    max_size = len(names) if config.max_modalities is None else min(config.max_modalities, len(names))
    total = _count_subsets(len(names), max_size)
    if total <= EAGER_SUBSETS_MAX:
        order = _eager_order(names, config, max_size, informativeness, rng)
    else:
        wanted = min(config.n_bags, total)
        if config.dropout_strategy == "exhaustive":
            lazy: Iterator[tuple[str, ...]] = _exhaustive_lazy(names, max_size)
        elif config.dropout_strategy == "uniform":
            lazy = _uniform_lazy(names, max_size, wanted, config.modality_keep_prob, rng)
        else:
            lazy = _adaptive_lazy(names, max_size, informativeness or {}, rng)
        order = list(itertools.islice(lazy, wanted))
    if config.n_bags <= len(order) or not config.allow_repeats:
        return order[: config.n_bags]
    repeated = list(order)
    while len(repeated) < config.n_bags:  # cycle in preference order: fresh bootstrap each time
        repeated.extend(order[: config.n_bags - len(repeated)])
    return repeated


def _eager_order(names: tuple[str, ...], config: EnsembleConfig, max_size: int,
                 informativeness: dict[str, float] | None, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Every candidate subset in preference order (modalbag's original way; small cases only)."""
    candidates = _candidate_subsets(names, max_size)
    if config.dropout_strategy == "exhaustive":
        return candidates
    if config.dropout_strategy == "uniform":
        return _uniform_order(names, candidates, config.modality_keep_prob, rng)
    return _adaptive_order(names, candidates, max_size, informativeness or {}, rng)


def _uniform_order(names: Sequence[str], candidates: list[tuple[str, ...]], keep: float,
                   rng: np.random.Generator) -> list[tuple[str, ...]]:
    allowed = set(candidates)
    order: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()  # membership in a set, not the list: same draws, linear time
    for _ in range(200 * len(candidates)):
        if len(order) == len(candidates):
            break
        subset = tuple(n for n in names if rng.random() < keep)
        if subset in allowed and subset not in seen:
            order.append(subset)
            seen.add(subset)
    order += [c for c in candidates if c not in seen]  # a tiny keep probability still terminates
    return order


def _adaptive_head(names: Sequence[str], max_size: int, info: dict[str, float]) -> list[tuple[str, ...]]:
    """The full set (or the ``max_size`` most informative modalities), then every single modality by
    informativeness."""
    full = tuple(names)
    if max_size < len(names):  # the largest allowed subset of the most informative modalities
        best = sorted(names, key=lambda n: -info.get(n, 0.0))[:max_size]
        full = tuple(n for n in names if n in best)
    singles = sorted(((n,) for n in names), key=lambda s: -info.get(s[0], 0.0))
    return [full] + [s for s in singles if s != full]


def _adaptive_order(names: Sequence[str], candidates: list[tuple[str, ...]], max_size: int,
                    info: dict[str, float], rng: np.random.Generator) -> list[tuple[str, ...]]:
    order = _adaptive_head(names, max_size, info)
    taken = set(order)
    rest = [c for c in candidates if c not in taken]
    by_size: dict[int, list[tuple[str, ...]]] = {}
    for c in rest:
        by_size.setdefault(len(c), []).append(c)
    for size in by_size:  # within a size: informative modalities first, ties broken at random
        jitter = {c: rng.random() * 1e-6 for c in by_size[size]}
        by_size[size].sort(key=lambda c: -(np.mean([info.get(n, 0.0) for n in c]) + jitter[c]))
    sizes = sorted(by_size, reverse=True)
    queues = {size: collections.deque(by_size[size]) for size in sizes}
    while any(queues.values()):  # round-robin over sizes keeps every size represented
        for size in sizes:
            if queues[size]:
                order.append(queues[size].popleft())
    return order


def _exhaustive_lazy(names: tuple[str, ...], max_size: int) -> Iterator[tuple[str, ...]]:
    """Every non-empty subset, smallest first (the eager order, produced one at a time)."""
    for k in range(1, max_size + 1):
        yield from itertools.combinations(names, k)


def _uniform_lazy(names: tuple[str, ...], max_size: int, wanted: int, keep: float,
                  rng: np.random.Generator) -> Iterator[tuple[str, ...]]:
    """Distinct subsets, each modality kept with probability ``keep``, redrawn when empty or larger
    than ``max_size``; after ``200 * wanted`` draws (a tiny ``keep``, or a ``max_size`` that few draws
    meet), the unused subsets in exhaustive order."""
    seen: set[tuple[str, ...]] = set()
    m = len(names)
    block = max(64, 2 * wanted)
    for _ in range(0, 200 * wanted, block):
        kept = rng.random((block, m)) < keep
        sizes = kept.sum(axis=1)
        for row in kept[(sizes > 0) & (sizes <= max_size)]:
            subset = tuple(n for n, on in zip(names, row, strict=True) if on)
            if subset not in seen:
                seen.add(subset)
                yield subset
    for subset in _exhaustive_lazy(names, max_size):
        if subset not in seen:
            seen.add(subset)
            yield subset


def _k_best_subsets(names: tuple[str, ...], k: int, info: dict[str, float],
                    rng: np.random.Generator) -> Iterator[tuple[str, ...]]:
    """Every ``k``-subset of ``names`` by decreasing total (so mean) informativeness, lazily.

    The modalities are ranked by informativeness (equal ones in a seeded random order); a subset is a
    sorted tuple of ranks, and moving one of its ranks one place down never raises its total, so a
    best-first search from the ``k`` best ranks over those moves yields every subset once, in order,
    holding only the subsets it has reached (O(k) new ones per subset yielded). Equal totals come
    out in a seeded random order among those reached.
    """
    m = len(names)
    tie = rng.permutation(m)
    ranked = sorted(range(m), key=lambda i: (-info.get(names[i], 0.0), tie[i]))
    values = [info.get(names[i], 0.0) for i in ranked]
    start = tuple(range(k))
    heap = [(-math.fsum(values[j] for j in start), rng.random(), start)]
    reached = {start}
    while heap:
        _, _, ranks = heapq.heappop(heap)
        yield tuple(names[i] for i in sorted(ranked[j] for j in ranks))  # in dataset order
        for pos in range(k):
            nxt = ranks[pos] + 1
            if nxt < (ranks[pos + 1] if pos + 1 < k else m):
                child = ranks[:pos] + (nxt,) + ranks[pos + 1:]
                if child not in reached:
                    reached.add(child)
                    heapq.heappush(heap, (-math.fsum(values[j] for j in child), rng.random(), child))


def _adaptive_lazy(names: tuple[str, ...], max_size: int, info: dict[str, float],
                   rng: np.random.Generator) -> Iterator[tuple[str, ...]]:
    """`_adaptive_order`'s order produced one subset at a time: the full set and the singles, then
    one subset of each size in turn (largest first), each size's by decreasing mean informativeness."""
    head = _adaptive_head(names, max_size, info)
    yield from head
    taken = set(head)
    sizes = range(min(max_size, len(names) - 1), 1, -1)  # the full set of all modalities is in the head
    queues = {k: (s for s in _k_best_subsets(names, k, info, rng) if s not in taken) for k in sizes}
    while queues:  # round-robin over sizes keeps every size represented
        for k in list(queues):
            subset = next(queues[k], None)
            if subset is None:
                del queues[k]
            else:
                yield subset


def draw_rows(eligible: np.ndarray, sample_ratio: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap rows (with replacement) from ``eligible`` and the out-of-bag remainder."""
    size = max(1, int(round(sample_ratio * len(eligible))))
    rows = np.sort(rng.choice(eligible, size=size, replace=True))
    left = np.zeros(int(eligible.max()) + 1, dtype=bool)  # np.setdiff1d(eligible, rows), in linear time
    left[eligible] = True
    left[rows] = False
    return rows, np.flatnonzero(left).astype(eligible.dtype, copy=False)


def distinct_rows(rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows)`` for row indices (non-negative integers), through a mask of ``max(rows) + 1``
    flags: linear time. numpy 2.3+ finds unique values with a hash table, whose cost per value triples
    once a few hundred thousand distinct values overflow the CPU cache (0.4 to 0.8 s for a million
    bootstrap rows against 3 ms here), which made bagging and training superlinear in samples
    (``benchmarks/scaling.py``)."""
    rows = np.asarray(rows)
    if len(rows) == 0 or rows.dtype.kind not in "iu":  # nothing to mask, or not indices
        return np.unique(rows)
    seen = np.zeros(int(rows.max()) + 1, dtype=bool)
    seen[rows] = True
    return np.flatnonzero(seen).astype(rows.dtype, copy=False)


def generate_bags(dataset: MultimodalDataset, config: EnsembleConfig,
                  informativeness: dict[str, float] | None = None) -> list[Bag]:
    """Draw the bags for ``dataset``: reproducible for a given ``config.random_state``."""
    seq = np.random.SeedSequence(config.random_state)
    subset_rng = np.random.default_rng(seq.spawn(1)[0])
    subsets = choose_subsets(dataset.names, config, informativeness, subset_rng)
    bag_seeds = seq.spawn(len(subsets) + 1)[1:]
    bags = []
    for i, (subset, bag_seq) in enumerate(zip(subsets, bag_seeds, strict=True)):
        eligible = np.flatnonzero(np.any([dataset.masks[m] for m in subset], axis=0))
        if len(eligible) < 2:
            raise DataError(f"modality subset {subset} is present in {len(eligible)} samples; "
                            f"a bag needs at least 2 (drop the modality or give more data)")
        rng = np.random.default_rng(bag_seq)
        rows, oob = draw_rows(eligible, config.sample_ratio, rng)
        bags.append(Bag(i, subset, rows, oob, int(bag_seq.generate_state(1)[0])))
    return bags


def split_validation(bag: Bag, fraction: float, seed: int, strategy: str = "random",
                     targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the bag's *distinct* rows, with every bootstrap copy of them.

    Holding out distinct rows keeps a duplicated sample from sitting on both sides of the split.
    ``strategy`` picks which rows: ``"random"`` (seeded), ``"stratified"`` (seeded, the same share of
    each class of ``targets``; random when a class has a single row) or ``"time_series"`` (the latest
    rows, row order being time order, so no validation row precedes a training row).

    A fold bag (`Bag.fold` set) is not split: its held-out fold is its validation set, so the learner
    trains on every row of its training folds and is validated on the rows it is the out-of-fold
    predictor of.
    """
    if bag.fold is not None:
        return bag.rows, bag.oob_rows
    distinct = distinct_rows(bag.rows)
    n_val = int(round(fraction * len(distinct)))
    if fraction <= 0 or n_val < 1 or len(distinct) - n_val < 2:
        return bag.rows, np.empty(0, dtype=np.int64)
    if strategy == "time_series":
        val = distinct[len(distinct) - n_val:]
    elif strategy == "stratified" and targets is not None and _stratifiable(targets[distinct], n_val):
        from sklearn.model_selection import train_test_split

        _, val = train_test_split(distinct, test_size=n_val, stratify=targets[distinct], random_state=seed % 2**32)
        val = np.sort(val)
    else:
        rng = np.random.default_rng(seed)
        val = np.sort(rng.choice(distinct, n_val, replace=False))
    return bag.rows[~np.isin(bag.rows, val)], val


def _stratifiable(labels: np.ndarray, n_val: int) -> bool:
    """Class labels with at least two rows per class and room for every class on both sides."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return False
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return counts.min() >= 2 and len(counts) <= min(n_val, len(labels) - n_val)


__all__ = ["DROPOUT_STRATEGIES", "EAGER_SUBSETS_MAX", "Bag", "split_validation", "EnsembleConfig", "choose_subsets", "distinct_rows",
           "generate_bags", "modality_informativeness"]
