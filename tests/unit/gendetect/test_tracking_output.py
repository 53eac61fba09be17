"""MLflow's own stdout lines stay out of a job's output: the job's summary
(training.summary.where_to_look) is the one place that says where to look."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from gendetect.config import Settings
from gendetect.tracking import configure


def test_a_run_on_a_tracking_server_ends_without_mlflows_view_run_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # setenv then delenv: the variable is absent here and as it was afterwards.
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "")
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
    # Nothing listens there: if MLflow went on to build its "🏃 View run ... at"
    # lines it would ask the server for the run and fail at once (no retries).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setenv("GENDETECT_HOME", str(tmp_path))
    uri = "http://127.0.0.1:9"
    configure(Settings(tracking_uri=uri))
    # What MlflowClient.set_terminated (every run's end) calls on a REST store.
    MlflowClient(tracking_uri=uri)._tracking_client._log_url("0" * 32)
    assert capsys.readouterr().out == ""
