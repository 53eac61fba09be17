"""The training job end to end, against a real SQLite-backed MLflow store:
`gendetect simulate` and `gendetect train` as separate processes (the real
command line), then the registry, the pyfunc model, `gendetect score`,
`gendetect retrain` and the CLI's user-facing errors.

`score`, `retrain` and the error cases call the CLI's `main()` in this
process: the same argument parsing and commands without paying for another
interpreter start (mlflow + torch imports take ~10 s on a busy machine).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from gendetect.cli import main as cli
from gendetect.config import get_settings
from gendetect.data.io import fingerprint, read_table
from gendetect.decisions import EXPLANATION_COLUMNS
from gendetect.schema import Schema

pytestmark = pytest.mark.integration

EPOCHS = 2
MODEL_NAME = "gendetect"


@dataclass
class Trained:
    home: Path
    work: Path
    data: Path
    stdout: str
    client: MlflowClient
    tracking_uri: str
    stderr: str = ""


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gendetect.cli", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(module_gendetect_home: Path) -> Trained:
    home = module_gendetect_home
    work = home.parent / f"{home.name}-work"
    work.mkdir()
    sim = _run_cli(
        "simulate",
        "--customers",
        "300",
        "--terminals",
        "600",
        "--days",
        "30",
        "--out",
        "data.parquet",
        cwd=work,
    )
    assert sim.returncode == 0, sim.stderr
    assert "wrote" in sim.stdout
    train = _run_cli(
        "train",
        "--model",
        "vae",
        "--data",
        "data.parquet",
        "--alias",
        "champion",
        "--epochs",
        str(EPOCHS),
        cwd=work,
    )
    assert train.returncode == 0, train.stderr[-5000:]
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return Trained(
        home,
        work,
        work / "data.parquet",
        train.stdout,
        MlflowClient(tracking_uri=uri, registry_uri=uri),
        uri,
        train.stderr,
    )


def _the_run(t: Trained) -> mlflow.entities.Run:
    exp = t.client.get_experiment_by_name("gendetect")
    assert exp is not None
    runs = t.client.search_runs(
        [exp.experiment_id],
        filter_string="tags.`gendetect.kind` = 'vae'",
        order_by=["attributes.start_time ASC"],
    )
    assert runs
    return runs[0]


def _champion_bundle():  # type: ignore[no-untyped-def]
    from gendetect.tracking import load_registered_bundle

    get_settings.cache_clear()
    return load_registered_bundle(f"models:/{MODEL_NAME}@champion", get_settings())


# ---------------------------------------------------------------- the run
def test_train_prints_the_registered_version(trained: Trained) -> None:
    assert "registered gendetect version 1 (vae" in trained.stdout
    assert (trained.home / "mlflow.db").is_file()
    assert not (trained.work / ".gendetect").exists()  # GENDETECT_HOME was used


@pytest.mark.parametrize(
    "noise",
    [
        "Inferred schema contains integer column",  # MLflow's signature/dataset hint
        "Downloading artifacts",  # MLflow's progress bar for a few local files
        "Validating input example",
        "Creating initial MLflow database tables",
    ],
)
def test_training_prints_no_library_noise(trained: Trained, noise: str) -> None:
    assert noise not in trained.stderr and noise not in trained.stdout


def test_run_params_and_metrics(trained: Trained) -> None:
    run = _the_run(trained)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["kind"] == "vae"
    assert params["schema"] == "transactions"
    assert params["model.max_epochs"] == str(EPOCHS)
    assert params["alert_rate"] == "0.01"
    assert int(params["n_train_rows"]) > 100
    metrics = run.data.metrics
    for name in ("eval/roc_auc", "eval/average_precision"):
        assert 0.0 <= metrics[name] <= 1.0
    assert metrics["eval/roc_auc"] > 0.5  # better than chance even after 2 epochs


@pytest.mark.parametrize("name", ["train/train_loss", "train/val_loss"])
def test_per_epoch_loss_history(trained: Trained, name: str) -> None:
    run = _the_run(trained)
    bundle, _ = _champion_bundle()
    epochs_run = bundle.metadata["training"]["vae"]["epochs_run"]
    assert epochs_run == EPOCHS  # patience 3 > 2 epochs: no early stop
    history = trained.client.get_metric_history(run.info.run_id, name)
    assert sorted(m.step for m in history) == list(range(1, epochs_run + 1)), [
        (m.step, m.value) for m in history
    ]
    assert all(np.isfinite(m.value) for m in history)


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out |= _artifact_paths(client, run_id, info.path)
        else:
            out.add(info.path)
    return out


def test_run_artifacts(trained: Trained) -> None:
    run = _the_run(trained)
    paths = _artifact_paths(trained.client, run.info.run_id)
    for expected in (
        "plots/score_histogram.png",
        "plots/loss_curves.png",
        "plots/roc.png",
        "plots/precision_recall.png",
        "schema.yaml",
        "model_card.md",
        "data/fingerprint.json",
    ):
        assert expected in paths, sorted(paths)
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, dst_path=str(trained.work / "artifacts")
        )
    )
    for png in local.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    schema = Schema.from_dict(yaml.safe_load((local / "schema.yaml").read_text()))
    assert schema.name == "transactions"
    card = (local / "model_card.md").read_text()
    assert "vae" in card and "roc_auc" in card
    assert "terminal (terminal_nb_tx_1d, terminal_risk_1d" in card
    fp = json.loads((local / "data/fingerprint.json").read_text())
    assert fp["sha256"] == fingerprint(read_table(trained.data))["sha256"]
    assert run.data.tags["gendetect.data_sha256"] == fp["sha256"]


def test_registered_version_with_alias(trained: Trained) -> None:
    run = _the_run(trained)
    mv = trained.client.get_model_version(MODEL_NAME, "1")
    assert mv.run_id == run.info.run_id
    assert "champion" in mv.aliases
    assert run.data.tags["gendetect.model_version"] == "1"
    # The model itself: an MLflow model holding the bundle.
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/1"))
    assert (local / "MLmodel").is_file()
    assert (local / "artifacts" / "bundle" / "bundle.json").is_file()


# ------------------------------------------------------------ pyfunc model
def _assert_same_decisions(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(got) == len(expected)
    for col in ("score", "risk"):
        np.testing.assert_allclose(
            got[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-12, err_msg=col
        )
    np.testing.assert_array_equal(
        got["is_fraud"].to_numpy(bool), expected["is_fraud"].to_numpy(bool)
    )
    _assert_same_explanations(got, expected)


def _assert_same_explanations(got: pd.DataFrame, expected: pd.DataFrame, prefix: str = "") -> None:
    # Batch surfaces explain the flagged rows (by default) as lists of
    # {feature|reason, contribution}; the other rows carry an empty list.
    flagged = expected["is_fraud"].to_numpy(bool)
    assert flagged.any()
    for column in EXPLANATION_COLUMNS:
        for value, want, is_flagged in zip(got[prefix + column], expected[column], flagged,
                                           strict=True):
            entries = [dict(item) for item in _as_list(value)]
            if not is_flagged:
                assert entries == [], column
                continue
            want = _as_list(want)
            assert [_name(e) for e in entries] == [_name(w) for w in want]
            for e, w in zip(entries, want, strict=True):
                assert e["contribution"] == pytest.approx(w["contribution"], rel=1e-6, abs=1e-9)
                if column == "top_features":  # observed and expected values, null alike
                    for key in ("value", "expected"):
                        assert (e[key] is None) == (w[key] is None), key
                        assert e[key] is None or e[key] == pytest.approx(w[key], rel=1e-6), key


def _name(entry: dict[str, object]) -> object:
    return entry.get("feature", entry.get("reason"))


def _as_list(value: object) -> list[dict[str, object]]:
    if isinstance(value, str):  # CSV output: JSON text
        return list(json.loads(value))
    return [dict(v) for v in value]  # type: ignore[union-attr]


def test_pyfunc_matches_the_bundle(trained: Trained) -> None:
    df = read_table(trained.data).drop(columns=["is_fraud"]).tail(2000).reset_index(drop=True)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    got = model.predict(df)
    assert {"score", "risk", "is_fraud"} <= set(got.columns)
    bundle, _ = _champion_bundle()
    _assert_same_decisions(got, bundle.score_frame(df))


def test_pyfunc_matches_the_bundle_on_a_labelled_file(trained: Trained) -> None:
    # A history file with labels (what the job trained on): the labels feed
    # the delayed terminal-risk features, so the pyfunc must not drop them.
    df = read_table(trained.data)
    got = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(df)
    bundle, _ = _champion_bundle()
    _assert_same_decisions(got, bundle.score_frame(df))


def test_pyfunc_accepts_records_without_optional_fields(trained: Trained) -> None:
    # fraud_scenario is the simulator's evaluation-only column (schema:
    # required: false); real transactions do not have it.
    df = read_table(trained.data).drop(columns=["is_fraud", "fraud_scenario"]).tail(500)
    df = df.reset_index(drop=True)
    got = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(df)
    bundle, _ = _champion_bundle()
    _assert_same_decisions(got, bundle.score_frame(df))


# ------------------------------------------------------------ batch scoring
def test_score_writes_an_output_file(trained: Trained, capsys: pytest.CaptureFixture[str]) -> None:
    out = trained.work / "scored" / "out.parquet"
    get_settings.cache_clear()
    assert cli(["score", "--data", str(trained.data), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    scored = read_table(out)
    df = read_table(trained.data)
    assert len(scored) == len(df)
    pd.testing.assert_series_equal(scored["amount"], df["amount"])
    bundle, ref = _champion_bundle()
    expected = bundle.score_frame(df)
    np.testing.assert_allclose(
        scored["gd_score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-12
    )
    np.testing.assert_array_equal(
        scored["gd_is_fraud"].to_numpy(bool), expected["is_fraud"].to_numpy(bool)
    )
    _assert_same_explanations(scored, expected, prefix="gd_")
    assert set(scored["gd_model_version"].astype(str)) == {ref.version}


# ---------------------------------------------------------------- retrain
def _retrain(
    t: Trained, name: str, config: dict[str, object], capsys: pytest.CaptureFixture[str],
    exit_code: int = 0,
) -> str:
    path = t.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    get_settings.cache_clear()
    capsys.readouterr()
    # Exit codes: 0 promoted, 3 the champion kept (training/retrain.py).
    code = cli(["retrain", "--data", str(t.data), "--models", "vae", "--config", str(path)])
    assert code == exit_code
    return capsys.readouterr().out


def _alias(t: Trained, alias: str) -> str:
    return str(t.client.get_model_version_by_alias(MODEL_NAME, alias).version)


def _latest_version(t: Trained) -> str:
    return str(max(int(v.version) for v in t.client.search_model_versions(f"name='{MODEL_NAME}'")))


def test_retrain_promotes_then_refuses(
    trained: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. Any challenger beats the champion by more than -1 (AP is in [0, 1]):
    # promoted, and both aliases move to the new version.
    before = _alias(trained, "champion")
    out = _retrain(
        trained,
        "promote",
        {"model": {"max_epochs": EPOCHS, "seed": 1}, "promotion": {"min_improvement": -1.0}},
        capsys,
    )
    new = _latest_version(trained)
    assert new != before
    assert "promoted to 'champion': average_precision" in out, out
    assert "not promoted" not in out
    assert _alias(trained, "champion") == new
    assert _alias(trained, "challenger") == new

    # 2. Same data, an impossible margin: not promoted, with the reason; the
    # champion stays, the new version is still registered as challenger.
    champion = _alias(trained, "champion")
    out = _retrain(
        trained,
        "refuse",
        {"model": {"max_epochs": EPOCHS}, "promotion": {"min_improvement": 1e9}},
        capsys,
        exit_code=3,
    )
    newest = _latest_version(trained)
    assert int(newest) == int(new) + 1
    assert "not promoted to 'champion'" in out, out
    assert "does not beat champion" in out
    assert _alias(trained, "champion") == champion
    assert _alias(trained, "challenger") == newest
    # The champion was measured on the same held-out data as its own run.
    champ_run = trained.client.get_model_version(MODEL_NAME, champion).run_id
    champ_ap = trained.client.get_run(champ_run).data.metrics["eval/average_precision"]
    match = re.search(r"champion (\d+\.\d+)", out)
    assert match, out
    assert float(match.group(1)) == pytest.approx(champ_ap, abs=5e-5)


# ------------------------------------------------------------- CLI errors
def _assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert "error:" in err
    for needle in needles:
        assert needle in err, err


def test_train_on_a_missing_file(
    gendetect_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "data.parquet"
    code = cli(["train", "--model", "vae", "--data", str(missing), "--epochs", "1"])
    _assert_user_error(code, capsys.readouterr().err, str(missing), "not found")


def test_train_on_a_file_without_amount(
    gendetect_home: Path,
    tmp_path: Path,
    small_transactions: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "no-amount.csv"
    small_transactions.drop(columns=["amount"]).to_csv(path, index=False)
    code = cli(["train", "--model", "vae", "--data", str(path), "--epochs", "1"])
    _assert_user_error(code, capsys.readouterr().err, str(path), "column 'amount'")


def test_train_error_in_a_real_process(
    tmp_path: Path, gendetect_home: Path, small_transactions: pd.DataFrame
) -> None:
    # The console path: exit status 2, the file and the column, no traceback.
    path = tmp_path / "no-amount.parquet"
    small_transactions.drop(columns=["amount"]).to_parquet(path)
    proc = _run_cli("train", "--model", "vae", "--data", str(path), "--epochs", "1", cwd=tmp_path)
    _assert_user_error(proc.returncode, proc.stderr, str(path), "column 'amount'")


@pytest.mark.parametrize("name", ["empty.parquet", "empty.csv", "header-only.csv"])
def test_train_on_a_file_without_rows(
    gendetect_home: Path,
    tmp_path: Path,
    small_transactions: pd.DataFrame,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    # Before: a 0-row parquet gave a traceback (exit 1), a header-only CSV
    # "expected numbers, found object".
    path = tmp_path / name
    if name == "empty.parquet":
        small_transactions.head(0).to_parquet(path)
    elif name == "empty.csv":
        path.write_text("")
    else:
        small_transactions.head(0).to_csv(path, index=False)
    code = cli(["train", "--model", "vae", "--data", str(path), "--epochs", "1"])
    err = capsys.readouterr().err
    _assert_user_error(code, err, str(path), "no rows")
    assert err.strip().splitlines() == [
        f"gendetect train: error: {path}: the file has no rows (empty, or a header only)"
    ]
