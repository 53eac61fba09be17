"""Spark gives the offline engine's behaviour features (1e-9): the legacy
windows (ties, label delay and unlabelled files included) on a simulated
slice and, where the shared data is present, on a slice of the handbook
file; and every declared aggregate kind on a hostile stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gendetect.data.simulator import simulate_transactions
from gendetect.features.aggregates import AggregateDeclaration
from gendetect.features.behaviour import Behaviour
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig

pytest.importorskip("pyspark")
pytestmark = pytest.mark.integration

HANDBOOK = Path(__file__).resolve().parents[3].parent / "shared/data/handbook/transactions.parquet"
RAW = {"TRANSACTION_ID": "transaction_id", "TX_DATETIME": "timestamp",
       "CUSTOMER_ID": "customer_id", "TERMINAL_ID": "terminal_id", "TX_AMOUNT": "amount",
       "TX_FRAUD": "is_fraud"}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from scoring.spark import spark_session

    session = spark_session("local[2]", "gendetect-spark-test",
                            {"spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _compare(spark: Any, df: pd.DataFrame, config: WindowConfig, tmp_path: Path,
             *, drop_label: bool = False) -> None:
    from scoring.spark import window_features

    path = tmp_path / "tx.parquet"
    # Nanosecond timestamps, as pandas writes them.
    (df.drop(columns=[config.label_col]) if drop_label else df).to_parquet(path, index=False)
    got = window_features(spark.read.parquet(str(path)), config).toPandas()
    got = got.sort_values("transaction_id").reset_index(drop=True)
    expected = add_window_features(df, config).sort_values("transaction_id")
    expected = expected.reset_index(drop=True)
    assert len(got) == len(expected)
    for name in config.feature_names:
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(),
                                   rtol=1e-9, atol=1e-9, err_msg=name)


def _with_ties(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for start in range(10, len(df) - 10, 401):
        df.loc[start : start + 4, "timestamp"] = df.loc[start, "timestamp"]
        df.loc[start : start + 4, "customer_id"] = df.loc[start, "customer_id"]
        df.loc[start : start + 4, "terminal_id"] = df.loc[start, "terminal_id"]
    return df


@pytest.mark.parametrize(
    "config",
    [WindowConfig(), WindowConfig(customer_windows_days=(0.5, 3), terminal_windows_days=(2,),
                                  delay_days=0)],
    ids=["default", "half-day-no-delay"],
)
def test_spark_equals_the_offline_engine(spark: Any, config: WindowConfig,
                                         tmp_path: Path) -> None:
    df = simulate_transactions(n_customers=50, n_terminals=80, days=40, seed=1)
    _compare(spark, _with_ties(df), config, tmp_path)


def test_spark_without_a_label_column(spark: Any, tmp_path: Path) -> None:
    # No labels: terminal risk 0, as the engine with all labels 0.
    df = simulate_transactions(n_customers=30, n_terminals=40, days=20, seed=2).assign(is_fraud=0)
    _compare(spark, df, WindowConfig(), tmp_path, drop_label=True)


@pytest.mark.handbook
@pytest.mark.skipif(not HANDBOOK.is_file(), reason=f"handbook data not found at {HANDBOOK}")
def test_spark_equals_the_offline_engine_on_a_handbook_slice(spark: Any, tmp_path: Path) -> None:
    df = pd.read_parquet(HANDBOOK, columns=list(RAW)).rename(columns=RAW)
    _compare(spark, df.iloc[200_000:230_000].reset_index(drop=True), WindowConfig(), tmp_path)


def test_spark_equals_the_offline_engine_for_every_kind(spark: Any, tmp_path: Path) -> None:
    """All kinds, on a few hundred rows: ties, missing keys and values, a
    pair key, label delay, rows out of order, no integer id (row order)."""
    from scoring.spark import aggregate_features

    windowed = ["count", "first_seen", "label_rate", {"kind": "distinct", "of": "b"},
                *[{"kind": k, "of": "x"} for k in ("sum", "mean", "std", "min", "max", "zscore")]]
    declaration = AggregateDeclaration.from_list(
        [{"key": "a", "windows": ["30m", "6h"], "features": [*windowed, "since_previous"]},
         {"key": "b", "windows": ["2h"], "delay": "1h", "features": windowed},
         {"key": ["a", "b"], "name": "pair", "windows": ["1d"],
          "features": ["first_seen", "count", {"kind": "distinct", "of": "x"}]}],
        entity_columns=["a", "b"], numeric_columns=["x"], all_columns=["a", "b", "x"],
        has_label=True)
    rng = np.random.default_rng(5)
    n = 400
    a = rng.choice(["u", "v", "w", "z"], n).astype(object)
    a[rng.random(n) < 0.1] = None
    b = rng.integers(0, 6, n).astype(object)
    b[rng.random(n) < 0.1] = None
    x = np.round(rng.gamma(2.0, 50.0, n), 2)
    x[rng.random(n) < 0.1] = np.nan
    x[::7] = 1e6 + 0.5  # equal, large values
    label = rng.choice([0.0, 1.0, np.nan], n, p=[0.7, 0.2, 0.1])
    df = pd.DataFrame({
        "timestamp": pd.Timestamp("2024-02-01") + pd.to_timedelta(
            rng.integers(0, 48 * 12, n) * 300, unit="s"),  # 5-minute grid: ties
        "a": a, "b": [None if v is None else f"b{v}" for v in b], "x": x, "is_fraud": label,
        "tag": np.arange(n),
    })
    behaviour = Behaviour(declaration, "timestamp", None, "is_fraud")
    path = tmp_path / "hostile.parquet"
    df.to_parquet(path, index=False)
    got = aggregate_features(spark.read.parquet(str(path)), behaviour).toPandas()
    got = got.sort_values("tag").reset_index(drop=True)
    expected = behaviour.add_to_frame(df)
    assert len(got) == n
    for name in declaration.feature_names:
        np.testing.assert_allclose(got[name].to_numpy(np.float64), expected[name].to_numpy(),
                                   rtol=1e-9, atol=1e-9, err_msg=name)


def test_spark_input_types_are_checked_against_the_schema(spark: Any, tmp_path: Path) -> None:
    from gendetect.errors import InputError
    from gendetect.schema import load_schema
    from scoring.spark.job import check_column_types

    schema = load_schema("transactions")
    tx = simulate_transactions(n_customers=20, n_terminals=40, days=2, seed=3)
    parquet = tmp_path / "tx.parquet"
    tx.to_parquet(parquet)
    check_column_types(spark.read.parquet(str(parquet)), schema, str(parquet))  # as written
    text = tmp_path / "text.parquet"
    tx.assign(amount=tx["amount"].astype(str)).to_parquet(text)
    with pytest.raises(InputError, match="found Spark type string") as info:
        check_column_types(spark.read.parquet(str(text)), schema, str(text))
    assert info.value.field == "amount" and info.value.source == str(text)
    # Epoch numbers in a CSV file: refused, as by the local engine.
    csv = tmp_path / "epochs.csv"
    tx.assign(timestamp=tx["timestamp"].astype("int64") // 10**9).to_csv(csv, index=False)
    frame = spark.read.option("header", True).option("inferSchema", True).csv(str(csv))
    with pytest.raises(InputError) as info:
        check_column_types(frame, schema, str(csv))
    assert info.value.field == "timestamp"
