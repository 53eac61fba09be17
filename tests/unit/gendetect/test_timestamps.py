"""gendetect.timestamps: the one conversion of times to int64 ns UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from gendetect.timestamps import NS_PER_DAY, column_to_ns, days_to_ns, to_ns


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 3, 10, 12, 34, 56, 789_123),
        datetime(1970, 1, 1),
        datetime(1969, 7, 20, 20, 17, 40, 1),
        datetime(2024, 3, 10, 1, 59, 59, tzinfo=ZoneInfo("America/New_York")),
        datetime(2024, 3, 10, 3, 0, 0, tzinfo=ZoneInfo("America/New_York")),  # after DST
        datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2024, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
    ],
)
def test_datetime_matches_pandas(value: datetime) -> None:
    assert to_ns(value) == pd.Timestamp(value).value


def test_column_for_common_forms() -> None:
    naive = pd.Series(
        pd.to_datetime(["2024-01-01 10:00:00", "2024-06-30 23:59:59.5"], format="ISO8601")
    )
    expected = np.array([pd.Timestamp(t).value for t in naive])
    np.testing.assert_array_equal(column_to_ns(naive), expected)
    # Other resolutions than ns convert exactly.
    np.testing.assert_array_equal(column_to_ns(naive.astype("datetime64[us]")), expected)
    np.testing.assert_array_equal(column_to_ns(naive.astype("datetime64[ms]")), expected)
    # ISO strings, with and without an offset.
    iso = ["2024-01-01T10:00:00", "2024-06-30T23:59:59.5"]
    np.testing.assert_array_equal(column_to_ns(iso), expected)
    shifted = ["2024-01-01T12:00:00+02:00", "2024-06-30T19:59:59.5-04:00"]
    np.testing.assert_array_equal(column_to_ns(shifted), expected)
    # tz-aware datetime64 in a local zone is converted to UTC.
    paris = naive.dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")
    np.testing.assert_array_equal(column_to_ns(paris), expected)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 3, 1, 12, 0, 0, 250_000),
        datetime(2024, 3, 1, 13, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1))),
        datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC),
        np.datetime64("2024-03-01T12:00:00.250000000"),
        pd.Timestamp("2024-03-01 12:00:00.25"),
        "2024-03-01T12:00:00.25",
        "2024-03-01T12:00:00.250Z",
        "2024-03-01T14:00:00.25+02:00",
        1709294400.25,
    ],
)
def test_timestamp_forms(value: object) -> None:
    assert to_ns(value) == pd.Timestamp("2024-03-01 12:00:00.25").value


def test_epoch_seconds_integer() -> None:
    assert to_ns(1709294400) == pd.Timestamp("2024-03-01 12:00:00").value


def test_datetime64_beyond_2262_is_exact() -> None:
    # numpy's own cast to [ns] wraps around silently there.
    value = np.datetime64("2300-01-01T00:00:00", "s")
    assert to_ns(value) == int(value.astype(np.int64)) * 1_000_000_000


@pytest.mark.parametrize("value", [pd.NaT, np.datetime64("NaT"), True, float("nan"), object()])
def test_not_a_timestamp_raises(value: object) -> None:
    with pytest.raises(ValueError):
        to_ns(value)


def test_days_to_ns() -> None:
    assert days_to_ns(1) == NS_PER_DAY
    assert days_to_ns(0.5) == NS_PER_DAY // 2


def test_column_and_scalar_agree() -> None:
    values = ["2024-01-01T10:00:00", "1969-12-31T23:59:59.999999999", "2262-04-11T00:00:00"]
    assert column_to_ns(values).tolist() == [to_ns(v) for v in values]


@pytest.mark.parametrize("column", [[0, 1_709_294_400], [1.5e9, 1.6e9], [True, False]])
def test_a_column_of_numbers_is_not_read_as_epochs(column: list[object]) -> None:
    with pytest.raises(TypeError, match="not numbers"):
        column_to_ns(column)
