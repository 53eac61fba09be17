"""Vectorized kernels of the aggregate engine (gendetect.features.aggregate_engine).

Events of one group are laid out sorted by (key, time, order): each key's
events form a contiguous segment, and every window of a query event is a
range [lo, hi) of positions inside its segment. Everything here answers
questions about such ranges for many queries at once:
- `Timeline`, `Layout`: the sorts and the binary searches that find the ranges;
- `Moments`: count, sum, mean, variance from segmented prefix sums carried
  with their rounding errors (`ExactPrefix`), with an error bound per
  answer; answers whose bound exceeds `TOL` are recomputed exactly
  (two-pass over the range), so results do not depend on where a segment
  starts (offline: the key's first event in the file; online: the oldest
  event the store kept);
- `range_extreme`: min or max by a sparse table (O(n log n), exact);
- `distinct_counts`: distinct values in ranges by interval counting over
  "previous occurrence" links (O(n log n));
- `known_fraud_counts`: frauds whose label had arrived by the query time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Relative error accepted from prefix sums before an exact recompute: well
# under the 1e-9 at which the engine, the online stores and Spark must agree.
TOL = 1e-11
_EPS = float(np.finfo(np.float64).eps)
_RAGGED_CHUNK = 1 << 22


class Timeline:
    """All events in (time, order) order, shared by the groups of a
    declaration: the sort, each event's rank in it, and per window offset
    the number of events at or before each event's time - offset (one
    binary search per distinct offset, whatever the number of groups)."""

    def __init__(self, time_ns: np.ndarray, order: np.ndarray) -> None:
        self.by_time = np.lexsort((order, time_ns))
        self.rank = np.empty(len(time_ns), dtype=np.int64)
        self.rank[self.by_time] = np.arange(len(time_ns))
        self.time_sorted = time_ns[self.by_time]
        self._at_or_before: dict[int, np.ndarray] = {}

    def at_or_before(self, offset: int) -> np.ndarray:
        """Per rank: how many events have time <= that event's time - offset
        (searched in time order: sorted keys, much faster on many rows)."""
        if offset not in self._at_or_before:
            t = self.time_sorted
            self._at_or_before[offset] = t.searchsorted(t - offset, side="right")
        return self._at_or_before[offset]


@dataclass(frozen=True)
class Layout:
    """Events with a key (code >= 0) sorted by (key, time, order)."""

    perm: np.ndarray  # sorted position -> event index
    pos: np.ndarray  # event index -> sorted position (-1: no key)
    seg: np.ndarray  # sorted position -> segment number
    seg_starts: np.ndarray  # segment number -> first position
    time: np.ndarray  # time in sorted order
    rank: np.ndarray  # sorted position -> rank in the timeline
    composite: np.ndarray  # seg * stride + rank: increasing
    timeline: Timeline
    stride: int

    @classmethod
    def build(cls, key: np.ndarray, time_ns: np.ndarray, timeline: Timeline) -> Layout:
        n = len(key)
        by_time = timeline.by_time
        keyed = by_time[key[by_time] >= 0]
        m = len(keyed)
        k_by_time = key[keyed]
        if m >= 4096 and k_by_time.max() < 2**16:
            # numpy's stable sort is a radix sort for 16-bit integers.
            k_by_time = k_by_time.astype(np.uint16)
        perm = keyed[k_by_time.argsort(kind="stable")]
        pos = np.full(n, -1, dtype=np.int64)
        pos[perm] = np.arange(m)
        k_sorted = key[perm]
        new_seg = np.empty(m, dtype=bool)
        if m:
            new_seg[0] = True
            np.not_equal(k_sorted[1:], k_sorted[:-1], out=new_seg[1:])
        seg = new_seg.cumsum() - 1
        rank = timeline.rank[perm]
        stride = n + 1
        return cls(perm=perm, pos=pos, seg=seg, seg_starts=new_seg.nonzero()[0],
                   time=time_ns[perm], rank=rank, composite=seg * stride + rank,
                   timeline=timeline, stride=stride)

    def first_after(
        self, q_pos: np.ndarray, q_time: np.ndarray, offset: int, all_events: bool
    ) -> np.ndarray:
        """Per query: the first position of its segment with time > its
        time - offset: events of the segment whose rank is at least the
        number of events at or before that time."""
        if all_events:
            at_or_before = self.timeline.at_or_before(offset)[self.rank[q_pos]]
        else:
            at_or_before = self.timeline.time_sorted.searchsorted(q_time - offset, side="right")
        return self.composite.searchsorted(self.seg[q_pos] * self.stride + at_or_before)


def _segmented_layout(values: np.ndarray, seg: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """`values` with a correction slot before each segment holding minus the
    previous segment's total, so that a running sum returns to ~0 there:
    the sum of segment s's values before position p is then the running sum
    at p + s."""
    n, n_seg = len(values), len(seg_starts)
    ext = np.zeros(n + n_seg, dtype=np.float64)
    ext[np.arange(1, n + 1) + seg] = values
    if n_seg > 1:
        totals = np.add.reduceat(values, seg_starts)
        ext[seg_starts[1:] + np.arange(1, n_seg)] = -totals[:-1]
    return ext


def segmented_prefix(values: np.ndarray, seg: np.ndarray, seg_starts: np.ndarray) -> np.ndarray:
    """Prefix sums restarted per segment (see `_segmented_layout`)."""
    return _segmented_layout(values, seg, seg_starts).cumsum()


class ExactPrefix:
    """Segmented prefix sums carried in two parts (a double-double): the
    running sum s and the running sum E of the rounding error of each of its
    additions (TwoSum: the error of fl(a + b) is exact and computable once
    s is known). A range's sum (s_hi - s_lo) + (E_hi - E_lo) is then exact to
    a few ulps of the range's own sum, however long the segment before it:
    the same value whether the history starts at the key's first event in a
    file or at the oldest event an online store kept."""

    def __init__(self, values: np.ndarray, seg: np.ndarray, seg_starts: np.ndarray) -> None:
        ext = _segmented_layout(values, seg, seg_starts)
        s = ext.cumsum()
        before = np.concatenate(([0.0], s[:-1]))
        b_virtual = s - before
        err = (before - (s - b_virtual)) + (ext - b_virtual)
        self.s = s
        self.e = err.cumsum()
        # The bound below holds when s[k] == fl(s[k-1] + ext[k]), which is
        # how numpy accumulates (in sequence); the running error sum's own
        # rounding stays below eps * sum |err|.
        exact = bool(np.array_equal(before + ext, s))
        self.e_bound = _EPS * float(np.abs(err).sum()) if exact else np.inf

    def range_sum(self, s_hi: np.ndarray, s_lo: np.ndarray) -> np.ndarray:
        """Sums over ranges (running-sum indices): within a few ulps of the
        range's sum, plus `e_bound`."""
        return (self.s[s_hi] - self.s[s_lo]) + (self.e[s_hi] - self.e[s_lo])


class Moments:
    """Count, sum, mean and variance of one value column over ranges."""

    def __init__(self, layout: Layout, values: np.ndarray) -> None:
        x = values[layout.perm]
        valid = ~np.isnan(x)
        self.x = x
        self.all_valid = bool(valid.all())
        self.valid_prefix = np.concatenate(([0], valid.cumsum()))
        seg, starts = layout.seg, layout.seg_starts
        # Shift each segment by its mean: sums of squares then hold spreads,
        # not magnitudes (the variance does not cancel for close values).
        y0 = np.where(valid, x, 0.0)
        if len(starts):
            n_valid = np.add.reduceat(valid.astype(np.float64), starts)
            seg_mean = np.add.reduceat(y0, starts) / np.maximum(n_valid, 1.0)
        else:
            seg_mean = np.zeros(0)
        self.shift = seg_mean
        y = np.where(valid, x - seg_mean[seg], 0.0)
        self.max_abs_y = float(np.abs(y).max(initial=0.0))
        self.p1 = ExactPrefix(y, seg, starts)
        self.p2 = ExactPrefix(y * y, seg, starts)

    def count(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        if self.all_valid:
            return hi - lo
        return self.valid_prefix[hi] - self.valid_prefix[lo]

    def stats(
        self, q_seg: np.ndarray, lo: np.ndarray, hi: np.ndarray, want_var: bool,
        zscore: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """(count, sum, mean, var, exact) over [lo, hi); var None unless
        asked. Empty ranges give 0 throughout. `exact` flags the answers
        recomputed by the two-pass path, where the prefix sums' error bound
        exceeds TOL: a sum that cancels (the range's values against the
        segment's mean), a variance far below the squared distance of the
        range's mean from the segment's. With `zscore`, the mean and spread
        must also be exact relative to the z-score's floored spread."""
        n = self.count(lo, hi).astype(np.float64)
        s_hi, s_lo = hi + q_seg, lo + q_seg
        sy = self.p1.range_sum(s_hi, s_lo)
        n_shift = n * self.shift[q_seg]
        total = sy + n_shift
        safe_n = np.maximum(n, 1.0)
        mean = total / safe_n
        # |sy| <= |total| + |n_shift|: a few ulps of each, and the error sum.
        err_sum = 4.01 * _EPS * (np.abs(total) + np.abs(n_shift)) + self.p1.e_bound
        # The mean's bound (err_sum / n <= TOL (1 + |mean|)) follows from this.
        redo = err_sum > TOL * (safe_n + np.abs(total))
        var = None
        if want_var:
            mean_y = sy / safe_n
            m2 = self.p2.range_sum(s_hi, s_lo) / safe_n
            var = np.maximum(m2 - mean_y * mean_y, 0.0)
            # Ulps of S2 and of mean_y^2 (<= S2 / n), and the error sums.
            err_var = 10 * _EPS * m2 + (self.p2.e_bound + 2 * self.max_abs_y * self.p1.e_bound
                                        ) / safe_n
            # One value has no spread: exactly 0, nothing to recompute.
            single = n <= 1
            var[single] = 0.0
            redo |= (err_var > np.maximum(TOL * var, 1e-24)) & ~single
            if zscore:
                spread = np.maximum(np.sqrt(var), np.maximum(0.01 * np.abs(mean), 1e-6))
                redo |= err_sum / safe_n > TOL * spread
        if redo.any():
            idx = redo.nonzero()[0]
            _, s, mu, v = ragged_moments(self.x, lo[idx], hi[idx])
            total[idx], mean[idx] = s, mu
            if var is not None:
                var[idx] = v
        return n, total, mean, var, redo


def ragged_moments(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact (two-pass) count, sum, mean and population variance of the
    non-missing values of x over each [lo, hi), in chunks of bounded size."""
    k = len(lo)
    out = np.zeros((4, k))
    lengths = hi - lo
    start = 0
    while start < k:
        cum = np.cumsum(lengths[start:])
        stop = start + max(1, int(np.searchsorted(cum, _RAGGED_CHUNK, side="right")))
        part = slice(start, stop)
        idx, rid = _ragged_index(lo[part], lengths[part])
        xs = x[idx]
        ok = ~np.isnan(xs)
        nb = stop - start
        c = np.bincount(rid, weights=ok, minlength=nb)
        s = np.bincount(rid, weights=np.where(ok, xs, 0.0), minlength=nb)
        mu = s / np.maximum(c, 1.0)
        dev = np.where(ok, xs - mu[rid], 0.0)
        v = np.bincount(rid, weights=dev * dev, minlength=nb) / np.maximum(c, 1.0)
        out[:, part] = c, s, mu, v
        start = stop
    return out[0], out[1], out[2], out[3]


def _ragged_index(lo: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the concatenated ranges, and the range of each."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    rid = np.repeat(np.arange(len(lo)), lengths)
    idx = np.arange(total, dtype=np.int64) + (lo - offsets)[rid]
    return idx, rid


def range_extreme(
    values: np.ndarray, lo: np.ndarray, hi: np.ndarray, kind: str
) -> np.ndarray:
    """min or max of the non-missing values over each [lo, hi) (sorted
    positions), NaN where the range holds none, by a sparse table: level k
    holds the extreme over [i, i + 2**k), and a range is covered by two
    overlapping blocks of the largest level that fits."""
    fill = np.inf if kind == "min" else -np.inf
    op = np.minimum if kind == "min" else np.maximum
    lengths = hi - lo
    out = np.full(len(lo), np.nan)
    nonempty = lengths > 0
    if not nonempty.any():
        return out
    levels = [np.where(np.isnan(values), fill, values)]
    top = int(np.log2(lengths.max()))
    for k in range(1, top + 1):
        prev, half = levels[-1], 1 << (k - 1)
        levels.append(op(prev[:-half], prev[half:]))
    lo_, hi_ = lo[nonempty], hi[nonempty]
    level = np.log2(lengths[nonempty]).astype(np.int64)
    # Guard against log2 rounding at exact powers of two.
    level -= (1 << level) > (hi_ - lo_)
    level += (1 << (level + 1)) <= (hi_ - lo_)
    res = np.empty(len(lo_))
    for k in np.unique(level):
        sel = level == k
        table = levels[k]
        res[sel] = op(table[lo_[sel]], table[hi_[sel] - (1 << k)])
    res[~np.isfinite(res)] = np.nan
    out[nonempty] = res
    return out


def previous_same(layout: Layout, codes: np.ndarray) -> np.ndarray:
    """Per sorted position: the previous position of the same segment with
    the same code, -1 when none or when the code is missing (-1)."""
    c = codes[layout.perm]
    m = len(c)
    positions = np.arange(m)
    order = np.lexsort((positions, c, layout.seg))
    prev = np.full(m, -1, dtype=np.int64)
    if m > 1:
        same = (layout.seg[order[1:]] == layout.seg[order[:-1]]) & (c[order[1:]] == c[order[:-1]])
        prev[order[1:][same]] = order[:-1][same]
    prev[c < 0] = -1
    return prev


def distinct_counts(
    codes_sorted_valid: np.ndarray, prev: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Distinct non-missing codes over [lo, hi) for queries sorted by
    position (lo and hi nondecreasing).

    distinct = non-missing events in the range - repeats, where event j is a
    repeat for a query when its previous occurrence r = prev[j] is in the
    range too (lo <= r, j < hi). Since lo and hi grow with the query, the
    queries that count j as a repeat form one interval [first q with
    hi > j, last q with lo <= r]: a difference array counts them all."""
    valid_prefix = np.concatenate(([0], np.cumsum(codes_sorted_valid)))
    present = valid_prefix[hi] - valid_prefix[lo]
    j = np.nonzero(prev >= 0)[0]
    first = hi.searchsorted(j, side="right")
    last = lo.searchsorted(prev[j], side="right") - 1
    keep = first <= last
    return present - _interval_cover(first[keep], last[keep], len(lo))


def known_fraud_counts(
    layout: Layout,
    fraud_sorted: np.ndarray,
    known_sorted: np.ndarray,
    q_pos: np.ndarray,
    q_time: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """Frauds j in [lo, hi) whose label had arrived by the query's time
    (known_j <= t_q), for queries sorted by position. As in
    `distinct_counts`, j counts for an interval of queries: hi > j, lo <= j,
    and (within j's segment, where t grows with q) t_q >= known_j."""
    j = np.nonzero(fraud_sorted)[0]
    if not (len(j) and len(q_pos)):
        return np.zeros(len(lo), dtype=np.int64)
    first = hi.searchsorted(j, side="right")
    last = lo.searchsorted(j, side="right") - 1
    times = np.unique(q_time)
    q_key = layout.seg[q_pos] * (len(times) + 1) + times.searchsorted(q_time)
    j_key = layout.seg[j] * (len(times) + 1) + times.searchsorted(known_sorted[j])
    first = np.maximum(first, q_key.searchsorted(j_key, side="left"))
    keep = first <= last
    return _interval_cover(first[keep], last[keep], len(lo))


def _interval_cover(first: np.ndarray, last: np.ndarray, n: int) -> np.ndarray:
    """How many of the intervals [first, last] hold each of 0..n-1."""
    diff = np.bincount(first, minlength=n + 1) - np.bincount(last + 1, minlength=n + 1)
    return diff.cumsum()[:n]
