"""The aggregate engine against a brute-force reference written straight
from the semantics in gendetect.features.aggregates (a slow loop over
events), on random and hostile streams: ties at one timestamp, equal
values, huge and tiny amounts, missing keys and values, rows out of order,
pair keys, labels that arrive late."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gendetect.features.aggregate_engine import aggregate_features, group_features, key_codes
from gendetect.features.aggregates import ZSCORE_CLIP, AggregateDeclaration

S = 10**9
ALL_WINDOWED = ["count", "first_seen", {"kind": "sum", "of": "x"}, {"kind": "mean", "of": "x"},
                {"kind": "std", "of": "x"}, {"kind": "min", "of": "x"}, {"kind": "max", "of": "x"},
                {"kind": "zscore", "of": "x"}, {"kind": "distinct", "of": "b"}]
DECLARATION = AggregateDeclaration.from_list(
    [
        {"key": "a", "windows": ["10s", "1m"], "features": [*ALL_WINDOWED, "since_previous"]},
        {"key": "b", "windows": ["10s", "30s"], "delay": "5s",
         "features": [*ALL_WINDOWED, "label_rate", "since_previous"]},
        {"key": ["a", "b"], "windows": ["20s"], "name": "pair",
         "features": ["count", "first_seen", "label_rate", {"kind": "distinct", "of": "x"},
                      {"kind": "std", "of": "x"}]},
        {"key": "b", "name": "b_gap", "horizon": "15s", "features": ["since_previous"]},
    ],
    entity_columns=["a", "b"], numeric_columns=["x"], all_columns=["a", "b", "x"], has_label=True,
)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def reference(events: dict[str, list[Any]], known: list[int] | None = None) -> dict[str, list]:
    """The semantics, event by event."""
    n = len(events["t"])
    t, o = events["t"], events["o"]
    out: dict[str, list[float]] = {name: [] for name in DECLARATION.feature_names}
    for group in DECLARATION.groups:
        keys = [tuple(events[c][i] for c in group.key) for i in range(n)]
        for i in range(n):
            if any(_missing(v) for v in keys[i]):
                for name in group.feature_names:
                    out[name].append(math.nan)
                continue
            same = [j for j in range(n) if keys[j] == keys[i]]
            earlier = [j for j in same if (t[j], o[j]) < (t[i], o[i])]
            for f in group.features:
                if f.kind == "since_previous":
                    recent = [j for j in earlier if t[j] > t[i] - group.horizon_ns]
                    latest = max(recent, key=lambda j: (t[j], o[j])) if recent else None
                    gap = group.horizon_ns if latest is None else t[i] - t[latest]
                    out[f.name].append(gap / S)
                    continue
                w, d = f.window_ns, group.delay_ns
                if d == 0:
                    window = [j for j in same if t[i] - w < t[j] and (t[j], o[j]) <= (t[i], o[i])]
                else:
                    window = [j for j in same if t[i] - d - w < t[j] <= t[i] - d]
                before = [j for j in window if j != i]
                xs = [events["x"][j] for j in window if not math.isnan(events["x"][j])]
                out[f.name].append(_one(f.kind, f.of, window, before, xs, events, i, known))
    return out


def _one(kind: str, of: str | None, window: list[int], before: list[int], xs: list[float],
         events: dict[str, list[Any]], i: int, known: list[int] | None) -> float:
    if kind == "count":
        return float(len(window))
    if kind == "first_seen":
        return 0.0 if before else 1.0
    if kind in ("sum", "mean", "std", "min", "max"):
        if not xs:
            return 0.0
        fn = {"sum": np.sum, "mean": np.mean, "std": np.std, "min": np.min, "max": np.max}[kind]
        return float(fn(np.array(xs)))
    if kind == "distinct":
        return float(len({events[of][j] for j in window if not _missing(events[of][j])}))
    if kind == "label_rate":
        frauds = sum(1 for j in window if events["label"][j] == 1
                     and (known is None or known[j] <= events["t"][i]))
        return frauds / len(window) if window else 0.0
    if kind == "zscore":
        x = events["x"][i]
        hist = np.array([events["x"][j] for j in before if not math.isnan(events["x"][j])])
        if math.isnan(x) or len(hist) < 2:
            return 0.0
        m, s = float(hist.mean()), float(hist.std())
        s = max(s, 0.01 * abs(m), 1e-6)
        return float(np.clip((x - m) / s, -ZSCORE_CLIP, ZSCORE_CLIP))
    raise AssertionError(kind)


VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 12.5, 12.5, 1e9, 1e-6, 1e6 + 0.25, -3.0, math.nan]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
KEYS = st.one_of(st.integers(0, 3), st.none())
EVENT = st.tuples(st.integers(0, 120), KEYS, st.one_of(st.sampled_from(["p", "q", "r"]), st.none()),
                  VALUES, st.sampled_from([0.0, 1.0, 1.0, -1.0, math.nan]), st.integers(0, 40))


def _stream(raw: list[tuple], seed: int) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(len(raw)) * 3 + 7  # unique, unrelated to row order
    return {"t": [r[0] * S for r in raw], "o": [int(v) for v in ids], "a": [r[1] for r in raw],
            "b": [r[2] for r in raw], "x": [r[3] for r in raw], "label": [r[4] for r in raw],
            "lag": [r[5] * S for r in raw]}


def _engine(events: dict[str, list[Any]], known: np.ndarray | None = None,
            queries: np.ndarray | None = None) -> dict[str, np.ndarray]:
    cols = {"a": np.array(events["a"], dtype=object), "b": np.array(events["b"], dtype=object),
            "x": np.array(events["x"], dtype=np.float64)}
    return aggregate_features(DECLARATION.groups, cols, np.array(events["t"], dtype=np.int64),
                              np.array(events["o"], dtype=np.int64),
                              label=np.array(events["label"], dtype=np.float64),
                              label_known_ns=known, queries=queries)


def _assert_equal(got: dict[str, np.ndarray], expected: dict[str, list]) -> None:
    for name in DECLARATION.feature_names:
        np.testing.assert_allclose(got[name], np.array(expected[name], dtype=np.float64),
                                   rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, min_size=1, max_size=40), st.integers(0, 2**16))
def test_every_kind_equals_the_reference(raw: list[tuple], seed: int) -> None:
    events = _stream(raw, seed)
    _assert_equal(_engine(events), reference(events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, min_size=1, max_size=30), st.integers(0, 2**16))
def test_labels_count_once_they_have_arrived(raw: list[tuple], seed: int) -> None:
    events = _stream(raw, seed)
    known = [t + lag for t, lag in zip(events["t"], events["lag"], strict=True)]
    _assert_equal(_engine(events, np.array(known, dtype=np.int64)), reference(events, known))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, min_size=1, max_size=30), st.integers(0, 2**16), st.data())
def test_queries_answer_as_the_whole_stream(raw: list[tuple], seed: int, data: Any) -> None:
    """The online stores ask for one event over a key's history: a subset of
    queries must give the rows of the full answer."""
    events = _stream(raw, seed)
    queries = np.array(data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=5)),
                       dtype=np.int64)
    full, part = _engine(events), _engine(events, queries=queries)
    for name in DECLARATION.feature_names:
        np.testing.assert_array_equal(part[name], full[name][queries], err_msg=name)


def test_long_history_of_large_close_values_keeps_precision() -> None:
    """One key, thousands of events of ~1e6 with cents of spread: prefix
    sums over the whole history would lose the spread (std, zscore); the
    engine must equal a direct computation over each window."""
    rng = np.random.default_rng(3)
    n = 3000
    t = np.sort(rng.integers(0, 2000, n)) * S
    x = 1e6 + np.round(rng.normal(0, 0.05, n), 2)
    x[1500:1600] = 1e6 + 0.25  # a run of equal values: std exactly 0
    group = AggregateDeclaration.from_list(
        [{"key": "a", "windows": ["5s", "50s"],
          "features": [{"kind": k, "of": "x"} for k in ("sum", "mean", "std", "zscore")]}],
        entity_columns=["a"], numeric_columns=["x"], all_columns=["a", "x"], has_label=False,
    ).groups[0]
    got = group_features(group, np.zeros(n, dtype=np.int64), t, np.arange(n), {"x": x})
    for w in (5, 50):
        lo = np.searchsorted(t, t - w * S, side="right")
        for i in range(0, n, 7):
            win = x[lo[i]: i + 1]
            assert got[f"a_std_x_{w}s"][i] == pytest.approx(win.std(), rel=1e-9, abs=1e-9)
            assert got[f"a_mean_x_{w}s"][i] == pytest.approx(win.mean(), rel=1e-12)
            hist = x[lo[i]: i]
            if len(hist) >= 2:
                m, s = hist.mean(), max(hist.std(), 0.01 * abs(hist.mean()), 1e-6)
                z = np.clip((x[i] - m) / s, -ZSCORE_CLIP, ZSCORE_CLIP)
                assert got[f"a_zscore_x_{w}s"][i] == pytest.approx(z, rel=1e-9, abs=1e-9)
    assert np.all(got["a_std_x_5s"][1510:1600][np.diff(t)[1509:1599] >= 0] >= 0)


def test_pair_keys_are_missing_when_any_part_is() -> None:
    cols = {"a": np.array([1, 1, None, 2], dtype=object),
            "b": np.array(["u", None, "u", "u"], dtype=object)}
    codes = key_codes(cols, ("a", "b"))
    assert codes[1] == codes[2] == -1
    assert codes[0] >= 0 and codes[3] >= 0 and codes[0] != codes[3]


def test_empty_and_keyless_inputs() -> None:
    group = DECLARATION.groups[0]
    empty = group_features(group, np.zeros(0, np.int64), np.zeros(0, np.int64),
                           np.zeros(0, np.int64), {"x": np.zeros(0)}, {"b": np.zeros(0, np.int64)})
    assert all(len(v) == 0 for v in empty.values())
    keyless = group_features(group, np.full(3, -1), np.arange(3) * S, np.arange(3),
                             {"x": np.ones(3)}, {"b": np.zeros(3, np.int64)})
    assert all(np.isnan(v).all() for v in keyless.values())
