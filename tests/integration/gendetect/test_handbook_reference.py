"""The offline window engine against the fraud-detection handbook's own
precomputed window columns (1.75M transactions), on every row.

Ties: 29 customers have two transactions in the same second. pandas'
rolling window ends at the current row of the *sorted* frame, so of two
same-second transactions the first in sort order does not see the second.
The handbook sorted each customer's rows (in transaction-id order) with
`sort_values`, i.e. numpy's unstable quicksort, so its tie order is an
artifact of that algorithm: in 10 of the 29 pairs it is not id order. Our
engine breaks ties by transaction id (what an online replay does). To check
every row we reproduce the handbook's tie order by re-running the quicksort
numpy used then (before SIMD sorting) and pass it as the tie-break column;
a second test checks that with the default id order only the tied rows
differ, and only by swapping values within their pair.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendetect.features.behaviour import Behaviour
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig
from gendetect.schema import load_schema

pytestmark = pytest.mark.handbook

RENAME = {
    "TRANSACTION_ID": "transaction_id",
    "TX_DATETIME": "timestamp",
    "CUSTOMER_ID": "customer_id",
    "TERMINAL_ID": "terminal_id",
    "TX_AMOUNT": "amount",
    "TX_FRAUD": "is_fraud",
}
TOLERANCE = 1e-6


def _data_dir() -> Path:
    override = os.environ.get("GENDETECT_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _handbook_column(feature: str) -> str:
    """customer_nb_tx_7d -> CUSTOMER_ID_NB_TX_7DAY_WINDOW, and so on."""
    entity, rest = feature.split("_", 1)
    measure, days = rest.rsplit("_", 1)
    return f"{entity.upper()}_ID_{measure.upper()}_{days[:-1]}DAY_WINDOW"


@pytest.fixture(scope="module")
def handbook() -> pd.DataFrame:
    path = _data_dir() / "handbook" / "transactions.parquet"
    if not path.is_file():
        pytest.skip(f"handbook reference data not found at {path} (set GENDETECT_SHARED_DATA)")
    return pd.read_parquet(path).rename(columns=RENAME)


def legacy_numpy_quicksort_argsort(values: np.ndarray) -> np.ndarray:
    """argsort(kind="quicksort") as numpy computed it before SIMD sorts:
    median-of-3 quicksort, insertion sort on partitions of <= 16 elements,
    smaller partition first. Unstable; only its tie order matters here."""
    v = values.tolist()
    idx = list(range(len(v)))
    stack: list[tuple[int, int]] = []
    lo, hi = 0, len(v) - 1
    while True:
        while hi - lo > 15:
            mid = lo + ((hi - lo) >> 1)
            if v[idx[mid]] < v[idx[lo]]:
                idx[mid], idx[lo] = idx[lo], idx[mid]
            if v[idx[hi]] < v[idx[mid]]:
                idx[hi], idx[mid] = idx[mid], idx[hi]
            if v[idx[mid]] < v[idx[lo]]:
                idx[mid], idx[lo] = idx[lo], idx[mid]
            pivot = v[idx[mid]]
            i, j = lo, hi - 1
            idx[mid], idx[j] = idx[j], idx[mid]
            while True:
                i += 1
                while v[idx[i]] < pivot:
                    i += 1
                j -= 1
                while pivot < v[idx[j]]:
                    j -= 1
                if i >= j:
                    break
                idx[i], idx[j] = idx[j], idx[i]
            idx[i], idx[hi - 1] = idx[hi - 1], idx[i]
            # Defer the larger side, keep sorting the smaller one. (The depth
            # limit that switches to heapsort is never reached on these sizes.)
            if i - lo < hi - i:
                stack.append((i + 1, hi))
                hi = i - 1
            else:
                stack.append((lo, i - 1))
                lo = i + 1
        for i in range(lo + 1, hi + 1):
            item, j = idx[i], i
            while j > lo and v[item] < v[idx[j - 1]]:
                idx[j] = idx[j - 1]
                j -= 1
            idx[j] = item
        if not stack:
            return np.asarray(idx, dtype=np.int64)
        lo, hi = stack.pop()


def handbook_tie_order(df: pd.DataFrame) -> np.ndarray:
    """A tie-break column reproducing the handbook's order of same-second
    transactions of a customer: its ids, re-dealt in the order the handbook's
    per-customer sort left the rows."""
    order = df["transaction_id"].to_numpy().copy()
    tied = df.duplicated(["customer_id", "timestamp"], keep=False).to_numpy()
    customers = np.unique(df["customer_id"].to_numpy()[tied])
    rows = np.flatnonzero(df["customer_id"].isin(customers).to_numpy())
    sub = df.iloc[rows].assign(_row=rows).sort_values("transaction_id", kind="stable")
    for _, group in sub.groupby("customer_id", sort=False):
        times = group["timestamp"].to_numpy().astype(np.int64)
        handbook_sorted_rows = group["_row"].to_numpy()[legacy_numpy_quicksort_argsort(times)]
        order[handbook_sorted_rows] = np.sort(group["transaction_id"].to_numpy())
    return order


def _assert_matches(
    out: pd.DataFrame, config: WindowConfig, rows: np.ndarray | None = None
) -> None:
    for name in config.feature_names:
        ours = out[name].to_numpy()
        ref = out[_handbook_column(name)].to_numpy()
        if rows is not None:
            ours, ref = ours[rows], ref[rows]
        err = np.abs(ours - ref)
        bad = np.flatnonzero(~(err <= TOLERANCE))
        assert bad.size == 0, (
            f"{name}: {bad.size} rows differ from the handbook by > {TOLERANCE} "
            f"(max {np.nanmax(err):.3g}; first at row {bad[0]})"
        )


def test_every_row_matches_handbook(handbook: pd.DataFrame) -> None:
    config = WindowConfig(id_col="handbook_tie_order")
    frame = handbook.assign(handbook_tie_order=handbook_tie_order(handbook))
    out = add_window_features(frame, config)
    assert out.index.equals(handbook.index)
    _assert_matches(out, config)


def test_default_schema_declaration_matches_handbook(handbook: pd.DataFrame) -> None:
    """The built-in schema's `aggregates:` (the handbook's twelve, declared
    per key) gives the handbook's columns on every row."""
    declared = Behaviour.from_schema(load_schema("transactions"))
    assert declared is not None and len(declared.feature_names) == 12
    # The same declaration, ties broken in the handbook's order.
    behaviour = Behaviour(declared.declaration, declared.time_col, "handbook_tie_order",
                          declared.label_col)
    frame = handbook.assign(handbook_tie_order=handbook_tie_order(handbook))
    out = behaviour.add_to_frame(frame)
    _assert_matches(out, WindowConfig())


def test_default_tie_break_differs_only_within_same_second_pairs(handbook: pd.DataFrame) -> None:
    config = WindowConfig()
    out = add_window_features(handbook, config)
    tied = handbook.duplicated(["customer_id", "timestamp"], keep=False).to_numpy()
    assert 0 < tied.sum() < 100
    _assert_matches(out, config, rows=np.flatnonzero(~tied))
    # In each same-second group the counts are the handbook's permuted, and
    # the row that comes last (sees the whole group) has the same mean.
    tied_rows = out[tied]
    for _, group in tied_rows.groupby(["customer_id", "timestamp"]):
        for days in config.customer_windows_days:
            nb, avg = f"customer_nb_tx_{days}d", f"customer_avg_amount_{days}d"
            ours, ref = group[nb].to_numpy(), group[_handbook_column(nb)].to_numpy()
            np.testing.assert_array_equal(np.sort(ours), np.sort(ref))
            assert (
                abs(
                    group[avg].to_numpy()[ours.argmax()]
                    - group[_handbook_column(avg)].to_numpy()[ref.argmax()]
                )
                <= TOLERANCE
            )
