"""The transaction simulator: shape, determinism and the three fraud scenarios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.cli import main as cli
from gendetect.data.population import reachable_terminals
from gendetect.data.scenarios import SCENARIO1_THRESHOLD, SCENARIO3_FACTOR
from gendetect.data.simulator import COLUMNS, compromise_cards, simulate_transactions

DTYPES = {
    "transaction_id": "int64",
    "timestamp": "datetime64[ns]",
    "customer_id": "int64",
    "terminal_id": "int64",
    "amount": "float64",
    "is_fraud": "int64",
    "fraud_scenario": "int64",
}


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    """~30 days x 2000 customers (terminals in the handbook's 1:2 ratio)."""
    return simulate_transactions(n_customers=2000, n_terminals=4000, days=30, seed=7)


def _small(**kwargs: object) -> pd.DataFrame:
    args = {"n_customers": 200, "n_terminals": 400, "days": 10, "seed": 3} | kwargs
    return simulate_transactions(**args)  # type: ignore[arg-type]


def test_same_seed_gives_identical_frames() -> None:
    pd.testing.assert_frame_equal(_small(), _small())


def test_different_seed_gives_different_frames() -> None:
    assert not _small(seed=3).equals(_small(seed=4))


def test_columns_and_dtypes(month: pd.DataFrame) -> None:
    assert tuple(month.columns) == COLUMNS
    assert {c: str(t) for c, t in month.dtypes.items()} == DTYPES
    assert month["timestamp"].dt.tz is None


def test_ids_are_positions_and_times_sorted(month: pd.DataFrame) -> None:
    np.testing.assert_array_equal(month["transaction_id"], np.arange(len(month)))
    assert month["timestamp"].is_monotonic_increasing
    assert month.index.equals(pd.RangeIndex(len(month)))


def test_times_fall_inside_the_simulated_days(month: pd.DataFrame) -> None:
    start = pd.Timestamp("2024-01-01")
    assert month["timestamp"].min() >= start
    assert month["timestamp"].max() < start + pd.Timedelta(days=30)
    # Times of day centre on noon.
    assert 11 <= month["timestamp"].dt.hour.median() <= 13


def test_amounts_are_positive_cents(month: pd.DataFrame) -> None:
    cents = month["amount"].to_numpy() * 100
    assert (month["amount"] > 0).all()
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)


def test_label_matches_scenario(month: pd.DataFrame) -> None:
    np.testing.assert_array_equal(month["is_fraud"], (month["fraud_scenario"] > 0).astype(int))
    assert set(month["fraud_scenario"].unique()) == {0, 1, 2, 3}


def test_fraud_rate_is_in_a_sane_band(month: pd.DataFrame) -> None:
    assert 0.002 <= month["is_fraud"].mean() <= 0.03


def test_scenario1_is_exactly_the_large_profile_amounts(month: pd.DataFrame) -> None:
    large = month["amount"] > SCENARIO1_THRESHOLD
    scenario = month["fraud_scenario"]
    # Everything above the threshold is fraud ...
    assert (month.loc[large, "is_fraud"] == 1).all()
    # ... and, scenario 3 (inflated amounts) aside, it is scenario 1.
    assert (scenario[large & (scenario != 3)] == 1).all()
    assert (month.loc[scenario == 1, "amount"] > SCENARIO1_THRESHOLD).all()


def test_scenario2_hits_few_terminals_with_normal_amounts(month: pd.DataFrame) -> None:
    s2 = month[month["fraud_scenario"] == 2]
    # At most 2 compromised terminals per day, out of 4000.
    assert 0 < s2["terminal_id"].nunique() <= 2 * 30
    assert (s2["amount"] <= SCENARIO1_THRESHOLD).all()


def test_scenario2_terminals_are_fraudulent_throughout(month: pd.DataFrame) -> None:
    s2 = month[month["fraud_scenario"] == 2]
    span = s2.groupby("terminal_id")["timestamp"].agg(["min", "max"])
    at_s2 = month.join(span, on="terminal_id", how="inner")
    during = at_s2[(at_s2["timestamp"] >= at_s2["min"]) & (at_s2["timestamp"] <= at_s2["max"])]
    # Inside a compromise every transaction on the terminal is fraud.
    assert during["is_fraud"].mean() > 0.95


def test_scenario3_inflates_about_a_third_by_five(month: pd.DataFrame) -> None:
    genuine_mean = month[month["is_fraud"] == 0].groupby("customer_id")["amount"].mean()
    s3 = month[month["fraud_scenario"] == 3]
    ratio = s3["amount"] / s3["customer_id"].map(genuine_mean)
    assert 3.5 <= ratio.median() <= 7.0

    # Within two weeks of a customer's first scenario-3 fraud, about 1/3 of
    # their transactions are scenario-3 frauds.
    first = s3.groupby("customer_id")["timestamp"].min().dt.normalize().rename("first")
    hit = month.join(first, on="customer_id", how="inner")
    window = hit[
        (hit["timestamp"] >= hit["first"])
        & (hit["timestamp"] < hit["first"] + pd.Timedelta(days=14))
    ]
    assert 0.2 <= (window["fraud_scenario"] == 3).mean() <= 0.5


def test_reachable_terminals_are_strictly_within_radius() -> None:
    customers = np.array([[0.0, 0.0], [50.0, 50.0], [99.0, 1.0]])
    terminals = np.array([[1.0, 1.0], [3.0, 4.0], [50.0, 54.0], [49.0, 50.0], [90.0, 90.0]])
    indptr, reachable = reachable_terminals(customers, terminals, 5.0)
    # (3, 4) is at distance exactly 5: out, as in the handbook.
    assert [list(reachable[indptr[i] : indptr[i + 1]]) for i in range(3)] == [[0], [2, 3], []]


def test_customers_without_terminals_make_no_transactions() -> None:
    df = simulate_transactions(n_customers=50, n_terminals=1, days=5, radius=1e-6)
    assert len(df) == 0
    assert {c: str(t) for c, t in df.dtypes.items()} == DTYPES


def test_start_date_sets_the_first_day() -> None:
    df = _small(start_date="2018-04-01T00:00:00+02:00")
    # Converted to naive UTC midnight of that day.
    assert df["timestamp"].min().normalize() == pd.Timestamp("2018-03-31")


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"n_customers": 0}, {"radius": 0.0}])
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _small(**kwargs)


def test_cli_writes_the_file(tmp_path, capsys) -> None:
    out = tmp_path / "sub" / "tx.parquet"
    argv = [
        "simulate",
        "--days",
        "3",
        "--customers",
        "100",
        "--terminals",
        "200",
        "--out",
        str(out),
    ]
    assert cli(argv) == 0
    df = pd.read_parquet(out)
    line = capsys.readouterr().out.strip()
    assert str(len(df)) in line and str(out) in line and "fraud rate" in line


def test_cli_rejects_unknown_output_format(tmp_path, capsys) -> None:
    out = tmp_path / "tx.json"
    assert cli(["simulate", "--days", "1", "--out", str(out)]) == 2
    assert "tx.json" in capsys.readouterr().err
    assert not out.exists()


def test_compromise_cards_inflates_a_third_of_each_cards_later_genuine_transactions() -> None:
    base = simulate_transactions(n_customers=50, n_terminals=100, days=20, seed=1)
    since = pd.Timestamp("2024-01-11")
    cards = base["customer_id"].unique()[:5]
    out = compromise_cards(base, cards, since, seed=0)

    changed = out["amount"].to_numpy() != base["amount"].to_numpy()
    assert (out.loc[changed, "fraud_scenario"] == 3).all()
    assert (out.loc[changed, "is_fraud"] == 1).all()
    inflated = np.round(base.loc[changed, "amount"] * SCENARIO3_FACTOR, 2)
    assert np.allclose(out.loc[changed, "amount"], inflated)
    eligible = (
        (base["timestamp"] >= since)
        & base["customer_id"].isin(cards)
        & (base["fraud_scenario"] == 0)
    )
    assert not (changed & ~eligible.to_numpy()).any()
    per_card = eligible.groupby(base["customer_id"]).sum()
    got = pd.Series(changed).groupby(base["customer_id"].to_numpy()).sum()
    for card in cards:
        assert got[card] == per_card[card] // 3
    # The input frame is left as it was.
    again = simulate_transactions(n_customers=50, n_terminals=100, days=20, seed=1)
    assert base["amount"].equals(again["amount"])
