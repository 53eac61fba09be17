"""Declared behaviour features through the schema: parsing and its errors
(one line naming the file and the key, exit 2), the legacy `windows:` block
as a declaration, the pipeline on a rich declaration with missing keys,
chunked streams, explanation reasons per group, `gendetect features`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gendetect.cli import main as cli
from gendetect.errors import InputError
from gendetect.features.behaviour import AggregateHistory, Behaviour
from gendetect.features.pipeline import FeaturePipeline, split_at_last_time
from gendetect.features.window_engine import window_sums
from gendetect.features.windows import WindowConfig, kernel_windows
from gendetect.schema import Schema, load_schema
from gendetect.timestamps import column_to_ns

FIELDS = [
    {"name": "tx", "kind": "id"},
    {"name": "ts", "kind": "timestamp"},
    {"name": "card", "kind": "entity"},
    {"name": "device", "kind": "entity", "required": False},
    {"name": "merchant", "kind": "entity"},
    {"name": "amount", "kind": "numeric"},
    {"name": "fraud", "kind": "label", "required": False},
]
RICH = [
    {"key": "card", "windows": ["10m", "1h", "1d"],
     "features": ["count", {"kind": "mean", "of": "amount"}, {"kind": "std", "of": "amount"},
                  {"kind": "zscore", "of": "amount"}, {"kind": "distinct", "of": "merchant"}]},
    {"key": "device", "windows": ["1h"], "reason": "device_velocity",
     "features": ["count", {"kind": "distinct", "of": "card"}]},
    {"key": ["card", "merchant"], "name": "card_merchant", "windows": ["7d"],
     "features": ["first_seen"]},
    {"key": "merchant", "windows": ["1d"], "delay": "1h", "features": ["label_rate"]},
    {"key": "card", "name": "card_gap", "horizon": "2d", "features": ["since_previous"]},
]


def _schema(aggregates: object = RICH, **extra: object) -> Schema:
    return Schema.from_dict({"name": "rich", "fields": FIELDS, "aggregates": aggregates, **extra})


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2024-05-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 3 * 86_400, n)) // 60 * 60, unit="s")  # ties on the minute
    device = rng.integers(0, 15, n).astype(object)
    device[rng.random(n) < 0.2] = None  # devices often unknown
    return pd.DataFrame({
        "tx": rng.permutation(n).astype(np.int64) + 100, "ts": times,
        "card": rng.integers(0, 20, n), "device": device,
        "merchant": [f"m{i}" for i in rng.integers(0, 12, n)],
        "amount": np.round(rng.gamma(2.0, 30.0, n), 2),
        "fraud": (rng.random(n) < 0.1).astype(float),
    })


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("aggregates", "field"),
    [([{"key": "nope", "windows": ["1h"], "features": ["count"]}], "aggregates[0].key"),
     ([{"key": "card", "windows": ["1x"], "features": ["count"]}], "aggregates[0].windows"),
     ([{"key": "card", "windows": ["1h"], "features": [{"kind": "mean", "of": "merchant"}]}],
      "aggregates[0].features[0].of"),
     ([{"key": "card", "features": ["count"]}], "aggregates[0].windows"),
     ("not a list", "aggregates")],
)
def test_bad_declarations_name_the_key(aggregates: object, field: str) -> None:
    with pytest.raises(InputError) as info:
        _schema(aggregates)
    assert info.value.field == field


def test_windows_and_aggregates_together_are_refused() -> None:
    with pytest.raises(InputError) as info:
        _schema(windows={"delay_days": 7})
    assert info.value.field == "windows"


def test_schema_round_trip_keeps_the_declaration() -> None:
    schema = _schema()
    again = Schema.from_dict(yaml.safe_load(schema.to_yaml()))
    assert again.aggregates == schema.aggregates
    builtin = load_schema("transactions")
    assert Schema.from_dict(builtin.to_dict()).aggregates == builtin.aggregates


def _bad_schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "fields": FIELDS, "aggregates": [
        {"key": "customer", "windows": ["1h"], "features": ["count"]}]}))
    return path


def test_features_cli_bad_schema_one_line_exit_2(tmp_path: Path, capsys) -> None:
    data = tmp_path / "tx.parquet"
    _frame(30, 0).to_parquet(data)
    bad = _bad_schema_file(tmp_path)
    code = cli(["features", "--data", str(data), "--out", str(tmp_path / "o.parquet"),
                "--schema", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(bad) in err[0] and "aggregates[0].key" in err[0] and "Traceback" not in err[0]


def test_train_with_a_bad_schema_one_line_exit_2(tmp_path: Path, gendetect_home: Path,
                                                 capsys) -> None:
    data = tmp_path / "tx.parquet"
    _frame(30, 0).to_parquet(data)
    bad = _bad_schema_file(tmp_path)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "vae", "schema": str(bad)}))
    code = cli(["train", "--config", str(config), "--data", str(data), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(bad) in err[0] and "aggregates[0].key" in err[0]


def test_features_cli_computes_a_schema_declaration(tmp_path: Path) -> None:
    data, out, schema_path = tmp_path / "tx.parquet", tmp_path / "f.parquet", tmp_path / "s.yaml"
    df = _frame(200, 1)
    df.to_parquet(data)
    schema_path.write_text(_schema().to_yaml())
    assert cli(["features", "--data", str(data), "--out", str(out),
                "--schema", str(schema_path)]) == 0
    written = pd.read_parquet(out)
    behaviour = Behaviour.from_schema(_schema())
    assert behaviour is not None
    expected = behaviour.add_to_frame(df)
    names = list(behaviour.feature_names)
    assert sorted(names) == sorted(_schema().aggregates.feature_names)  # type: ignore[union-attr]
    assert list(written.columns) == [*df.columns, *names]
    pd.testing.assert_frame_equal(written[names], expected[names])


# ------------------------------------------------------------------- legacy
def test_legacy_windows_become_the_equivalent_declaration() -> None:
    """A `windows:` block computes through the aggregate engine with its
    legacy names and order, and equals the legacy kernels."""
    config = WindowConfig(customer_windows_days=(0.5, 3), terminal_windows_days=(2,),
                          delay_days=1)
    behaviour = Behaviour.from_window_config(config)
    assert behaviour.feature_names == config.feature_names
    assert behaviour.window_config == config
    df = _frame(400, 2).rename(columns={"tx": "transaction_id", "ts": "timestamp",
                                        "card": "customer_id", "merchant": "terminal_id",
                                        "fraud": "is_fraud"})
    out = behaviour.add_to_frame(df)
    time_ns = column_to_ns(df["timestamp"])
    order = df["transaction_id"].to_numpy()
    customer = pd.factorize(df["customer_id"])[0]
    counts, sums = window_sums(customer, time_ns, order, df["amount"].to_numpy(),
                               kernel_windows(config)[0])
    np.testing.assert_array_equal(out["customer_nb_tx_0p5d"], counts[0])
    np.testing.assert_allclose(out["customer_avg_amount_3d"], sums[1] / counts[1], rtol=1e-12)
    terminal = pd.factorize(df["terminal_id"])[0]
    t_counts, frauds = window_sums(terminal, time_ns, order, df["is_fraud"].to_numpy(),
                                   kernel_windows(config)[1])
    np.testing.assert_array_equal(out["terminal_nb_tx_2d"], t_counts[0])
    risk = np.divide(frauds[0], t_counts[0], out=np.zeros(len(df)), where=t_counts[0] > 0)
    np.testing.assert_allclose(out["terminal_risk_2d"], risk, rtol=1e-12)


def test_the_builtin_declaration_speaks_window_config() -> None:
    pipeline = FeaturePipeline(load_schema("transactions"))
    assert pipeline.window_config == WindowConfig()
    assert FeaturePipeline(_schema()).window_config is None


# ----------------------------------------------------------------- pipeline
def test_pipeline_rich_declaration_with_missing_keys() -> None:
    schema = _schema()
    pipeline = FeaturePipeline(schema)
    df = _frame(300, 3)
    cols, from_batch = pipeline.batch_columns(df)
    assert from_batch
    names = pipeline.window_feature_names
    # Window by window within a group; since_previous after the windows.
    assert names[:5] == ["card_count_10m", "card_mean_amount_10m", "card_std_amount_10m",
                         "card_zscore_amount_10m", "card_distinct_merchant_10m"]
    assert sorted(names) == sorted(schema.aggregates.feature_names)  # type: ignore[union-attr]
    no_device = df["device"].isna().to_numpy()
    assert np.isnan(cols["device_count_1h"][no_device]).all()
    assert np.isfinite(cols["device_count_1h"][~no_device]).all()
    assert np.isfinite(cols["card_zscore_amount_1d"]).all()
    matrix = pipeline.transform(cols)
    assert matrix.shape == (len(df), len(pipeline.feature_names))


def test_chunks_equal_the_whole_stream() -> None:
    behaviour = Behaviour.from_schema(_schema())
    assert behaviour is not None
    df = _frame(600, 4).sort_values("ts", kind="stable").reset_index(drop=True)
    whole = behaviour.add_to_frame(df)
    history = AggregateHistory(behaviour)
    parts, start = [], 0
    for stop in (150, 320, 480, len(df)):
        chunk = df.iloc[start:stop]
        cut = split_at_last_time(column_to_ns(chunk["ts"])) if stop < len(df) else len(chunk)
        chunk = chunk.iloc[:cut]
        parts.append(pd.DataFrame(history.features(chunk, column_to_ns(chunk["ts"])),
                                  index=chunk.index))
        start += cut
    streamed = pd.concat(parts)
    assert len(streamed) == len(df)
    names = list(behaviour.feature_names)
    np.testing.assert_allclose(streamed[names].to_numpy(), whole.loc[streamed.index, names],
                               rtol=1e-9, atol=1e-9)
    # The tail is the rows within the horizon of the last one.
    times = column_to_ns(df["ts"])
    assert history.tail_rows == int((times > times.max() - behaviour.horizon_ns).sum())


def test_reasons_follow_the_groups() -> None:
    schema = _schema(reasons={"amount": ["amount", "card_mean_*"]})
    reasons = dict(FeaturePipeline(schema).reasons)
    assert reasons["amount"] == ("amount", "card_mean_*")  # the schema's win
    assert "card_count_1h" in reasons["card"]
    assert reasons["device_velocity"] == ("device_count_1h", "device_distinct_card_1h")
    assert reasons["card_merchant"] == ("card_merchant_first_seen_7d",)
