"""`gendetect schema infer` drafts a schema that trains without edits: on the
handbook's raw transactions (their own column names, no precomputed
features) and on the rich simulated table (gaps, high-cardinality codes,
entities beyond card and terminal)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gendetect.bundle import FraudModelBundle
from gendetect.data.rich import simulate_rich
from gendetect.schema import load_schema
from gendetect.schema_tools.infer import infer_schema
from gendetect.schema_tools.render import render

RAW = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
       "TX_FRAUD"]


def _handbook_raw() -> pd.DataFrame:
    root = os.environ.get("GENDETECT_SHARED_DATA")
    data = Path(root) if root else Path(__file__).resolve().parents[3].parent / "shared" / "data"
    path = data / "handbook" / "transactions.parquet"
    if not path.is_file():
        pytest.skip(f"handbook data not found at {path} (set GENDETECT_SHARED_DATA)")
    df = pd.read_parquet(path, columns=RAW)
    first = df["TX_DATETIME"].min()
    return df[df["TX_DATETIME"] < first + pd.Timedelta(days=20)].reset_index(drop=True)


def _draft_trains(df: pd.DataFrame, tmp_path: Path, name: str) -> FraudModelBundle:
    path = tmp_path / f"{name}.yaml"
    path.write_text(render(infer_schema(df, name=name, source=f"{name}.csv")))
    schema = load_schema(path)  # as written: no edits
    bundle = FraudModelBundle("vae", schema=schema, max_epochs=1, seed=0,
                              accelerator="cpu").fit(df)
    scores = bundle.decision_function(df.drop(columns=[schema.label_field] if schema.label_field
                                              else []).head(200))
    assert np.isfinite(scores).all()
    return bundle


def test_the_handbooks_raw_file(tmp_path: Path) -> None:
    df = _handbook_raw()
    bundle = _draft_trains(df, tmp_path, "handbook")
    names = set(bundle.feature_names)
    assert "TX_AMOUNT" in names
    # The drafted behaviour block keys the handbook's two entities.
    assert any(n.startswith("CUSTOMER_ID") for n in names)
    assert any(n.startswith("TERMINAL_ID") for n in names)
    assert not {"TRANSACTION_ID", "TX_FRAUD", "CUSTOMER_ID", "TERMINAL_ID"} & names


def test_the_rich_table(tmp_path: Path) -> None:
    df = simulate_rich(n_customers=300, n_terminals=600, days=20, seed=0)
    bundle = _draft_trains(df, tmp_path, "shop")
    names = set(bundle.feature_names)
    assert any("device_id" in n for n in names)  # an aggregate of the device key
    assert not {"card_id", "device_id", "merchant_id"} & names
