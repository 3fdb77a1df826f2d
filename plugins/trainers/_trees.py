"""Decision trees as flat numpy arrays: how the ``hist_gradient_boosting`` and ``random_forest``
trainers save their trees without pickle and predict with them.

Not a plugin (no entry point). Every tree of a model lives in one set of node arrays: the split
feature, the threshold, the side a NaN takes, the two children and whether the node is a leaf, with
the children as indexes into the same arrays and ``roots`` the first node of each tree. A row goes
left at a split when ``x[feature] <= threshold`` (NaN: the learned side), the rule both scikit-learn
tree families use, so the arrays reproduce scikit-learn's predictions exactly; each trainer checks
that on training rows after every fit.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import numpy as np

#: Query rows x trees per block of the walk (bounds the walk's temporary arrays).
CHUNK_VALUES = 2_000_000


@attrs.frozen
class Nodes:
    """The node arrays of a set of trees (see the module docstring)."""

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    roots: np.ndarray

    def leaves(self, x: np.ndarray, per_block: int = 1) -> Iterator[tuple[slice, np.ndarray]]:
        """For blocks of rows of ``x``: the rows' slice and the leaf each row reaches in each tree
        (rows, trees). ``per_block`` scales the block down for callers that gather wide leaf values."""
        x = np.asarray(x, dtype=np.float64)
        n_trees = len(self.roots)
        chunk = max(1, CHUNK_VALUES // max(1, n_trees * per_block))
        for start in range(0, len(x), chunk):
            rows = x[start:start + chunk]
            node = np.tile(self.roots, (len(rows), 1))
            index = np.arange(len(rows))[:, None]
            active = ~self.is_leaf[node]
            while active.any():
                values = rows[index, self.feature[node]]
                go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
                node = np.where(active, np.where(go_left, self.left[node], self.right[node]), node)
                active = ~self.is_leaf[node]
            yield slice(start, start + len(rows)), node

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in attrs.fields(type(self))}


def concatenate(trees: list[dict[str, np.ndarray]]) -> Nodes:
    """One `Nodes` from per-tree node arrays whose children index within their own tree. A leaf's
    feature and children are made harmless (feature 0, itself as both children): the walk reads
    them for rows that already reached it."""
    if not trees:
        no_int, no_bool = np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
        return Nodes(no_int, np.empty(0), no_bool, no_int, no_int, no_bool, no_int)
    sizes = np.array([len(t["feature"]) for t in trees], dtype=np.int64)
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    offset = np.repeat(roots, sizes)

    def joined(key: str, dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees])

    is_leaf = joined("is_leaf", bool)
    own = np.arange(len(is_leaf), dtype=np.int64)
    return Nodes(feature=np.where(is_leaf, 0, joined("feature", np.int64)),
                 threshold=joined("threshold", np.float64), missing_left=joined("missing_left", bool),
                 left=np.where(is_leaf, own, joined("left", np.int64) + offset),
                 right=np.where(is_leaf, own, joined("right", np.int64) + offset),
                 is_leaf=is_leaf, roots=roots)
