"""modalbag.data.bags: subset strategies, bootstrap rows, reproducibility and informativeness;
modalbag.data.bags.split_validation: a duplicated sample never sits on both sides of the split."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from modalbag.data.bags import (
    EAGER_SUBSETS_MAX,
    Bag,
    EnsembleConfig,
    _candidate_subsets,
    _count_subsets,
    _k_best_subsets,
    choose_subsets,
    generate_bags,
    modality_informativeness,
    split_validation,
)
from modalbag.data.dataset import MultimodalDataset, complete_rows
from modalbag.data.synthetic import SyntheticTask
from modalbag.errors import ConfigError, DataError

NAMES = ("a", "b", "c", "d")
M = len(NAMES)
ALL_SUBSETS = [s for k in range(1, M + 1) for s in itertools.combinations(NAMES, k)]  # 15
N = 300


def _arrays(seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, str]], np.ndarray]:
    task = SyntheticTask.create({"a": (8, "text"), "b": (6, "tabular"), "c": (5, "image"), "d": (4, "tabular")},
                                n_classes=3)
    data, labels = task.sample(N, seed)
    return {name: (array, task.maps[name].kind) for name, array in data.items()}, labels


@pytest.fixture(scope="module")
def dataset() -> MultimodalDataset:
    data, labels = _arrays()
    return MultimodalDataset.from_arrays(data, labels)


@pytest.fixture(scope="module")
def missing_a() -> tuple[MultimodalDataset, np.ndarray]:
    """'a' is missing (all-NaN) in 60 samples."""
    data, labels = _arrays()
    gone = np.random.default_rng(1).choice(N, 60, replace=False)
    a = data["a"][0].copy()
    a[gone] = np.nan
    data["a"] = (a, "text")
    return MultimodalDataset.from_arrays(data, labels), np.sort(gone)


def _bags(ds, **kw):
    return generate_bags(ds, EnsembleConfig(**kw))


def _subsets(bags):
    return [b.modalities for b in bags]


# --- adaptive ------------------------------------------------------------------------------------


def test_adaptive_full_set_first_then_every_singleton(dataset):
    subsets = _subsets(_bags(dataset, n_bags=M + 1, dropout_strategy="adaptive"))
    assert subsets[0] == NAMES
    assert sorted(subsets[1:M + 1]) == [(n,) for n in NAMES]


def test_adaptive_orders_singletons_by_informativeness(dataset):
    info = {"a": 0.1, "b": 0.7, "c": 0.0, "d": 0.4}
    bags = generate_bags(dataset, EnsembleConfig(n_bags=M + 1, dropout_strategy="adaptive"), info)
    assert _subsets(bags) == [NAMES, ("b",), ("d",), ("a",), ("c",)]


def test_adaptive_represents_every_size_early(dataset):
    # full set + singletons + one subset of each intermediate size
    subsets = _subsets(_bags(dataset, n_bags=2 * M - 1, dropout_strategy="adaptive"))
    assert {len(s) for s in subsets} == set(range(1, M + 1))
    assert len(set(subsets)) == len(subsets)


def test_adaptive_represents_every_size_with_enough_bags(dataset):
    subsets = _subsets(_bags(dataset, n_bags=len(ALL_SUBSETS), dropout_strategy="adaptive"))
    assert {len(s) for s in subsets} == set(range(1, M + 1))
    assert sorted(subsets) == sorted(ALL_SUBSETS)


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_no_subset_repeats_before_every_candidate_is_used(dataset, strategy):
    n_bags = 2 * len(ALL_SUBSETS) + 3
    subsets = _subsets(_bags(dataset, n_bags=n_bags, dropout_strategy=strategy, random_state=4))
    assert len(subsets) == n_bags
    first = subsets[:len(ALL_SUBSETS)]
    assert len(set(first)) == len(first)
    assert set(first) == set(ALL_SUBSETS)
    # repeats cycle through the same preference order, each with its own bootstrap
    assert subsets[len(ALL_SUBSETS):2 * len(ALL_SUBSETS)] == first
    assert subsets[2 * len(ALL_SUBSETS):] == first[:3]


def test_repeated_subsets_get_fresh_bootstraps(dataset):
    bags = _bags(dataset, n_bags=len(ALL_SUBSETS) + 1, dropout_strategy="adaptive")
    assert bags[0].modalities == bags[-1].modalities
    assert not np.array_equal(bags[0].rows, bags[-1].rows)
    assert bags[0].seed != bags[-1].seed


@pytest.mark.parametrize("n_bags", [3, 7, 12])
def test_uniform_has_no_duplicates_before_exhaustion(dataset, n_bags):
    for seed in range(5):
        subsets = _subsets(_bags(dataset, n_bags=n_bags, dropout_strategy="uniform", random_state=seed))
        assert len(subsets) == n_bags
        assert len(set(subsets)) == n_bags, subsets
        assert all(s and set(s) <= set(NAMES) for s in subsets)
        assert all(list(s) == sorted(s) for s in subsets)  # modalities in dataset order


def test_uniform_with_tiny_keep_probability_terminates_and_covers(dataset):
    subsets = _subsets(_bags(dataset, n_bags=len(ALL_SUBSETS), dropout_strategy="uniform",
                             modality_keep_prob=0.01))
    assert sorted(subsets) == sorted(ALL_SUBSETS)


def test_uniform_keep_probability_shapes_subset_sizes(dataset):
    def mean_size(p):
        sizes = [len(s) for seed in range(10)
                 for s in _subsets(_bags(dataset, n_bags=3, dropout_strategy="uniform",
                                         modality_keep_prob=p, random_state=seed))]
        return np.mean(sizes)

    assert mean_size(0.9) > mean_size(0.2) + 1.0


def test_exhaustive_yields_every_subset_smallest_first(dataset):
    subsets = _subsets(_bags(dataset, n_bags=100, dropout_strategy="exhaustive", allow_repeats=False))
    assert len(subsets) == 2 ** M - 1
    assert len(set(subsets)) == len(subsets)
    assert set(subsets) == set(ALL_SUBSETS)
    sizes = [len(s) for s in subsets]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
@pytest.mark.parametrize(("max_modalities", "n_distinct"), [(None, 15), (2, 10), (1, 4)])
def test_no_repeats_caps_bag_count_at_distinct_subsets(dataset, strategy, max_modalities, n_distinct):
    bags = _bags(dataset, n_bags=50, dropout_strategy=strategy, allow_repeats=False,
                 max_modalities=max_modalities)
    subsets = _subsets(bags)
    assert len(bags) == n_distinct
    assert len(set(subsets)) == n_distinct
    assert [b.id for b in bags] == list(range(n_distinct))


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_max_modalities_caps_subset_size(dataset, strategy):
    subsets = _subsets(_bags(dataset, n_bags=30, dropout_strategy=strategy, max_modalities=2))
    assert max(len(s) for s in subsets) == 2
    expected = [s for s in ALL_SUBSETS if len(s) <= 2]
    assert set(subsets[:len(expected)]) == set(expected)


def test_adaptive_max_modalities_full_set_is_most_informative(dataset):
    info = {"a": 0.8, "b": 0.1, "c": 0.9, "d": 0.0}
    bags = generate_bags(dataset, EnsembleConfig(n_bags=5, dropout_strategy="adaptive", max_modalities=2), info)
    assert bags[0].modalities == ("a", "c")
    assert [b.modalities for b in bags[1:]] == [("c",), ("a",), ("b",), ("d",)]


def test_negative_max_modalities_is_rejected(dataset):
    with pytest.raises(ConfigError, match=r"max_modalities must be at least 1"):
        _bags(dataset, max_modalities=-1)


def test_zero_max_modalities_is_rejected(dataset):
    with pytest.raises(ConfigError, match=r"max_modalities must be at least 1"):
        _bags(dataset, max_modalities=0)


# --- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, 0.7, 0.33])
def test_rows_are_a_bootstrap_and_oob_the_rest(dataset, ratio):
    bags = _bags(dataset, n_bags=6, sample_ratio=ratio)
    eligible = np.arange(N)
    for bag in bags:
        assert len(bag.rows) == round(ratio * N)
        assert len(np.unique(bag.rows)) < len(bag.rows)  # drawn with replacement
        assert np.all(np.diff(bag.rows) >= 0)
        assert np.isin(bag.rows, eligible).all()
        np.testing.assert_array_equal(bag.oob_rows, np.setdiff1d(eligible, bag.rows))
        assert not np.isin(bag.oob_rows, bag.rows).any()
        assert len(bag.oob_rows) > 0
    assert len({tuple(b.rows) for b in bags}) == len(bags)  # each bag its own bootstrap


def test_subset_bags_only_draw_rows_that_have_the_modality(missing_a):
    ds, gone = missing_a
    present = np.setdiff1d(np.arange(N), gone)
    bags = _bags(ds, n_bags=len(ALL_SUBSETS), sample_ratio=0.8, random_state=2)
    only_a = [b for b in bags if b.modalities == ("a",)]
    assert len(only_a) == 1
    bag = only_a[0]
    assert not np.isin(bag.rows, gone).any()
    assert not np.isin(bag.oob_rows, gone).any()
    assert len(bag.rows) == round(0.8 * len(present))
    np.testing.assert_array_equal(np.union1d(bag.rows, bag.oob_rows), present)
    assert ds.masks["a"][bag.rows].all()
    # a subset with another modality is eligible wherever any of its modalities is present
    with_b = next(b for b in bags if b.modalities == ("a", "b"))
    np.testing.assert_array_equal(np.union1d(with_b.rows, with_b.oob_rows), np.arange(N))
    assert np.isin(with_b.rows, gone).any()


def test_subset_present_in_fewer_than_two_samples_raises():
    data, labels = _arrays()
    d = np.full_like(data["d"][0], np.nan)
    d[7] = 1.0
    ds = MultimodalDataset.from_arrays({**data, "d": (d, "tabular")}, labels)
    with pytest.raises(DataError, match=re.escape("modality subset ('d',) is present in 1 samples")):
        _bags(ds, n_bags=M + 1)
    # two samples are enough
    d[8] = 2.0
    ds = MultimodalDataset.from_arrays({**data, "d": (d, "tabular")}, labels)
    bag = next(b for b in _bags(ds, n_bags=M + 1) if b.modalities == ("d",))
    assert set(bag.rows) | set(bag.oob_rows) == {7, 8}


# --- reproducibility -----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_same_random_state_same_bags(dataset, strategy):
    one = _bags(dataset, n_bags=20, dropout_strategy=strategy, sample_ratio=0.8, random_state=11)
    two = _bags(dataset, n_bags=20, dropout_strategy=strategy, sample_ratio=0.8, random_state=11)
    assert _subsets(one) == _subsets(two)
    assert [b.seed for b in one] == [b.seed for b in two]
    for x, y in zip(one, two, strict=True):
        np.testing.assert_array_equal(x.rows, y.rows)
        np.testing.assert_array_equal(x.oob_rows, y.oob_rows)


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_different_random_state_different_bags(dataset, strategy):
    one = _bags(dataset, n_bags=8, dropout_strategy=strategy, random_state=1)
    two = _bags(dataset, n_bags=8, dropout_strategy=strategy, random_state=2)
    assert all(not np.array_equal(x.rows, y.rows) for x, y in zip(one, two, strict=True))
    assert not {b.seed for b in one} & {b.seed for b in two}
    assert len({b.seed for b in one}) == len(one)


def test_uniform_order_depends_on_random_state(dataset):
    orders = {tuple(_subsets(_bags(dataset, n_bags=6, dropout_strategy="uniform", random_state=s)))
              for s in range(6)}
    assert len(orders) > 1


def test_choose_subsets_directly():
    rng = np.random.default_rng(0)
    out = choose_subsets(list(NAMES), EnsembleConfig(n_bags=4, dropout_strategy="exhaustive"), None, rng)
    assert out == [("a",), ("b",), ("c",), ("d",)]


# --- many modalities: the eager order kept, the lazy one past EAGER_SUBSETS_MAX -------------------


def _frozen_choose_subsets(names, config, informativeness, rng):
    """choose_subsets as it was before the lazy path (commit 5c87ae8), frozen: the reference the eager
    path must keep matching, draw for draw."""
    def candidate_subsets(names, max_size):
        return [s for k in range(1, max_size + 1) for s in itertools.combinations(names, k)]

    def uniform_order(names, candidates, keep, rng):
        allowed = set(candidates)
        order = []
        for _ in range(200 * len(candidates)):
            if len(order) == len(candidates):
                break
            subset = tuple(n for n in names if rng.random() < keep)
            if subset in allowed and subset not in order:
                order.append(subset)
        order += [c for c in candidates if c not in order]
        return order

    def adaptive_order(names, candidates, max_size, info, rng):
        full = tuple(names[:max_size]) if max_size < len(names) else tuple(names)
        if max_size < len(names):
            best = sorted(names, key=lambda n: -info.get(n, 0.0))[:max_size]
            full = tuple(n for n in names if n in best)
        singles = sorted(((n,) for n in names), key=lambda s: -info.get(s[0], 0.0))
        order = [full] + [s for s in singles if s != full]
        rest = [c for c in candidates if c not in order]
        by_size = {}
        for c in rest:
            by_size.setdefault(len(c), []).append(c)
        for size in by_size:  # noqa: PLC0206 (verbatim)
            jitter = {c: rng.random() * 1e-6 for c in by_size[size]}
            by_size[size].sort(key=lambda c: -(np.mean([info.get(n, 0.0) for n in c]) + jitter[c]))
        sizes = sorted(by_size, reverse=True)
        while any(by_size.values()):
            for size in sizes:
                if by_size[size]:
                    order.append(by_size[size].pop(0))
        return order

    max_size = len(names) if config.max_modalities is None else min(config.max_modalities, len(names))
    candidates = candidate_subsets(names, max_size)
    if config.dropout_strategy == "exhaustive":
        order = candidates
    elif config.dropout_strategy == "uniform":
        order = uniform_order(names, candidates, config.modality_keep_prob, rng)
    else:
        order = adaptive_order(names, candidates, max_size, informativeness or {}, rng)
    if config.n_bags <= len(order) or not config.allow_repeats:
        return order[: config.n_bags]
    repeated = list(order)
    while len(repeated) < config.n_bags:
        repeated.extend(order[: config.n_bags - len(repeated)])
    return repeated


def _names(m):
    return tuple(f"m{i:02d}" for i in range(m))


def _info(names, seed, ties=False):
    values = np.random.default_rng(seed).random(len(names))
    if ties:  # three levels, many modalities uninformative (0.0), as clipped CV scores often are
        values = np.round(values * 2) / 4
    return {n: float(v) for n, v in zip(names, values, strict=True)}


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
@pytest.mark.parametrize("m", [1, 3, 5, 8])
def test_small_cases_draw_the_same_subsets_as_before(strategy, m):
    names = _names(m)
    for seed in range(4):
        for config in (EnsembleConfig(n_bags=20, dropout_strategy=strategy),
                       EnsembleConfig(n_bags=3 * 2 ** m, dropout_strategy=strategy, modality_keep_prob=0.3),
                       EnsembleConfig(n_bags=40, dropout_strategy=strategy, max_modalities=2),
                       EnsembleConfig(n_bags=2 ** m + 5, dropout_strategy=strategy, allow_repeats=False)):
            infos = (None, _info(names, seed), _info(names, seed, ties=True)) if strategy == "adaptive" else (None,)
            for info in infos:
                new_rng, old_rng = np.random.default_rng(seed), np.random.default_rng(seed)
                assert choose_subsets(names, config, info, new_rng) == _frozen_choose_subsets(names, config, info,
                                                                                             old_rng)
                assert new_rng.random() == old_rng.random()  # the same draws consumed


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_twelve_modalities_still_draw_the_same_subsets(strategy):
    names = _names(12)  # 4,095 candidates: the largest common case on the eager path
    assert _count_subsets(12, 12) <= EAGER_SUBSETS_MAX < _count_subsets(13, 13)
    config = EnsembleConfig(n_bags=30, dropout_strategy=strategy)
    info = _info(names, 5)
    assert (choose_subsets(names, config, info, np.random.default_rng(7))
            == _frozen_choose_subsets(names, config, info, np.random.default_rng(7)))


def _mean(subset, info):
    return float(np.mean([info[n] for n in subset]))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("max_modalities", [None, 9])
def test_lazy_adaptive_keeps_the_preference_order(ties, max_modalities):
    names = _names(14)  # 16,383 candidates (9,893 with at most 9): the lazy path
    info = _info(names, 3, ties=ties)
    config = EnsembleConfig(n_bags=300, dropout_strategy="adaptive", max_modalities=max_modalities)
    got = choose_subsets(names, config, info, np.random.default_rng(0))
    old = _frozen_choose_subsets(names, config, info, np.random.default_rng(0))
    assert len(got) == 300 and len(set(got)) == 300
    assert all(list(s) == sorted(s) for s in got)  # modalities in dataset order
    head = 1 + len(names)
    assert got[:head] == old[:head]  # the full set (or the best 9), then singles by informativeness
    # then one subset per size in turn, largest first: the same sizes as before
    assert [len(s) for s in got] == [len(s) for s in old]
    # within a size, the best means first: the same means as the eager order (ties may differ)
    for k in range(2, 14):
        lazy = [_mean(s, info) for s in got[head:] if len(s) == k]
        eager = [_mean(s, info) for s in old[head:] if len(s) == k]
        assert lazy == sorted(lazy, reverse=True)
        np.testing.assert_allclose(lazy, eager, atol=2e-6)  # the eager order's jitter is below 1e-6


def test_k_best_subsets_yield_every_subset_once_best_first():
    names = _names(10)
    for ties in (False, True):
        info = _info(names, 1, ties=ties)
        for k in (1, 3, 9, 10):
            found = list(_k_best_subsets(names, k, info, np.random.default_rng(0)))
            assert sorted(found) == sorted(itertools.combinations(names, k))
            totals = [sum(info[n] for n in s) for s in found]
            assert all(a >= b - 1e-12 for a, b in itertools.pairwise(totals))


def test_lazy_adaptive_breaks_ties_by_seed():
    names = _names(20)
    config = EnsembleConfig(n_bags=60, dropout_strategy="adaptive")
    one = choose_subsets(names, config, None, np.random.default_rng(1))
    assert one == choose_subsets(names, config, None, np.random.default_rng(1))
    assert one != choose_subsets(names, config, None, np.random.default_rng(2))


@pytest.mark.parametrize("keep", [0.5, 0.02, 0.97])
def test_lazy_uniform_draws_distinct_valid_subsets(keep):
    names = _names(16)
    for max_modalities in (None, 5):  # 6,884 subsets of at most 5: still the lazy path
        config = EnsembleConfig(n_bags=50, dropout_strategy="uniform", modality_keep_prob=keep,
                                max_modalities=max_modalities)
        got = choose_subsets(names, config, None, np.random.default_rng(0))
        assert len(got) == 50 and len(set(got)) == 50
        assert all(s and list(s) == sorted(s) and set(s) <= set(names) for s in got)
        assert all(len(s) <= (max_modalities or 16) for s in got)
        assert got == choose_subsets(names, config, None, np.random.default_rng(0))
    sizes = np.mean([len(s) for s in choose_subsets(names, EnsembleConfig(n_bags=50, dropout_strategy="uniform",
                                                                        modality_keep_prob=keep), None,
                                                    np.random.default_rng(0))])
    assert abs(sizes - max(1.0, keep * 16)) < 2.5  # each modality kept with probability keep


def test_lazy_exhaustive_is_the_eager_order():
    names = _names(13)
    config = EnsembleConfig(n_bags=200, dropout_strategy="exhaustive")
    assert choose_subsets(names, config, None, None) == _frozen_choose_subsets(names, config, None, None)


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_lazy_path_cycles_or_stops_after_every_subset(strategy):
    names = _names(13)  # 8,191 subsets
    total = 2 ** 13 - 1
    got = choose_subsets(names, EnsembleConfig(n_bags=total + 9, dropout_strategy=strategy), None,
                         np.random.default_rng(0))
    assert len(got) == total + 9
    assert set(got[:total]) == set(_candidate_subsets(names, 13)) and len(set(got[:total])) == total
    assert got[total:] == got[:9]  # repeats cycle in preference order
    capped = choose_subsets(names, EnsembleConfig(n_bags=total + 9, dropout_strategy=strategy,
                                                  allow_repeats=False), None, np.random.default_rng(0))
    assert capped == got[:total]


@pytest.mark.parametrize("strategy", ["adaptive", "uniform", "exhaustive"])
def test_thirty_modalities_return(strategy):
    names = _names(30)  # 2^30 - 1 subsets: the eager order could not even be built
    info = _info(names, 0)
    for n_bags in (20, 200):
        got = choose_subsets(names, EnsembleConfig(n_bags=n_bags, dropout_strategy=strategy), info,
                             np.random.default_rng(0))
        assert len(got) == n_bags and len(set(got)) == n_bags
    if strategy == "adaptive":
        assert got[0] == names
        assert got[1:31] == sorted(((n,) for n in names), key=lambda s: -info[s[0]])
        assert [len(s) for s in got[31:34]] == [29, 28, 27]


# --- informativeness -----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):  # tiny ridge fits: threads only add contention
        yield


def _hand_made(labels: np.ndarray, seed: int = 0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    n = len(labels)
    return MultimodalDataset.from_arrays({
        "noise": rng.normal(size=(n, 3)),
        "signal": labels.astype(float) + 0.1 * rng.normal(size=n),
    }, labels)


def test_informativeness_ranks_noise_below_signal_binary():
    y = np.random.default_rng(3).integers(0, 2, 240)
    scores = modality_informativeness(_hand_made(y), y, "classification")
    assert set(scores) == {"noise", "signal"}
    assert scores["signal"] > 0.9
    assert scores["noise"] < 0.15
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_informativeness_ranks_noise_below_signal_three_classes():
    y = np.random.default_rng(4).integers(0, 3, 300)
    scores = modality_informativeness(_hand_made(y), y, "classification")
    assert scores["signal"] > scores["noise"] + 0.3


def test_informativeness_regression():
    y = np.random.default_rng(5).normal(size=200).astype(np.float32)
    scores = modality_informativeness(_hand_made(y), y, "regression")
    assert scores["signal"] > 0.9
    assert scores["noise"] < 0.15


def test_informativeness_uses_only_present_rows():
    y = np.random.default_rng(6).integers(0, 2, 240)
    ds = _hand_made(y)
    signal = ds.arrays["signal"].copy()
    # where 'signal' is missing it is stored as zeros: scoring those rows would look like label 0
    missing = np.flatnonzero(y == 1)[:60]
    ds.masks["signal"] = ds.masks["signal"].copy()
    ds.masks["signal"][missing] = False
    ds.arrays["signal"] = signal
    ds.arrays["signal"][missing] = 0.0
    scores = modality_informativeness(ds, y, "classification")
    assert scores["signal"] > 0.9


# --- split_validation ----------------------------------------------------------------------------


def _bag(rows: np.ndarray) -> Bag:
    return Bag(0, ("a",), np.sort(rows), np.setdiff1d(np.arange(rows.max() + 1), rows), seed=5)


@pytest.fixture
def bootstrap_bag() -> Bag:
    return _bag(np.random.default_rng(0).choice(200, 200, replace=True))


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_split_validation_holds_out_distinct_rows_with_every_copy(bootstrap_bag, fraction):
    train, val = split_validation(bootstrap_bag, fraction, seed=3)
    distinct = np.unique(bootstrap_bag.rows)
    assert len(val) == len(np.unique(val))
    assert len(val) == round(fraction * len(distinct))
    assert np.isin(val, distinct).all()
    assert not np.isin(train, val).any()  # no copy of a validation sample is trained on
    np.testing.assert_array_equal(np.union1d(train, val), distinct)
    # every copy of a training sample stays in training
    kept = bootstrap_bag.rows[~np.isin(bootstrap_bag.rows, val)]
    np.testing.assert_array_equal(np.sort(train), kept)


def test_split_validation_is_seeded(bootstrap_bag):
    a = split_validation(bootstrap_bag, 0.2, seed=1)
    b = split_validation(bootstrap_bag, 0.2, seed=1)
    c = split_validation(bootstrap_bag, 0.2, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_split_validation_fraction_zero_keeps_everything(bootstrap_bag):
    train, val = split_validation(bootstrap_bag, 0.0, seed=3)
    assert len(val) == 0
    np.testing.assert_array_equal(train, bootstrap_bag.rows)


def test_split_validation_too_few_rows_keeps_everything():
    bag = _bag(np.array([0, 0, 1, 1, 1]))
    train, val = split_validation(bag, 0.5, seed=0)
    assert len(val) == 0
    np.testing.assert_array_equal(train, bag.rows)


def test_split_validation_on_generated_bags(dataset):
    for bag in _bags(dataset, n_bags=4):
        train, val = split_validation(bag, 0.2, bag.seed)
        assert not np.isin(train, val).any()
        assert not np.isin(val, bag.oob_rows).any()
        assert len(val) == round(0.2 * len(np.unique(bag.rows)))


def test_complete_rows_keeps_rows_with_every_modality(missing_a):
    ds, gone = missing_a
    rows = np.arange(N)
    kept = complete_rows(rows, ds.masks, ["a", "b"])
    np.testing.assert_array_equal(kept, np.setdiff1d(rows, gone))
    np.testing.assert_array_equal(complete_rows(rows, ds.masks, ["b"]), rows)
    assert len(complete_rows(np.empty(0, dtype=np.int64), ds.masks, ["a"])) == 0
