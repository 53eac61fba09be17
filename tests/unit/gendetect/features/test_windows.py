"""The offline window engine: definitions against a brute-force reference,
window edges, ties, precision, row order, configuration and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gendetect.cli import main as cli
from gendetect.errors import InputError
from gendetect.features.window_engine import (
    add_window_features,
    customer_window_features,
    window_sums,
)
from gendetect.features.windows import WindowConfig
from gendetect.timestamps import NS_PER_DAY

HOUR_NS = 3600 * 10**9
T0 = pd.Timestamp("2024-03-01").value

EXPECTED_NAMES = (
    "customer_nb_tx_1d",
    "customer_avg_amount_1d",
    "customer_nb_tx_7d",
    "customer_avg_amount_7d",
    "customer_nb_tx_30d",
    "customer_avg_amount_30d",
    "terminal_nb_tx_1d",
    "terminal_risk_1d",
    "terminal_nb_tx_7d",
    "terminal_risk_7d",
    "terminal_nb_tx_30d",
    "terminal_risk_30d",
)


def random_frame(n: int, seed: int, *, n_customers: int = 12, n_terminals: int = 8) -> pd.DataFrame:
    """Times on a whole-hour grid over 60 days: many transactions sit exactly
    one window apart (edge cases) or share a timestamp (ties). Rows shuffled,
    with a non-trivial index."""
    rng = np.random.default_rng(seed)
    times = T0 + rng.integers(0, 60 * 24, n) * HOUR_NS
    df = pd.DataFrame(
        {
            "transaction_id": rng.permutation(n).astype(np.int64) + 1000,
            "timestamp": pd.to_datetime(times),
            "customer_id": rng.integers(0, n_customers, n),
            "terminal_id": rng.integers(0, n_terminals, n) * 7 + 3,
            "amount": np.round(rng.gamma(2.0, 40.0, n), 2),
            "is_fraud": (rng.random(n) < 0.2).astype(np.int64),
        }
    )
    df.index = pd.Index(rng.permutation(n) * 3 + 11, name="row")
    return df


def brute_force(df: pd.DataFrame, config: WindowConfig) -> dict[str, np.ndarray]:
    """The definitions, row by row (O(n^2))."""
    t = df["timestamp"].to_numpy().astype(np.int64)
    ids = df["transaction_id"].to_numpy()
    cust, term = df["customer_id"].to_numpy(), df["terminal_id"].to_numpy()
    amount, label = df["amount"].to_numpy(), df["is_fraud"].to_numpy()
    delay = round(config.delay_days * NS_PER_DAY)
    out = {name: np.zeros(len(df)) for name in config.feature_names}
    for i in range(len(df)):
        # Up to and including this transaction in (time, id) order.
        upto = (t < t[i]) | ((t == t[i]) & (ids <= ids[i]))
        for w in config.customer_windows_days:
            sel = (cust == cust[i]) & (t > t[i] - w * NS_PER_DAY) & upto
            out[f"customer_nb_tx_{w}d"][i] = sel.sum()
            out[f"customer_avg_amount_{w}d"][i] = math.fsum(amount[sel]) / sel.sum()
        for w in config.terminal_windows_days:
            end = (t <= t[i] - delay) if delay else upto
            sel = (term == term[i]) & (t > t[i] - delay - w * NS_PER_DAY) & end
            out[f"terminal_nb_tx_{w}d"][i] = sel.sum()
            out[f"terminal_risk_{w}d"][i] = label[sel].sum() / sel.sum() if sel.any() else 0.0
    return out


def test_feature_names_exact_order() -> None:
    assert WindowConfig().feature_names == EXPECTED_NAMES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed: int) -> None:
    df = random_frame(1500, seed)
    config = WindowConfig()
    out = add_window_features(df, config)
    expected = brute_force(df, config)
    for name in config.feature_names:
        np.testing.assert_allclose(
            out[name].to_numpy(), expected[name], rtol=0, atol=1e-9, err_msg=name
        )


def test_other_windows_and_no_delay() -> None:
    df = random_frame(800, 5, n_customers=5, n_terminals=3)
    config = WindowConfig(customer_windows_days=(2, 3), terminal_windows_days=(5,), delay_days=0)
    out = add_window_features(df, config)
    expected = brute_force(df, config)
    assert list(out.columns[-6:]) == list(config.feature_names)
    for name in config.feature_names:
        np.testing.assert_allclose(
            out[name].to_numpy(), expected[name], rtol=0, atol=1e-9, err_msg=name
        )


def test_window_edges_left_open_right_closed() -> None:
    day = pd.Timedelta(days=1)
    start = pd.Timestamp("2024-01-10")
    df = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3, 4],
            # tx 1 is exactly 1 day before tx 2, and exactly 7 / 8 days
            # before txs 3 / 4 (the terminal's delay and delay + 1 day).
            "timestamp": [start, start + day, start + 7 * day, start + 8 * day],
            "customer_id": [1, 1, 1, 1],
            "terminal_id": [9, 9, 9, 9],
            "amount": [10.0, 20.0, 30.0, 40.0],
            "is_fraud": [1, 0, 0, 0],
        }
    )
    out = add_window_features(df)
    # (t - w, t]: tx 1 is out of tx 2's 1-day window but in its 7-day one;
    # tx 1 / tx 2 are exactly 7 days before tx 3 / tx 4, so out of theirs.
    assert out["customer_nb_tx_1d"].tolist() == [1, 1, 1, 1]
    assert out["customer_nb_tx_7d"].tolist() == [1, 2, 2, 2]
    assert out["customer_avg_amount_7d"].tolist() == [10.0, 15.0, 25.0, 35.0]
    # Terminal (t - 8d, t - 7d]: tx 1 is in tx 3's window (t - 7d exactly),
    # not in tx 4's (t - 8d exactly), where tx 2 is.
    assert out["terminal_nb_tx_1d"].tolist() == [0, 0, 1, 1]
    assert out["terminal_risk_1d"].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_same_timestamp_ties_follow_transaction_id_not_row_order() -> None:
    ts = pd.Timestamp("2024-01-10 12:00:00")
    df = pd.DataFrame(
        {
            "transaction_id": [8, 5, 6],
            "timestamp": [ts, ts, ts],
            "customer_id": [1, 1, 1],
            "terminal_id": [2, 2, 2],
            "amount": [30.0, 10.0, 20.0],
            "is_fraud": [0, 0, 0],
        }
    )
    out = add_window_features(df)
    # id 5 sees itself, id 6 sees 5 and 6, id 8 sees all three.
    assert out["customer_nb_tx_1d"].tolist() == [3, 1, 2]
    assert out["customer_avg_amount_1d"].tolist() == [20.0, 10.0, 15.0]


def test_without_id_column_ties_follow_row_order() -> None:
    ts = pd.Timestamp("2024-01-10")
    df = pd.DataFrame(
        {
            "timestamp": [ts, ts],
            "customer_id": [1, 1],
            "terminal_id": [2, 2],
            "amount": [1.0, 3.0],
            "is_fraud": [0, 0],
        }
    )
    assert add_window_features(df)["customer_nb_tx_1d"].tolist() == [1, 2]


def test_preserves_rows_index_and_input() -> None:
    df = random_frame(300, 3)
    before = df.copy()
    out = add_window_features(df)
    pd.testing.assert_frame_equal(df, before)
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert all(out[name].dtype == np.float64 for name in EXPECTED_NAMES)
    # Sorting the input first gives the same values per transaction.
    resorted = add_window_features(df.sort_values("timestamp")).loc[df.index]
    pd.testing.assert_frame_equal(resorted[list(EXPECTED_NAMES)], out[list(EXPECTED_NAMES)])


def test_timestamp_forms_agree() -> None:
    df = random_frame(200, 4)
    base = add_window_features(df)[list(EXPECTED_NAMES)]
    as_text = df.assign(timestamp=df["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    as_aware = df.assign(
        timestamp=df["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    )
    for variant in (as_text, as_aware):
        pd.testing.assert_frame_equal(add_window_features(variant)[list(EXPECTED_NAMES)], base)


def test_sums_restart_per_entity_for_precision() -> None:
    """Many entities with large amounts: per-window sums must not carry the
    rounding error of a global running sum (the online path sums one
    entity's short history)."""
    rng = np.random.default_rng(7)
    n = 200_000
    group = rng.integers(0, 50, n)
    time_ns = T0 + np.sort(rng.integers(0, 100 * NS_PER_DAY, n))
    amount = rng.uniform(0, 1e4, n)
    order = np.arange(n)
    config = WindowConfig(customer_windows_days=(1,))
    got = customer_window_features(group, time_ns, order, amount, config)["customer_avg_amount_1d"]
    sample = rng.choice(n, 300, replace=False)
    for i in sample:
        sel = (group == group[i]) & (time_ns > time_ns[i] - NS_PER_DAY) & (order <= i)
        assert abs(got[i] - math.fsum(amount[sel]) / sel.sum()) < 1e-9


def test_window_sums_queries_equal_full_result() -> None:
    rng = np.random.default_rng(8)
    n = 500
    group, time_ns = rng.integers(0, 7, n), rng.integers(0, 10**6, n)
    order, values = rng.permutation(n), rng.random(n)
    windows = [(1000, None), (5000, 100), (10**5, 10**4)]
    counts, sums = window_sums(group, time_ns, order, values, windows)
    queries = np.array([3, 0, 499, 42])
    q_counts, q_sums = window_sums(group, time_ns, order, values, windows, queries)
    np.testing.assert_array_equal(q_counts, counts[:, queries])
    np.testing.assert_allclose(q_sums, sums[:, queries], rtol=0, atol=1e-12)


def test_empty_frame() -> None:
    df = random_frame(10, 0).iloc[:0]
    out = add_window_features(df)
    assert len(out) == 0 and set(EXPECTED_NAMES) <= set(out.columns)


@pytest.mark.parametrize(
    "column", ["timestamp", "customer_id", "terminal_id", "amount", "is_fraud"]
)
def test_missing_column_names_it(column: str) -> None:
    with pytest.raises(InputError) as info:
        add_window_features(random_frame(20, 0).drop(columns=column))
    assert info.value.field == column


def test_missing_values_rejected() -> None:
    df = random_frame(20, 0)
    df.loc[df.index[3], "amount"] = np.nan
    with pytest.raises(InputError, match="missing") as info:
        add_window_features(df)
    assert info.value.field == "amount"


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("amount", "12.5", "expected numbers"), ("customer_id", True, "booleans"),
     ("is_fraud", 2, "labels must be"), ("timestamp", "noon", "not a timestamp")],
)
def test_wrong_types_are_named_not_crashes(column: str, value: object, message: str) -> None:
    df = random_frame(20, 0)
    df[column] = df[column].astype(object)
    df[column] = [value] * len(df)
    with pytest.raises(InputError, match=message) as info:
        add_window_features(df)
    assert info.value.field == column


def test_config_round_trip_and_validation() -> None:
    config = WindowConfig.from_dict(
        {"customer_windows_days": [1, 14], "terminal_windows_days": [3], "delay_days": 2}
    )
    assert config.customer_windows_days == (1, 14)
    assert WindowConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["customer_windows_days"] == [1, 14]
    assert config.feature_names[:2] == ("customer_nb_tx_1d", "customer_avg_amount_1d")
    assert config.feature_names[-2:] == ("terminal_nb_tx_3d", "terminal_risk_3d")
    assert hash(config) == hash(WindowConfig.from_dict(config.to_dict()))
    with pytest.raises(InputError) as info:
        WindowConfig.from_dict({"delay_day": 7})
    assert info.value.field == "delay_day"
    with pytest.raises(InputError):
        WindowConfig(customer_windows_days=(0, 7))
    with pytest.raises(InputError):
        WindowConfig(delay_days=-1)


# ------------------------------------------------------------------------ CLI
def test_cli_features_writes_file(tmp_path) -> None:
    src, dst = tmp_path / "tx.parquet", tmp_path / "out" / "features.csv"
    df = random_frame(100, 1).reset_index(drop=True)
    df.to_parquet(src)
    assert cli(["features", "--data", str(src), "--out", str(dst)]) == 0
    written = pd.read_csv(dst)
    # The built-in schema's declaration: the same twelve, in the same order.
    assert list(written.columns) == [*df.columns, *EXPECTED_NAMES]
    expected = add_window_features(df)
    np.testing.assert_allclose(
        written["customer_avg_amount_7d"], expected["customer_avg_amount_7d"]
    )


def test_cli_features_reads_window_config(tmp_path) -> None:
    src, dst, cfg = tmp_path / "tx.parquet", tmp_path / "f.parquet", tmp_path / "train.yaml"
    random_frame(50, 2).reset_index(drop=True).to_parquet(src)
    cfg.write_text(
        "model: vae\nwindows:\n  customer_windows_days: [2]\n  terminal_windows_days: [3]\n"
    )
    assert cli(["features", "--data", str(src), "--out", str(dst), "--config", str(cfg)]) == 0
    assert pd.read_parquet(dst).columns[-4:].tolist() == [
        "customer_nb_tx_2d",
        "customer_avg_amount_2d",
        "terminal_nb_tx_3d",
        "terminal_risk_3d",
    ]


def test_cli_features_missing_column_names_file_and_column(tmp_path, capsys) -> None:
    src = tmp_path / "tx.parquet"
    random_frame(20, 0).drop(columns="terminal_id").reset_index(drop=True).to_parquet(src)
    assert cli(["features", "--data", str(src), "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert str(src) in err and "terminal_id" in err
    assert not (tmp_path / "o.parquet").exists()
