"""Training jobs that die: killed with SIGKILL or SIGTERM mid-training, or
interrupted between their last steps, against a real SQLite MLflow store.

Afterwards no run stays RUNNING (the job fails its own run on SIGTERM; the
next job fails what a SIGKILL left), and every registered version has a
FINISHED run and a model that loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run

from gendetect import tracking
from gendetect.cli import main as cli
from gendetect.config import get_settings
from gendetect.errors import ModelNotReadyError
from gendetect.tracking import (
    COMPLETE,
    COMPLETE_TAG,
    configure,
    ensure_experiment,
    load_registered_bundle,
)
from training import lineage, runs
from training import retrain as retrain_module

pytestmark = pytest.mark.integration

MODEL_NAME = "gendetect"


@pytest.fixture
def job(
    gendetect_home: Path, tmp_path: Path, small_transactions: pd.DataFrame
) -> tuple[Path, MlflowClient, str]:
    """A data file and a fresh store, created here so that the job process
    never races the test creating the store's tables."""
    data = tmp_path / "data.parquet"
    small_transactions.to_parquet(data)
    settings = get_settings()
    return data, configure(settings), ensure_experiment(settings)


@pytest.fixture
def long_config(tmp_path: Path) -> Path:
    # Far more epochs than the test waits for: the job is killed while fitting.
    path = tmp_path / "long.yaml"
    path.write_text("model:\n  max_epochs: 1000\n  patience: 1000\n")
    return path


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _start_train(
    data: Path, config: Path, log: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gendetect",
                "train",
                "--model",
                "vae",
                "--data",
                str(data),
                "--config",
                str(config),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    procs.append(proc)
    return proc


def _runs(client: MlflowClient, experiment: str, status: str | None = None) -> list[Run]:
    where = f"attributes.status = '{status}'" if status else ""
    return client.search_runs([experiment], filter_string=where)


def _wait_running(
    client: MlflowClient, experiment: str, proc: subprocess.Popen[bytes], log: Path
) -> Run:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"job exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        running = _runs(client, experiment, "RUNNING")
        if running:
            return running[0]
        time.sleep(0.3)
    pytest.fail(f"no RUNNING run appeared:\n{log.read_text()[-3000:]}")


def _assert_versions_complete(client: MlflowClient) -> list[str]:
    """Every registered version: READY, its run FINISHED, its model loads."""
    versions = client.search_model_versions(f"name='{MODEL_NAME}'")
    settings = get_settings()
    for mv in versions:
        assert mv.status == "READY"
        assert client.get_run(mv.run_id).info.status == "FINISHED", mv.version
        bundle, _ = load_registered_bundle(f"models:/{MODEL_NAME}/{mv.version}", settings)
        assert bundle.threshold_ is not None
    return sorted(str(mv.version) for mv in versions)


def test_kill_9_mid_training_then_the_next_job_fails_the_stale_run(
    job: tuple[Path, MlflowClient, str],
    long_config: Path,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, client, experiment = job
    log = tmp_path / "killed.log"
    proc = _start_train(data, long_config, log, started)
    killed = _wait_running(client, experiment, proc, log)
    time.sleep(1.0)  # into the fit (params and data artifacts are logged before it)
    proc.kill()
    proc.wait()
    # What SIGKILL leaves behind: a RUNNING run, no version.
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"
    assert client.search_model_versions(f"name='{MODEL_NAME}'") == []

    # The next job, in this process (same CLI, no second interpreter start).
    with caplog.at_level("WARNING", logger="training.runs"):
        code = cli(["train", "--model", "vae", "--data", str(data), "--epochs", "1"])
    assert code == 0, capsys.readouterr().err[-3000:]

    stale = client.get_run(killed.info.run_id)
    assert stale.info.status == "FAILED"
    assert stale.data.tags[runs.END_REASON_TAG] == (
        f"stale: its process {proc.pid} on {stale.data.tags[runs.HOST_TAG]} is gone"
    )
    assert any(
        killed.info.run_id in r.getMessage() and "marked FAILED" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    assert _runs(client, experiment, "RUNNING") == []
    assert _assert_versions_complete(client) == ["1"]
    new = client.get_model_version(MODEL_NAME, "1")
    assert new.run_id != killed.info.run_id


def test_sigterm_mid_training_fails_the_run_and_exits_non_zero(
    job: tuple[Path, MlflowClient, str],
    long_config: Path,
    tmp_path: Path,
    started: list[subprocess.Popen[bytes]],
) -> None:
    data, client, experiment = job
    log = tmp_path / "terminated.log"
    proc = _start_train(data, long_config, log, started)
    run = _wait_running(client, experiment, proc, log)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    assert f"gendetect train: interrupted by SIGTERM; run(s) marked FAILED: {run.info.run_id}" in (
        output
    )
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED"
    assert ended.data.tags[runs.END_REASON_TAG] == "SIGTERM"
    assert _runs(client, experiment, "RUNNING") == []
    assert client.search_model_versions(f"name='{MODEL_NAME}'") == []


def _interrupt_before(real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, but SIGTERM arrives just before it would run."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        return real(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize("step", ["register_bundle", "tag_run_version", "set_alias"])
def test_sigterm_between_the_last_steps_leaves_nothing_half_made(
    job: tuple[Path, MlflowClient, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    step: str,
) -> None:
    # The order: artifacts and model logged -> run FINISHED -> version
    # registered (tags, model card and completion tag in the same call) ->
    # the run tagged with it -> alias. Interrupted before registering: a
    # finished run with its model and no version; later: a complete version
    # without the alias.
    import training.train

    data, client, experiment = job
    module = lineage if step == "tag_run_version" else training.train
    monkeypatch.setattr(module, step, _interrupt_before(getattr(module, step)))
    args = ["train", "--model", "vae", "--data", str(data), "--epochs", "1", "--alias", "champion"]
    assert cli(args) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in capsys.readouterr().err

    (run,) = _runs(client, experiment)
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_card.md", "schema.yaml", "plots", "data"} <= artifacts
    logged = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    assert [m.source_run_id for m in logged] == [run.info.run_id]
    assert _assert_versions_complete(client) == ([] if step == "register_bundle" else ["1"])
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(MODEL_NAME, "champion")
    if step != "register_bundle":
        mv = client.get_model_version(MODEL_NAME, "1")
        assert mv.tags[COMPLETE_TAG] == COMPLETE and mv.tags[lineage.TRAINING_KEY_TAG]
        assert mv.description.startswith("# gendetect vae detector")
        run_tag = client.get_run(run.info.run_id).data.tags.get(lineage.MODEL_VERSION_TAG)
        assert run_tag == (None if step == "tag_run_version" else "1")


def test_a_version_left_incomplete_is_repaired_before_any_alias(
    job: tuple[Path, MlflowClient, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """What a job killed between registering and describing a version left
    (an older gendetect set the model card and the run's version tag in
    calls after the version's): a READY version with its training key but
    no card, no completion tag, its run untagged, no alias. It gets no alias
    as it is; the next retraining of the same inputs, which reuses it,
    completes it from its run first."""
    data, client, _ = job
    settings = get_settings()
    args = ["retrain", "--data", str(data), "--models", "vae", "--epochs", "1", "-q"]
    assert cli(args) == retrain_module.EXIT_PROMOTED
    mv = client.get_model_version(MODEL_NAME, "1")
    card = mv.description
    assert card.startswith("# gendetect vae detector") and mv.tags[COMPLETE_TAG] == COMPLETE
    run_id = mv.run_id
    # The state the kill left.
    client.update_model_version(MODEL_NAME, "1", description="")
    client.delete_model_version_tag(MODEL_NAME, "1", COMPLETE_TAG)
    client.delete_tag(run_id, lineage.MODEL_VERSION_TAG)
    for alias in (settings.champion_alias, settings.challenger_alias):
        client.delete_registered_model_alias(MODEL_NAME, alias)

    with pytest.raises(ModelNotReadyError, match="incomplete"):
        tracking.set_alias(settings, settings.champion_alias, "1")
    assert client.get_registered_model(MODEL_NAME).aliases == {}

    capsys.readouterr()
    assert cli(args) == retrain_module.EXIT_PROMOTED  # no champion: the reused one is promoted
    assert "(reused: same inputs)" in capsys.readouterr().out
    assert _assert_versions_complete(client) == ["1"]
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.description == card and mv.tags[COMPLETE_TAG] == COMPLETE
    assert client.get_run(run_id).data.tags[lineage.MODEL_VERSION_TAG] == "1"
    for alias in (settings.champion_alias, settings.challenger_alias):
        assert str(client.get_model_version_by_alias(MODEL_NAME, alias).version) == "1"
