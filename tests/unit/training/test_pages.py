"""What the MLflow pages show: comparison tables, Markdown for run notes and
model cards (counts as integers)."""

from __future__ import annotations

import math

from training.model_card import format_metric, table
from training.pages import comparison_table, markdown


def test_comparison_table_has_one_row_per_metric_and_nan_where_missing() -> None:
    frame = comparison_table({"vae (version 2)": {"roc_auc": 0.8, "n_labels": 1847.0},
                              "champion (version 1)": {"roc_auc": 0.7}})
    assert list(frame.columns) == ["metric", "vae (version 2)", "champion (version 1)"]
    assert frame["metric"].tolist() == ["n_labels", "roc_auc"]
    assert math.isnan(frame.loc[0, "champion (version 1)"])
    text = markdown(frame)
    assert "| n_labels | 1,847 | n/a |" in text
    assert "| roc_auc | 0.8000 | 0.7000 |" in text


def test_counts_are_integers_and_rates_have_four_places() -> None:
    assert format_metric("n_frauds", 579.0) == "579"
    assert format_metric("n_labels", 12345.0) == "12,345"
    assert format_metric("roc_auc", 0.87891) == "0.8789"


def test_table_cells_escape_pipes_and_join_lists() -> None:
    lines = table(("parameter", "value"), [("hidden", [64, 32]), ("note", "a|b")])
    assert lines[2:] == ["| hidden | 64, 32 |", "| note | a\\|b |"]
