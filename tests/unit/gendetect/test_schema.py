"""The input contract: built-in schemas, validation errors that name the
column and the file, open (numeric) schemas, serialisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gendetect.errors import InputError
from gendetect.schema import Schema, load_schema

SOURCE = "data/transactions-2024.parquet"


@pytest.fixture
def tx(small_transactions: pd.DataFrame) -> pd.DataFrame:
    return small_transactions.head(200).copy()


def _error(schema: Schema, df: pd.DataFrame, source: str | None = SOURCE) -> InputError:
    with pytest.raises(InputError) as info:
        schema.validate_frame(df, source=source)
    return info.value


def _assert_names(err: InputError, column: str, source: str | None = SOURCE) -> None:
    assert err.field == column
    assert f"column '{column}'" in str(err)
    if source is not None:
        assert err.source == source
        assert str(err).startswith(source)


# ----------------------------------------------------------------- built-ins
def test_transactions_schema_kinds_and_features() -> None:
    schema = load_schema("transactions")
    assert schema.name == "transactions"
    assert schema["timestamp"].kind == "timestamp"
    assert schema["customer_id"].kind == "entity"
    assert schema.label_field == "is_fraud"
    assert set(schema.pii_fields) == {"customer_id", "terminal_id"}
    # amount is a feature (raw, robust-scaled) besides log_amount;
    # fraud_scenario is evaluation only and never a feature.
    assert [f.name for f in schema.feature_fields] == ["amount"]
    derived = [d.name for d in schema.derived]
    assert derived[:5] == ["log_amount", "hour_sin", "hour_cos", "is_weekend", "is_night"]
    assert schema.aggregates is not None and len(schema.aggregates.feature_names) == 12
    assert "is_fraud" not in [f.name for f in schema.input_fields]


def test_numeric_schema_is_open() -> None:
    schema = load_schema("numeric")
    assert schema.extra_numeric
    assert schema.label_field == "label"
    assert not schema["label"].required


def test_simulated_frame_is_valid(tx: pd.DataFrame) -> None:
    # The error tests below would mean nothing if a good frame failed too.
    load_schema("transactions").validate_frame(tx, source=SOURCE)


# ---------------------------------------------------------------- validation
def test_missing_required_column(tx: pd.DataFrame) -> None:
    err = _error(load_schema("transactions"), tx.drop(columns=["amount"]))
    _assert_names(err, "amount")
    assert "missing" in err.message


def test_missing_optional_columns_are_fine(tx: pd.DataFrame) -> None:
    load_schema("transactions").validate_frame(tx.drop(columns=["is_fraud", "fraud_scenario"]))


def test_strings_in_numeric_column(tx: pd.DataFrame) -> None:
    tx["amount"] = tx["amount"].astype(str)
    tx.loc[tx.index[3], "amount"] = "12,50"
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "amount")
    assert "expected numbers" in err.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_in_numeric_column(tx: pd.DataFrame, bad: float) -> None:
    tx.loc[tx.index[7], "amount"] = bad
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "amount")
    assert "row 7" in err.message


def test_value_below_minimum(tx: pd.DataFrame) -> None:
    tx.loc[tx.index[0], "amount"] = -5.0
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "amount")
    assert "below the minimum" in err.message


def test_value_above_maximum(tx: pd.DataFrame) -> None:
    tx.loc[tx.index[0], "fraud_scenario"] = 4
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "fraud_scenario")
    assert "above the maximum" in err.message


def test_label_must_be_0_or_1(tx: pd.DataFrame) -> None:
    tx.loc[tx.index[2], "is_fraud"] = 2
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "is_fraud")
    assert "0 or 1" in err.message


def test_missing_labels_are_allowed(tx: pd.DataFrame) -> None:
    # Labels arrive late: NaN means "not known yet", not bad data.
    tx["is_fraud"] = tx["is_fraud"].astype(float)
    tx.loc[tx.index[:10], "is_fraud"] = np.nan
    load_schema("transactions").validate_frame(tx, source=SOURCE)


def test_bad_timestamp(tx: pd.DataFrame) -> None:
    tx["timestamp"] = tx["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    load_schema("transactions").validate_frame(tx)  # ISO strings are fine
    tx.loc[tx.index[4], "timestamp"] = "yesterday at noon"
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "timestamp")
    assert "not a timestamp" in err.message


def test_missing_entity_id(tx: pd.DataFrame) -> None:
    tx["customer_id"] = tx["customer_id"].astype("Int64")
    tx.loc[tx.index[1], "customer_id"] = pd.NA
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "customer_id")


@pytest.mark.parametrize(
    ("ids", "message"),
    [(lambda c: c.astype(bool), "booleans"), (lambda c: c + 0.5, "found ")],
    ids=["booleans", "fractions"],
)
def test_entity_ids_are_integers_or_text(tx: pd.DataFrame, ids, message: str) -> None:
    schema = load_schema("transactions")
    schema.validate_frame(tx.assign(customer_id=tx["customer_id"].astype(float)))  # whole
    schema.validate_frame(tx.assign(customer_id="c" + tx["customer_id"].astype(str)))
    err = _error(schema, tx.assign(customer_id=ids(tx["customer_id"])))
    _assert_names(err, "customer_id")
    assert message in err.message


def test_repeated_transaction_ids(tx: pd.DataFrame) -> None:
    tx.loc[tx.index[7], "transaction_id"] = tx["transaction_id"].iloc[2]
    err = _error(load_schema("transactions"), tx)
    _assert_names(err, "transaction_id")
    assert "1 repeated id(s)" in err.message and "row 7" in err.message


def test_error_without_source_names_only_the_column(tx: pd.DataFrame) -> None:
    err = _error(load_schema("transactions"), tx.drop(columns=["timestamp"]), source=None)
    assert err.source is None
    assert str(err).startswith("column 'timestamp'")


CUSTOM_YAML = """
name: payments
version: 3
fields:
  - {name: ts, kind: timestamp}
  - {name: value, kind: numeric, min: 0}
  - {name: channel, kind: categorical, categories: [web, pos, atm]}
  - {name: is_card_present, kind: boolean}
  - {name: fraud, kind: label, required: false}
derived:
  - {name: log_value, op: log1p, source: value}
"""


@pytest.fixture
def custom_schema_path(tmp_path: Path) -> Path:
    path = tmp_path / "payments.yaml"
    path.write_text(CUSTOM_YAML)
    return path


def _payments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00", "2024-01-03 12:00"]),
            "value": [1.0, 20.0, 300.0],
            "channel": ["web", "pos", "atm"],
            "is_card_present": [0, 1, 1],
        }
    )


def test_unknown_category_in_custom_schema(custom_schema_path: Path) -> None:
    schema = load_schema(custom_schema_path)
    df = _payments()
    schema.validate_frame(df, source="pay.csv")
    df.loc[1, "channel"] = "phone"
    err = _error(schema, df, source="pay.csv")
    _assert_names(err, "channel", "pay.csv")
    assert "phone" in err.message


def test_boolean_must_be_0_or_1(custom_schema_path: Path) -> None:
    df = _payments()
    df.loc[0, "is_card_present"] = 3
    err = _error(load_schema(custom_schema_path), df, source="pay.csv")
    _assert_names(err, "is_card_present", "pay.csv")


def test_custom_schema_features(custom_schema_path: Path) -> None:
    schema = load_schema(custom_schema_path)
    assert schema.name == "payments"
    assert schema.version == 3
    assert schema["channel"].categories == ("web", "pos", "atm")
    assert [f.name for f in schema.feature_fields] == ["value", "channel", "is_card_present"]


# ------------------------------------------------------------- open schemas
def test_resolve_columns_for_numeric_schema() -> None:
    schema = load_schema("numeric").resolve_columns(["x1", "x2", "label", "x3"])
    assert not schema.extra_numeric
    assert [f.name for f in schema.feature_fields] == ["x1", "x2", "x3"]
    assert all(schema[n].kind == "numeric" and schema[n].required for n in ("x1", "x2", "x3"))
    assert schema["label"].kind == "label"
    # The resolved schema now requires the columns it was fixed to.
    df = pd.DataFrame({"x1": [1.0], "x2": [2.0], "x3": [3.0]})
    schema.validate_frame(df)
    err = _error(schema, df.drop(columns=["x2"]), source="adbench.npz")
    _assert_names(err, "x2", "adbench.npz")


def test_resolve_columns_leaves_a_closed_schema_alone() -> None:
    schema = load_schema("transactions")
    assert schema.resolve_columns(["foo", "bar"]) is schema


# ------------------------------------------------------------ serialisation
@pytest.mark.parametrize("name", ["transactions", "numeric", "custom"])
def test_to_dict_from_dict_round_trip(name: str, custom_schema_path: Path) -> None:
    schema = load_schema(custom_schema_path if name == "custom" else name)
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
    assert again.feature_fields == schema.feature_fields
    # Through YAML text too (what the bundle and MLflow store).
    assert Schema.from_dict(yaml.safe_load(schema.to_yaml())) == schema


def test_round_trip_of_a_resolved_schema() -> None:
    schema = load_schema("numeric").resolve_columns(["a", "b"])
    again = Schema.from_dict(schema.to_dict())
    assert again == schema
    assert [f.name for f in again.feature_fields] == ["a", "b"]
    assert "a" in again  # the name index is rebuilt


def test_load_schema_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "schema.yaml"
    with pytest.raises(InputError) as info:
        load_schema(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_load_schema_of_a_file_that_is_not_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(InputError) as info:
        load_schema(path)
    assert str(path) in str(info.value)
