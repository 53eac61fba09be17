"""`gendetect schema check`: every refused column, in train's own words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gendetect.cli import main as cli
from gendetect.data.io import write_table
from gendetect.errors import InputError
from gendetect.schema import load_schema
from gendetect.schema_tools.check import check_frame

SCHEMA = """\
name: shop
fields:
  - {name: transaction_id, kind: id}
  - {name: timestamp, kind: timestamp}
  - {name: card_id, kind: entity, pii: true}
  - {name: terminal_id, kind: entity, pii: true}
  - {name: channel, kind: categorical, categories: [pos, ecom]}
  - {name: amount, kind: numeric, min: 0, max: 1000}
  - {name: fee, kind: numeric, min: 0, max: 10}
  - {name: is_fraud, kind: label, required: false}
"""


def clean(n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "transaction_id": np.arange(n, dtype=np.int64),
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="h"),
        "card_id": rng.integers(0, 5, size=n),
        "terminal_id": rng.integers(0, 5, size=n),
        "channel": rng.choice(["pos", "ecom"], size=n),
        "amount": rng.uniform(1, 100, size=n).round(2),
        "fee": rng.uniform(0, 1, size=n).round(2),
        "is_fraud": rng.integers(0, 2, size=n),
    })


def broken() -> pd.DataFrame:
    """Five columns wrong in five ways, one required column missing."""
    df = clean()
    df.loc[3, "amount"] = -5.0                      # below the minimum
    df.loc[7, "channel"] = "atm"                    # unknown category
    df["fee"] = df["fee"].astype(object)
    df.loc[2, "fee"] = "n/a"                        # not a number
    df.loc[4, "transaction_id"] = 0                 # repeated id
    df.loc[9, "is_fraud"] = 3                       # not a label value
    return df.drop(columns=["terminal_id"]).assign(extra=1)


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text(SCHEMA)
    return path


def test_every_refused_column_is_reported_as_train_says_it(schema_file) -> None:
    schema = load_schema(schema_file)
    df = broken()
    reports = {r.column: r for r in check_frame(schema, df, "shop.csv")}
    refused = {c for c, r in reports.items() if r.status == "refused"}
    assert refused == {"transaction_id", "terminal_id", "channel", "amount", "fee", "is_fraud"}
    assert {c for c, r in reports.items() if r.status == "ok"} == {"timestamp", "card_id"}
    assert reports["extra"].status == "ignored"
    # Train stops at the first bad column with this very message.
    with pytest.raises(InputError) as first:
        schema.validate_frame(df, source="shop.csv")
    assert reports[first.value.field].problems[0] == str(first.value)
    # And each column alone gives train's message for it.
    for column in refused - {"terminal_id"}:
        alone = clean().drop(columns=[column]).assign(**{column: df[column]})
        with pytest.raises(InputError) as exc:
            schema.validate_frame(alone, source="shop.csv")
        assert exc.value.field == column
        assert reports[column].problems[0] == str(exc.value)
    assert reports["terminal_id"].problems == (
        "shop.csv: column 'terminal_id': required column is missing",)


def test_gaps_do_not_hide_other_problems(schema_file) -> None:
    schema = load_schema(schema_file)
    df = clean()
    df.loc[1, "amount"] = np.nan
    df.loc[5, "amount"] = 5000.0
    (report,) = [r for r in check_frame(schema, df, "f.csv") if r.column == "amount"]
    assert len(report.problems) == 2
    assert "missing" in report.problems[0]
    assert "above the maximum" in report.problems[1]


def test_optional_absent_columns_are_fine(schema_file) -> None:
    schema = load_schema(schema_file)
    reports = check_frame(schema, clean().drop(columns=["is_fraud"]), "f.csv")
    assert {r.column: r.status for r in reports}["is_fraud"] == "absent"
    assert not any(r.status == "refused" for r in reports)


def test_cli_exit_codes_and_report(tmp_path, schema_file, capsys) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.csv"
    write_table(clean(), good)
    write_table(broken(), bad)
    assert cli(["schema", "check", "--schema", str(schema_file), "--data", str(good)]) == 0
    assert "no column refused" in capsys.readouterr().out
    assert cli(["schema", "check", "--schema", str(schema_file), "--data", str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}: column 'amount': value -5.0 below the minimum 0" in out
    assert f"{bad}: column 'channel': unknown categories ['atm']" in out
    assert "6 column(s) refused" in out


def test_cli_bad_schema_or_file_is_exit_2_naming_it(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfields:\n  - {name: a, kind: number}\n")
    data = tmp_path / "d.csv"
    write_table(clean(), data)
    assert cli(["schema", "check", "--schema", str(bad), "--data", str(data)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert cli(["schema", "check", "--schema", "transactions", "--data",
                str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
