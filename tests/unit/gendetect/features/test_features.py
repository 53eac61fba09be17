"""Derived features, timestamp conversion, the feature pipeline (frame path ==
record path) and the robust scaler."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gendetect.features import derived
from gendetect.features.pipeline import FeaturePipeline
from gendetect.features.scaling import RobustScaler
from gendetect.schema import Schema, load_schema


def _ns(*stamps: str) -> np.ndarray:
    return np.array([pd.Timestamp(s).value for s in stamps], dtype=np.int64)


# ------------------------------------------------------------ derived features
def test_hour_sin_cos_at_known_times() -> None:
    ts = _ns(
        "2024-03-05 00:00:00", "2024-03-05 06:00:00", "2024-03-05 12:00:00", "2024-03-05 18:00:00"
    )
    np.testing.assert_allclose(derived.hour_sin(ts), [0.0, 1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(derived.hour_cos(ts), [1.0, 0.0, -1.0, 0.0], atol=1e-12)


def test_hour_encoding_is_cyclic_and_ignores_the_date() -> None:
    late, early = _ns("2024-03-05 23:59:59", "2024-03-06 00:00:01")
    # 23:59:59 and 00:00:01 are two seconds apart on the circle.
    dist = np.hypot(
        derived.hour_sin(np.array([late])) - derived.hour_sin(np.array([early])),
        derived.hour_cos(np.array([late])) - derived.hour_cos(np.array([early])),
    )
    assert dist[0] == pytest.approx(2 * np.pi * 2 / 86_400, rel=1e-6)
    same_time = _ns("2019-07-14 15:30:00", "2024-12-31 15:30:00", "1965-02-01 15:30:00")
    assert np.ptp(derived.hour_sin(same_time)) < 1e-12
    assert np.ptp(derived.hour_cos(same_time)) < 1e-12


def test_weekend_on_known_days() -> None:
    # 2024-01-05 Fri, 06 Sat, 07 Sun, 08 Mon; 1969-12-27 was a Saturday.
    ts = _ns(
        "2024-01-05 23:59:59",
        "2024-01-06 00:00:00",
        "2024-01-07 23:59:59",
        "2024-01-08 00:00:00",
        "1969-12-27 12:00:00",
        "1969-12-29 12:00:00",
    )
    np.testing.assert_array_equal(derived.weekend(ts), [0, 1, 1, 0, 1, 0])


def test_weekend_agrees_with_pandas_over_a_year() -> None:
    stamps = pd.date_range("2023-06-01", periods=400 * 24, freq="h")
    expected = (stamps.dayofweek >= 5).astype(float)
    np.testing.assert_array_equal(derived.weekend(stamps.as_unit("ns").asi8), expected)


def test_night_boundary() -> None:
    ts = _ns(
        "2024-01-01 00:00:00",
        "2024-01-01 06:59:59",
        "2024-01-01 07:00:00",
        "2024-01-01 23:59:59",
        "1969-12-31 03:00:00",
        "1969-12-31 22:00:00",
    )
    np.testing.assert_array_equal(derived.night(ts), [1, 1, 0, 0, 1, 0])


def test_log1p() -> None:
    values = np.array([0.0, 1.0, np.e - 1.0, 220.5, 1e6])
    np.testing.assert_allclose(derived.log1p(values), np.log1p(values), rtol=1e-15)
    np.testing.assert_allclose(derived.log1p(np.array([3, 10])), np.log1p([3.0, 10.0]))


# ---------------------------------------------------------------- timestamps
# ------------------------------------------------------------------ pipeline
def _numeric_frame(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.lognormal(size=n),
            "c": rng.integers(0, 5, size=n),
        }
    )


def test_numeric_pipeline_frame_and_record_paths_agree() -> None:
    df = _numeric_frame()
    schema = load_schema("numeric").resolve_columns(list(df.columns))
    pipe = FeaturePipeline(schema)
    assert pipe.feature_names == ["a", "b", "c"]
    from_frame = pipe.transform_frame(df)
    from_records = pipe.transform(pipe.columns_from_records(df.to_dict("records")))
    np.testing.assert_array_equal(from_frame, from_records)
    np.testing.assert_array_equal(from_frame, df.to_numpy(dtype=np.float64))


def test_feature_names_order_with_categories_and_derived() -> None:
    schema = Schema.from_dict(
        {
            "name": "mixed",
            "fields": [
                {"name": "ts", "kind": "timestamp"},
                {"name": "x", "kind": "numeric"},
                {"name": "channel", "kind": "categorical", "categories": ["web", "pos"]},
                {"name": "present", "kind": "boolean"},
                {"name": "note", "kind": "numeric", "feature": False},
            ],
            "derived": [
                {"name": "log_x", "op": "log1p", "source": "x"},
                {"name": "night", "op": "night", "source": "ts"},
            ],
        }
    )
    pipe = FeaturePipeline(schema)
    assert pipe.feature_names == ["x", "channel=web", "channel=pos", "present", "log_x", "night"]
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-01 03:00", "2024-01-01 12:00", "2024-01-02 06:59"]),
            "x": [0.0, 2.0, 9.0],
            "channel": ["pos", "web", "pos"],
            "present": [1, 0, 1],
            "note": [5.0, 6.0, 7.0],
        }
    )
    x = pipe.transform_frame(df)
    expected = np.array(
        [
            [0.0, 0.0, 1.0, 1.0, np.log1p(0.0), 1.0],
            [2.0, 1.0, 0.0, 0.0, np.log1p(2.0), 0.0],
            [9.0, 0.0, 1.0, 1.0, np.log1p(9.0), 1.0],
        ]
    )
    np.testing.assert_allclose(x, expected, rtol=1e-15)
    records = df.to_dict("records")
    np.testing.assert_array_equal(pipe.transform(pipe.columns_from_records(records)), x)


@pytest.fixture(scope="module")
def tx_pipeline() -> FeaturePipeline:
    return FeaturePipeline(load_schema("transactions"))


@pytest.fixture(scope="module")
def tx_with_windows(small_transactions: pd.DataFrame, tx_pipeline: FeaturePipeline) -> pd.DataFrame:
    return tx_pipeline.with_window_features(small_transactions)


def test_transactions_feature_names_order(tx_pipeline: FeaturePipeline) -> None:
    schema = tx_pipeline.schema
    window_names = tx_pipeline.window_feature_names
    assert window_names[:2] == ["customer_nb_tx_1d", "customer_avg_amount_1d"]
    field_names = [f.name for f in schema.feature_fields]
    derived = [d.name for d in schema.derived]
    assert tx_pipeline.feature_names == field_names + derived + window_names
    assert len(set(tx_pipeline.feature_names)) == len(tx_pipeline.feature_names)


def test_transactions_matrix_columns_match_their_names(
    small_transactions: pd.DataFrame,
    tx_pipeline: FeaturePipeline,
    tx_with_windows: pd.DataFrame,
) -> None:
    x = tx_pipeline.transform_frame(small_transactions)
    col = {name: x[:, i] for i, name in enumerate(tx_pipeline.feature_names)}
    ts = small_transactions["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    amount = small_transactions["amount"].to_numpy()
    np.testing.assert_allclose(col["log_amount"], np.log1p(amount), rtol=1e-15)
    hours = small_transactions["timestamp"].dt.hour.to_numpy()
    np.testing.assert_array_equal(col["is_night"], (hours <= 6).astype(float))
    np.testing.assert_array_equal(col["hour_sin"], derived.hour_sin(ts))
    for name in tx_pipeline.window_feature_names:
        np.testing.assert_array_equal(col[name], tx_with_windows[name].to_numpy())


@pytest.mark.parametrize("timestamp_form", ["datetime", "iso", "iso_offset", "int_ns"])
def test_transactions_frame_and_record_paths_agree(
    small_transactions: pd.DataFrame,
    tx_pipeline: FeaturePipeline,
    tx_with_windows: pd.DataFrame,
    timestamp_form: str,
) -> None:
    rows = small_transactions.sample(300, random_state=1)
    from_frame = tx_pipeline.transform_frame(small_transactions)[
        small_transactions.index.get_indexer(rows.index)
    ]
    records = rows.drop(columns=["is_fraud", "fraud_scenario"]).to_dict("records")
    for r in records:
        ts = r["timestamp"]
        if timestamp_form == "iso":
            r["timestamp"] = ts.isoformat()
        elif timestamp_form == "iso_offset":
            r["timestamp"] = ts.tz_localize("UTC").tz_convert("Asia/Tokyo").isoformat()
        elif timestamp_form == "int_ns":
            r["timestamp"] = int(ts.value)
        else:
            r["timestamp"] = ts.to_pydatetime()
    windows = tx_with_windows.loc[rows.index, tx_pipeline.window_feature_names]
    from_records = tx_pipeline.transform(
        tx_pipeline.columns_from_records(records, windows.to_dict("records"))
    )
    np.testing.assert_array_equal(from_records, from_frame)


def test_record_path_needs_window_features(
    small_transactions: pd.DataFrame, tx_pipeline: FeaturePipeline
) -> None:
    records = small_transactions.head(2).to_dict("records")
    with pytest.raises(ValueError, match="window features"):
        tx_pipeline.columns_from_records(records)


def test_frame_with_precomputed_windows_is_not_recomputed(
    small_transactions: pd.DataFrame,
    tx_pipeline: FeaturePipeline,
    tx_with_windows: pd.DataFrame,
) -> None:
    # A file from `gendetect features` carries windows computed over a longer
    # history: they must be used as they are, not recomputed over the file.
    tail = tx_with_windows.tail(100)
    x = tx_pipeline.transform_frame(tail)
    full = tx_pipeline.transform_frame(small_transactions)[-100:]
    np.testing.assert_array_equal(x, full)


# -------------------------------------------------------------------- scaler
def _heavy_tailed(n: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(42)
    return np.column_stack(
        [
            rng.lognormal(3.0, 1.5, size=n),  # amounts
            rng.pareto(1.1, size=n) * 10,  # counts with a very heavy tail
            rng.standard_t(2, size=n),  # symmetric heavy tails
            rng.integers(0, 2, size=n).astype(float),  # binary
            np.full(n, 7.0),  # constant
        ]
    )


def test_robust_scaler_keeps_order_and_bounds_outliers() -> None:
    x = _heavy_tailed()
    scaler = RobustScaler(soft_limit=5.0).fit(x)
    z = scaler.transform(x)
    assert np.isfinite(z).all()
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        # Monotone: sorting the input sorts the output, strictly where the input grows.
        steps_in, steps_out = np.diff(x[order, j]), np.diff(z[order, j])
        assert (steps_out >= 0).all()
        assert (steps_out[steps_in > 0] > 0).all()
    # Centred on the median, interquartile range 1.349 (that of a unit normal).
    assert np.median(z[:, 0]) == pytest.approx(0.0, abs=1e-9)
    q25, q75 = np.percentile(z[:, 0], [25, 75])
    assert q75 - q25 == pytest.approx(1.349, rel=1e-6)
    # The extreme Pareto values are compressed logarithmically, not linearly.
    raw_z = (x[:, 1] - scaler.center_[1]) / scaler.scale_[1]
    assert raw_z.max() > 100
    assert z[:, 1].max() < scaler.soft_limit + np.log1p(raw_z.max()) + 1e-9
    assert z[:, 1].max() < 20
    # Binary and constant columns: finite, no division by zero.
    assert set(np.unique(z[:, 3]).round(6)) == set(
        ((np.array([0.0, 1.0]) - scaler.center_[3]) / scaler.scale_[3]).round(6)
    )
    np.testing.assert_array_equal(z[:, 4], 0.0)


def test_robust_scaler_transforms_new_extremes_monotonically() -> None:
    scaler = RobustScaler().fit(_heavy_tailed())
    probe = np.linspace(-1e6, 1e6, 2001)[:, None] * np.ones((1, 5))
    z = scaler.transform(probe)
    assert (np.diff(z[:, :4], axis=0) > 0).all()


def test_robust_scaler_round_trip() -> None:
    x = _heavy_tailed()
    scaler = RobustScaler(soft_limit=3.0).fit(x)
    again = RobustScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.soft_limit == 3.0
    np.testing.assert_array_equal(again.transform(x), scaler.transform(x))


def test_unfitted_scaler_refuses_to_transform() -> None:
    with pytest.raises(RuntimeError):
        RobustScaler().transform(np.zeros((2, 2)))
