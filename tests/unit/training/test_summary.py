"""The end of a training job: the headline metrics as a table, not a dict."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from gendetect.config import Settings
from training.summary import metrics_table, run_page, where_to_look


def test_a_row_per_model_and_a_column_per_headline_metric() -> None:
    lines = metrics_table([
        ("version 3 (vae)", {"roc_auc": 0.91234, "average_precision": 0.5, "n_frauds": 579.0,
                             "fit_seconds": 3.2}),
        ("champion (version 1)", {"roc_auc": 0.87901, "average_precision": math.nan}),
    ])
    header, first, second = lines
    assert header.split() == ["ROC", "AUC", "AP"]  # only metrics some model has
    assert first.split() == ["version", "3", "(vae)", "0.9123", "0.5000"]
    assert second.split() == ["champion", "(version", "1)", "0.8790", "-"]
    # Aligned: every value column ends where its header does.
    assert len({len(line) for line in lines}) == 1
    assert "{" not in "\n".join(lines) and "579" not in "\n".join(lines)


def test_a_model_without_metrics_shows_dashes() -> None:
    lines = metrics_table([("version 2 (gan)", {"roc_auc": 0.8}), ("champion (version 1)", None)])
    assert lines[2].split()[-1] == "-"


def test_where_to_look_opens_the_classic_view_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENDETECT_HOME", str(tmp_path))
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    line = where_to_look(settings, "abc123")
    experiment = MlflowClient(settings.resolved_tracking_uri).get_experiment_by_name(
        settings.experiment)
    assert experiment is not None
    assert line == (
        f"MLflow: `mlflow ui --backend-store-uri {settings.resolved_tracking_uri}`, then "
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs/abc123"
        "?workflowType=machine_learning")
    assert run_page("http://mlflow:5000/", "7", None) == (
        "http://mlflow:5000/#/experiments/7?workflowType=machine_learning")
