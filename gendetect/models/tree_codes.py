"""The label-aware head's trees scored column-wise, without a per-row walk.

A tree of the head has at most 7 internal nodes (8 leaves). The outcome of
every internal node's test, one bit each, makes a per-row code, and which
leaf a row reaches is a function of that code alone: a table per tree maps
each code to the leaf's value (for scores) and to the leaf's path
attributions per column (for explanations, Saabas). The tests are computed
column by column on whole blocks of rows, each distinct (column, threshold)
test once, with numpy's vectorised comparisons; no loop runs per row or per
tree node. Measured on a 127-tree head (gendetect/models/README.md), this is
faster than scikit-learn's own compiled predictor (which walks each tree row
by row, with a mispredicted branch at most nodes) and than the depth-stepped
numpy traversal it replaces (labels.reference_decision, kept as the
reference the tests pin it to).

Missing values: a node sends NaN to the side its `missing_left` says. Each
test is written so that NaN compares False and lands on that side with no
extra pass: `x <= t` (bit set = left) where NaN goes right, `x > t` (bit set
= right) where NaN goes left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

# Codes of up to 8 bits, one byte per (tree, row), tables of at most 256
# entries per tree; trees with more internal nodes (never with the head's
# 8 leaves) are scored by the reference traversal.
MAX_BITS = 8
# Up to this many rows, codes come from a handful of whole-matrix numpy calls
# (`codes_of_rows`) instead of one call per group of tests: the online path's
# one record would otherwise pay ~250 calls' fixed cost.
SMALL_ROWS = 256

Column = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class CodedTrees:
    """Tables built once from a BoostedHead's node arrays (see `build`)."""

    n_columns: int
    baseline: float
    # Distinct tests, grouped by (column, direction): group g covers tests
    # group_bounds[g]:group_bounds[g + 1], all on column group_column[g],
    # `x > t` when group_greater[g] else `x <= t`.
    thresholds: np.ndarray
    group_column: np.ndarray
    group_greater: np.ndarray
    group_bounds: np.ndarray
    # The same per test (for `codes_of_rows`).
    test_column: np.ndarray
    test_greater: np.ndarray
    # tests[i, t]: the test of tree t's i-th internal node (len(thresholds)
    # for a tree with fewer: a row of zeros).
    tests: np.ndarray
    # values[t, code]: the value of the leaf tree t reaches with `code`.
    values: np.ndarray
    # Attribution tables, one per (tree, column the tree splits on), sorted
    # by column: pair_table[p, code] is the summed value change along the
    # path to that leaf at splits on column pair_column[p].
    pair_tree: np.ndarray
    pair_column: np.ndarray
    pair_table: np.ndarray

    @property
    def bits(self) -> int:
        return int(self.tests.shape[0])

    @property
    def n_trees(self) -> int:
        return int(self.values.shape[0])

    @property
    def used_columns(self) -> np.ndarray:
        """The evidence columns any tree tests, ascending."""
        return np.unique(self.group_column)

    @classmethod
    def build(
        cls, *, feature: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray,
        left: np.ndarray, right: np.ndarray, leaf: np.ndarray, value: np.ndarray,
        roots: np.ndarray, baseline: float, n_columns: int,
    ) -> CodedTrees | None:
        """Tables for trees stored as one node table (BoostedHead's arrays);
        None when a tree has more than MAX_BITS internal nodes."""
        ends = np.append(roots[1:], len(feature))
        internal = [np.flatnonzero(~leaf[s:e]) + s for s, e in zip(roots, ends, strict=True)]
        bits = max((len(nodes) for nodes in internal), default=0)
        if bits > MAX_BITS:
            return None
        greater = missing_left.astype(bool)
        # Distinct tests: one comparison per (column, direction, threshold).
        all_nodes = np.concatenate(internal) if internal else np.zeros(0, dtype=np.int64)
        keys = np.rec.fromarrays(
            [feature[all_nodes], greater[all_nodes], threshold[all_nodes]], names="f,g,t"
        )
        unique, inverse = np.unique(keys, return_inverse=True)
        test_of = np.zeros(len(feature), dtype=np.intp)
        test_of[all_nodes] = inverse.ravel()
        n_tests = len(unique)
        f, g = unique["f"], unique["g"]
        starts = np.flatnonzero(np.r_[True, (f[1:] != f[:-1]) | (g[1:] != g[:-1])][:n_tests])
        tests = np.full((bits, len(roots)), n_tests, dtype=np.intp)
        for t, nodes in enumerate(internal):
            tests[: len(nodes), t] = test_of[nodes]
        leaf_at = _leaf_per_code(internal, roots, left, right, leaf, greater, bits)
        pair_tree, pair_column, pair_table = _attribution_tables(
            internal, roots, left, right, leaf, greater, feature, value, bits
        )
        return cls(
            n_columns=n_columns,
            baseline=baseline,
            thresholds=np.ascontiguousarray(unique["t"], dtype=np.float64),
            group_column=unique["f"][starts].astype(np.intp),
            group_greater=unique["g"][starts].astype(bool),
            group_bounds=np.append(starts, n_tests).astype(np.intp),
            test_column=unique["f"].astype(np.intp),
            test_greater=unique["g"].astype(bool),
            tests=tests,
            values=value[leaf_at],
            pair_tree=pair_tree,
            pair_column=pair_column,
            pair_table=pair_table,
        )

    def before_log1p(self, columns: np.ndarray) -> CodedTrees:
        """The same trees for an input whose `columns` are given before
        log1p, and non-negative or NaN: each of their thresholds t becomes
        the largest value T with log1p(T) <= t (log1p_bounds), so that
        `v <= T` is `log1p(v) <= t` and `v > T` is `log1p(v) > t`. The same
        codes without a logarithm per value."""
        thresholds = self.thresholds.copy()
        on = np.isin(self.test_column, columns)
        thresholds[on] = log1p_bounds(thresholds[on])
        return replace(self, thresholds=thresholds)

    # ------------------------------------------------------------ scoring
    def codes(self, column: Column, n_rows: int) -> np.ndarray:
        """(trees, rows) uint8 codes; `column(j)` gives evidence column j
        (n_rows,)."""
        n_tests, n_trees = len(self.thresholds), self.n_trees
        outcome = np.empty((n_tests + 1, n_rows), dtype=bool)
        outcome[n_tests] = False
        bounds = self.group_bounds
        for g, j in enumerate(self.group_column.tolist()):
            lo, hi = int(bounds[g]), int(bounds[g + 1])
            compare = np.greater if self.group_greater[g] else np.less_equal
            compare(column(j)[None, :], self.thresholds[lo:hi, None], out=outcome[lo:hi])
        bit = outcome.view(np.uint8)
        codes = np.zeros((n_trees, n_rows), dtype=np.uint8)
        # A bit's byte is 0 or 1: shifting 8 bytes at once as one uint64
        # never carries into the next byte, and numpy's uint8 shift is ~20x
        # slower than its uint64 one.
        size = n_trees * n_rows
        buffer = np.empty(-(-size // 8) * 8, dtype=np.uint8)
        part = buffer[:size].reshape(n_trees, n_rows)
        words = buffer.view(np.uint64)
        for i in range(self.bits):
            np.take(bit, self.tests[i], axis=0, out=part, mode="clip")
            if i:
                np.left_shift(words, i, out=words)
            np.bitwise_or(codes, part, out=codes)
        return codes

    def codes_of_rows(self, evidence: np.ndarray) -> np.ndarray:
        """The same codes as `codes` for a few rows, from their (rows,
        columns) evidence matrix in a handful of numpy calls."""
        n_tests, n = len(self.thresholds), len(evidence)
        values = np.asarray(evidence, dtype=np.float64)[:, self.test_column].T
        thresholds = self.thresholds[:, None]
        outcome = np.zeros((n_tests + 1, n), dtype=np.uint8)
        outcome[:n_tests] = np.where(
            self.test_greater[:, None], values > thresholds, values <= thresholds
        )
        shifted = outcome[self.tests] << np.arange(self.bits, dtype=np.uint8)[:, None, None]
        if not self.bits:
            return np.zeros((self.n_trees, n), dtype=np.uint8)
        return np.bitwise_or.reduce(shifted, axis=0)

    def logits(self, codes: np.ndarray) -> np.ndarray:
        """baseline + each tree's leaf value, added tree after tree."""
        if codes.shape[1] <= SMALL_ROWS:
            width = self.values.shape[1]
            index = codes + (np.arange(self.n_trees) * width)[:, None]
            leaf_values = self.values.ravel().take(index, mode="clip")
            return self.baseline + np.add.reduce(leaf_values, axis=0)
        # One row's worth of values at a time (cache-resident), added in tree
        # order: the same sums as the reduction above.
        total, leaf_values = np.zeros(codes.shape[1]), np.empty(codes.shape[1])
        for t in range(self.n_trees):
            np.take(self.values[t], codes[t], out=leaf_values, mode="clip")
            total += leaf_values
        return self.baseline + total

    def attributions(self, codes: np.ndarray) -> np.ndarray:
        """(rows, columns) path attributions (Saabas) of the coded rows:
        per column, its (tree, column) tables' entries added in tree order."""
        n = codes.shape[1]
        if not len(self.pair_tree) or not n:
            return np.zeros((n, self.n_columns))
        if n <= SMALL_ROWS:
            return self._attributions_of_rows(codes)
        out = np.zeros((self.n_columns, n))
        entry = np.empty(n)
        for tree, column, table in zip(
            self.pair_tree.tolist(), self.pair_column.tolist(), self.pair_table, strict=True
        ):
            np.take(table, codes[tree], out=entry, mode="clip")
            out[column] += entry
        return out.T

    def _attributions_of_rows(self, codes: np.ndarray) -> np.ndarray:
        """The same for a few rows, in a handful of whole-array calls."""
        width = self.pair_table.shape[1]
        index = codes[self.pair_tree].astype(np.intp)
        index += (np.arange(len(self.pair_tree)) * width)[:, None]
        starts = np.flatnonzero(np.r_[True, self.pair_column[1:] != self.pair_column[:-1]])
        out = np.zeros((codes.shape[1], self.n_columns))
        # reduceat adds each column's entries in order, as the loop does.
        out[:, self.pair_column[starts]] = np.add.reduceat(
            self.pair_table.ravel().take(index, mode="clip"), starts, axis=0
        ).T
        return out


def log1p_bounds(thresholds: np.ndarray) -> np.ndarray:
    """Per threshold t, the largest float64 T >= 0 with np.log1p(T) <= t
    (-inf where none: t < 0): for every v >= 0 or NaN, `v <= T` is
    `log1p(v) <= t` and `v > T` is `log1p(v) > t` (log1p is non-decreasing).
    A bisection over the bit patterns of the non-negative floats, which are
    ordered as integers, with np.log1p itself: the bound agrees with the
    function the evidence would have been computed with, to the last bit
    (near large values many floats share one logarithm, so no step from
    expm1(t) would do)."""
    t = np.asarray(thresholds, dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError("a threshold is NaN")
    # lo: the largest pattern known to qualify (0.0: log1p(0) = 0 <= t for
    # t >= 0); hi: the smallest known not to (one past +inf's pattern).
    lo = np.zeros(t.shape, dtype=np.int64)
    hi = np.full(t.shape, np.array(np.inf).view(np.int64) + 1, dtype=np.int64)
    for _ in range(64):
        mid = lo + (hi - lo) // 2
        fits = np.log1p(mid.view(np.float64)) <= t
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
        if (hi - lo <= 1).all():
            break
    bound = lo.view(np.float64).copy()
    bound[t < 0] = -np.inf
    return bound


def _walk(
    internal: list[np.ndarray], roots: np.ndarray, left: np.ndarray, right: np.ndarray,
    leaf: np.ndarray, greater: np.ndarray, bits: int,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Every tree walked with every code at once: (leaf node per (tree,
    code), and per step the (node, child, still-walking) arrays)."""
    n_trees, width = len(roots), 1 << bits
    position = np.zeros(len(leaf), dtype=np.intp)  # node -> its bit in the code
    for nodes in internal:
        position[nodes] = np.arange(len(nodes))
    code = np.arange(width)[None, :]
    node = np.broadcast_to(roots[:, None].astype(np.intp), (n_trees, width)).copy()
    steps = []
    for _ in range(bits):
        walking = ~leaf[node]
        if not walking.any():
            break
        bit = ((code >> position[node]) & 1).astype(bool)
        go_left = bit ^ greater[node]
        child = np.where(walking, np.where(go_left, left[node], right[node]), node)
        steps.append((node, child, walking))
        node = child
    return node, steps


def _leaf_per_code(
    internal: list[np.ndarray], roots: np.ndarray, left: np.ndarray, right: np.ndarray,
    leaf: np.ndarray, greater: np.ndarray, bits: int,
) -> np.ndarray:
    return _walk(internal, roots, left, right, leaf, greater, bits)[0]


def _attribution_tables(
    internal: list[np.ndarray], roots: np.ndarray, left: np.ndarray, right: np.ndarray,
    leaf: np.ndarray, greater: np.ndarray, feature: np.ndarray, value: np.ndarray, bits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tree, column, table) per column a tree splits on, sorted by column
    then tree: the value changes along each code's path, per column."""
    n_trees, width = len(roots), 1 << bits
    _, steps = _walk(internal, roots, left, right, leaf, greater, bits)
    pairs = sorted({(int(feature[n]), t) for t, nodes in enumerate(internal) for n in nodes})
    index = {pair: p for p, pair in enumerate(pairs)}
    table = np.zeros((len(pairs), width))
    lookup = np.full((int(feature.max(initial=0)) + 1, n_trees), -1, dtype=np.intp)
    for (column, t), p in index.items():
        lookup[column, t] = p
    tree = np.broadcast_to(np.arange(n_trees)[:, None], (n_trees, width))
    code = np.broadcast_to(np.arange(width)[None, :], (n_trees, width))
    for node, child, walking in steps:
        p = lookup[feature[node[walking]], tree[walking]]
        np.add.at(table, (p, code[walking]), value[child[walking]] - value[node[walking]])
    return (
        np.asarray([t for _, t in pairs], dtype=np.intp),
        np.asarray([c for c, _ in pairs], dtype=np.intp),
        table,
    )
