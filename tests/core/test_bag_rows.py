"""modalbag.data.bags row sets in linear time: `distinct_rows` and `draw_rows`' out-of-bag rows are
exactly what ``np.unique`` and ``np.setdiff1d`` give, so bags and validation splits are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from modalbag.data.bags import Bag, distinct_rows, draw_rows, split_validation


def test_distinct_rows_by_hand():
    np.testing.assert_array_equal(distinct_rows(np.array([7, 2, 7, 0, 2])), [0, 2, 7])
    np.testing.assert_array_equal(distinct_rows(np.array([5])), [5])
    assert distinct_rows(np.array([3, 1], dtype=np.int32)).dtype == np.int32
    empty = distinct_rows(np.empty(0, dtype=np.int64))
    assert empty.shape == (0,) and empty.dtype == np.int64
    np.testing.assert_array_equal(distinct_rows(np.array([2.0, 1.0, 2.0])), [1.0, 2.0])  # not indices: np.unique


def test_out_of_bag_rows_are_the_eligible_rows_never_drawn():
    # eligible rows with gaps: a rows=1.0 bootstrap of 4 rows from [2, 5, 7, 9]
    eligible = np.array([2, 5, 7, 9])
    rows, oob = draw_rows(eligible, 1.0, np.random.default_rng(0))
    assert len(rows) == 4 and set(rows) <= set(eligible)
    np.testing.assert_array_equal(oob, sorted(set(eligible) - set(rows)))
    assert oob.dtype == eligible.dtype


@pytest.mark.parametrize(("n", "ratio", "seed"), [(10, 1.0, 0), (1000, 1.0, 1), (1000, 0.3, 2), (50_000, 0.8, 3)])
def test_same_rows_as_the_set_functions(n, ratio, seed):
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(rng.random(n) < 0.7)  # rows that have the bag's modalities
    rows, oob = draw_rows(eligible, ratio, np.random.default_rng(seed))
    expected_rows = np.sort(np.random.default_rng(seed).choice(eligible, size=max(1, round(ratio * len(eligible))),
                                                               replace=True))
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(oob, np.setdiff1d(eligible, rows))
    np.testing.assert_array_equal(distinct_rows(rows), np.unique(rows))
    bag = Bag(0, ("a",), rows, oob, seed)
    train, val = split_validation(bag, 0.2, seed)
    distinct = np.unique(rows)
    n_val = round(0.2 * len(distinct))
    np.testing.assert_array_equal(val, np.sort(np.random.default_rng(seed).choice(distinct, n_val, replace=False)))
    np.testing.assert_array_equal(train, rows[~np.isin(rows, val)])
