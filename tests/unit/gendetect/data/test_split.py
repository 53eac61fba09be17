"""Time-based train/test splits and random validation splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.data.split import holdout_split, holdout_windows, time_split, train_validation_split
from gendetect.errors import InputError


@pytest.fixture
def hourly() -> pd.DataFrame:
    """One row per hour for 30 days, starting at 06:00 on 2024-01-01."""
    times = pd.date_range("2024-01-01 06:00", periods=30 * 24, freq="h")
    return pd.DataFrame(
        {"timestamp": times, "x": np.arange(len(times))}, index=np.arange(len(times)) + 100
    )


def test_default_start_is_midnight_of_first_day(hourly: pd.DataFrame) -> None:
    train, test = time_split(hourly, train_days=7, delay_days=7, test_days=7)
    assert train["timestamp"].min() == pd.Timestamp("2024-01-01 06:00")
    assert train["timestamp"].max() == pd.Timestamp("2024-01-07 23:00")
    assert len(train) == 7 * 24 - 6
    assert test["timestamp"].min() == pd.Timestamp("2024-01-15 00:00")
    assert test["timestamp"].max() == pd.Timestamp("2024-01-21 23:00")
    assert len(test) == 7 * 24


def test_boundaries_are_half_open() -> None:
    times = pd.to_datetime(
        [
            "2024-01-01 00:00",
            "2024-01-02 23:59:59",
            "2024-01-03 00:00",  # train end excluded
            "2024-01-03 23:59:59",
            "2024-01-04 00:00",  # delay gap, then test start included
            "2024-01-04 23:59:59",
            "2024-01-05 00:00",
        ],  # test end excluded
        format="ISO8601",
    )
    df = pd.DataFrame({"timestamp": times})
    train, test = time_split(df, train_days=2, delay_days=1, test_days=1)
    assert list(train.index) == [0, 1]
    assert list(test.index) == [4, 5]


def test_explicit_start_and_kept_index(hourly: pd.DataFrame) -> None:
    train, test = time_split(hourly, train_days=1, delay_days=0, test_days=2, start="2024-01-10")
    assert train["timestamp"].min() == pd.Timestamp("2024-01-10")
    assert len(train) == 24 and len(test) == 48
    assert test["timestamp"].min() == pd.Timestamp("2024-01-11")
    pd.testing.assert_frame_equal(train, hourly.loc[train.index])


def test_custom_time_column_and_timezone(hourly: pd.DataFrame) -> None:
    df = hourly.rename(columns={"timestamp": "when"})
    df["when"] = df["when"].dt.tz_localize("UTC")
    train, _ = time_split(
        df, time_col="when", train_days=1, delay_days=0, test_days=1, start="2024-01-02"
    )
    assert train["when"].min() == pd.Timestamp("2024-01-02", tz="UTC")


def test_split_errors(hourly: pd.DataFrame) -> None:
    with pytest.raises(InputError) as info:
        time_split(hourly, time_col="nope", train_days=1, delay_days=0, test_days=1)
    assert info.value.field == "nope"
    with pytest.raises(InputError):
        time_split(hourly, time_col="x", train_days=1, delay_days=0, test_days=1)
    with pytest.raises(ValueError):
        time_split(hourly, train_days=0, delay_days=0, test_days=1)
    with pytest.raises(ValueError):
        time_split(hourly, train_days=1, delay_days=-1, test_days=1)


def test_holdout_split_counts_from_the_last_day(hourly: pd.DataFrame) -> None:
    # Data: 2024-01-01 06:00 .. 2024-01-31 05:00. Held out: the last 7
    # calendar days (Jan 25..31, the last one partial); delay: Jan 18..24;
    # train: Jan 3..17 after skipping two days.
    train, test = holdout_split(hourly, holdout_days=7, delay_days=7, skip_days=2)
    assert train["timestamp"].min() == pd.Timestamp("2024-01-03 00:00")
    assert train["timestamp"].max() == pd.Timestamp("2024-01-17 23:00")
    assert len(train) == 15 * 24
    assert test["timestamp"].min() == pd.Timestamp("2024-01-25 00:00")
    assert test["timestamp"].max() == hourly["timestamp"].max()
    assert len(test) == 6 * 24 + 6
    pd.testing.assert_frame_equal(test, hourly.loc[test.index])  # original index kept


def test_holdout_split_without_skip_starts_at_the_first_row(hourly: pd.DataFrame) -> None:
    train, test = holdout_split(hourly, holdout_days=3, delay_days=0)
    assert train.index[0] == hourly.index[0]
    # Every row is in train or test when there is no delay.
    assert len(train) + len(test) == len(hourly)
    windows = holdout_windows(hourly["timestamp"], holdout_days=3, delay_days=0)
    assert windows.test_start == pd.Timestamp("2024-01-29")
    assert windows.train_days == 28 and windows.delay_days == 0


def test_holdout_split_is_a_time_split(hourly: pd.DataFrame) -> None:
    expected = time_split(hourly, train_days=15, delay_days=7, test_days=7, start="2024-01-03")
    got = holdout_split(hourly, holdout_days=7, delay_days=7, skip_days=2)
    for a, b in zip(got, expected, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_holdout_split_with_no_training_days_left(hourly: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="no training days") as info:
        holdout_split(hourly, holdout_days=21, delay_days=10)
    assert info.value.field == "timestamp"
    with pytest.raises(ValueError):
        holdout_split(hourly, holdout_days=0, delay_days=0)


def test_validation_split_partitions_rows() -> None:
    train, val = train_validation_split(1000, validation_fraction=0.2, seed=5)
    assert len(val) == 200 and len(train) == 800
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()


def test_validation_split_is_deterministic() -> None:
    a = train_validation_split(500, seed=1)
    b = train_validation_split(500, seed=1)
    c = train_validation_split(500, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize(
    ("n_rows", "fraction", "n_val"),
    [(0, 0.1, 0), (1, 0.5, 0), (2, 0.01, 1), (5, 0.0, 0), (3, 0.9, 2)],
)
def test_validation_split_edge_sizes(n_rows: int, fraction: float, n_val: int) -> None:
    train, val = train_validation_split(n_rows, validation_fraction=fraction)
    assert len(val) == n_val and len(train) == n_rows - n_val


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_validation_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError):
        train_validation_split(10, validation_fraction=fraction)
