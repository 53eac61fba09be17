"""One meaning on every surface: the same records with the behaviour
features of the full history get the same scores (1e-6 relative) from the
API's scoring function, `gendetect score`, `mlflow.pyfunc.load_model()
.predict`, a real `mlflow models serve` process and `mlflow.pyfunc.spark_udf`
on a local SparkSession; and the logged model loads in an interpreter in
which the installed gendetect is not importable."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from gendetect import tracking
from gendetect.bundle import FraudModelBundle
from gendetect.cli import main as cli
from gendetect.config import Settings, get_settings
from gendetect.data.simulator import simulate_transactions
from gendetect.features.window_engine import add_window_features
from scoring import model_log
from tests.conftest import FOREIGN_ENV

pytestmark = pytest.mark.integration
RTOL = 1e-6
N_RECORDS = 120


@dataclass
class Surfaces:
    settings: Settings
    bundle: FraudModelBundle
    model_uri: str
    local_model: Path
    history: pd.DataFrame  # labelled, time-ordered
    data_file: Path
    featured: pd.DataFrame  # the last N_RECORDS rows with full-history features, no label
    expected: np.ndarray  # the API's scores for them


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> Surfaces:
    home = tmp_path_factory.mktemp("surfaces")
    settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    history = simulate_transactions(n_customers=80, n_terminals=160, days=20, seed=3)
    history = history.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)
    # Fitted with its labels: the label-aware model, what `make demo` and any
    # training with labels produce (the trees' code tables on every surface).
    bundle = FraudModelBundle("vae", schema="transactions", max_epochs=1, seed=0,
                              accelerator="cpu", alert_rate=0.05).fit(history, "is_fraud")
    assert bundle.label_head_.active
    experiment = tracking.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment):
        ref = model_log.log_bundle(bundle, history.drop(columns=["is_fraud"]).head(5), settings)
    tracking.set_alias(settings, settings.champion_alias, ref.version)
    model_uri = f"models:/{ref.name}/{ref.version}"
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(home / "model")))
    data_file = home / "history.parquet"
    history.to_parquet(data_file, index=False)
    config = bundle.pipeline.window_config
    featured = add_window_features(history, config).tail(N_RECORDS).reset_index(drop=True)
    records = featured[[f.name for f in bundle.schema.fields if f.name in featured
                        and f.name != "is_fraud"]].to_dict("records")
    windows = featured[list(config.feature_names)].to_dict("records")
    api = bundle.score_records(records, windows)
    featured = featured.drop(columns=["is_fraud"])
    return Surfaces(settings, bundle, model_uri, local, history, data_file, featured,
                    np.array([d["score"] for d in api]))


def _close(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=RTOL)


def test_load_model_predict_with_precomputed_features(surfaces: Surfaces) -> None:
    out = mlflow.pyfunc.load_model(surfaces.model_uri).predict(surfaces.featured)
    _close(out["score"], surfaces.expected)
    assert not out["batch_history_only"].any()
    flagged = out[out["is_fraud"]]
    assert all(len(v) == surfaces.bundle.top_k for v in flagged["top_features"])
    assert all(v == [] for v in out.loc[~out["is_fraud"], "top_reasons"])


def test_without_features_the_output_says_only_the_batch_was_seen(surfaces: Surfaces) -> None:
    model = mlflow.pyfunc.load_model(surfaces.model_uri)
    names = surfaces.bundle.pipeline.window_feature_names
    lone = surfaces.featured.drop(columns=names).tail(1)
    out = model.predict(lone)
    assert out["batch_history_only"].all()
    # The whole history as one batch is its own (complete) history: then the
    # computed features are the right ones.
    whole = model.predict(surfaces.history, params={"explain": "none"})
    assert whole["batch_history_only"].all()
    _close(whole["score"].tail(N_RECORDS), surfaces.expected)
    assert sum(len(v) for v in whole["top_features"]) == 0


def test_gendetect_score_cli(surfaces: Surfaces, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENDETECT_HOME", str(surfaces.settings.home))
    monkeypatch.setenv("GENDETECT_TRACKING_URI", surfaces.settings.resolved_tracking_uri)
    get_settings.cache_clear()
    try:
        out = tmp_path / "scored.parquet"
        assert cli(["score", "--data", str(surfaces.data_file), "--out", str(out),
                    "--chunk-rows", "1000"]) == 0
    finally:
        get_settings.cache_clear()
    scored = pd.read_parquet(out)
    assert len(scored) == len(surfaces.history)
    _close(scored["gd_score"].tail(N_RECORDS), surfaces.expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(surfaces: Surfaces, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow models serve` on the logged model, this environment."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    # MLflow starts `uvicorn` by name: this environment's, first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
               str(surfaces.local_model), "--env-manager", "local", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, "mlflow models serve exited"
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not answer /ping")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_mlflow_models_serve(surfaces: Surfaces, served: str) -> None:
    frame = surfaces.featured.assign(timestamp=surfaces.featured["timestamp"].astype(str))
    # Python's float text round-trips exactly (pandas' to_json keeps 10
    # digits): the trees of the label-aware head split on exact thresholds.
    body = {"dataframe_split": frame.to_dict(orient="split", index=False)}
    r = httpx.post(f"{served}/invocations", json=body, timeout=60)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    _close([p["score"] for p in predictions], surfaces.expected)
    assert not any(p["batch_history_only"] for p in predictions)
    # Explanations are records, not JSON text inside JSON.
    assert all(isinstance(p["top_features"], list) for p in predictions)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    from scoring.spark import spark_session

    # Few shuffle partitions: 200 (the default) tiny tasks dominate on a few rows.
    session = spark_session("local[2]", "gendetect-surfaces-test",
                            {"spark.sql.shuffle.partitions": "2"})
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_udf(surfaces: Surfaces, spark: Any) -> None:
    from scoring.spark import score

    tracking.configure(surfaces.settings)
    df = spark.createDataFrame(surfaces.featured)
    out = score(df, surfaces.model_uri).toPandas().sort_values("transaction_id")
    expected = pd.Series(surfaces.expected, index=surfaces.featured["transaction_id"])
    _close(out["gd_score"], expected.sort_index().to_numpy())
    assert not out["gd_batch_history_only"].any()
    # Top features keep their observed and expected values through Spark (nulls too).
    entries = [e.asDict() if hasattr(e, "asDict") else dict(e)
               for row in out.loc[out["gd_is_fraud"], "gd_top_features"] for e in row]
    assert entries and all({"value", "expected"} <= set(e) for e in entries)
    assert any(e["expected"] is not None for e in entries)


def test_spark_job_on_the_file(surfaces: Surfaces, spark: Any, tmp_path: Path) -> None:
    """Features by Spark's window functions, then spark_udf: the file's scores."""
    from scoring.spark.job import score_file_with_spark

    out = tmp_path / "scored"
    assert score_file_with_spark(str(surfaces.data_file), str(out), surfaces.model_uri,
                                 surfaces.settings) == 0
    scored = pd.read_parquet(out).sort_values("transaction_id")
    assert len(scored) == len(surfaces.history)
    tail_ids = surfaces.featured["transaction_id"].to_numpy()
    got = scored.set_index("transaction_id").loc[tail_ids].reset_index()
    names = list(surfaces.bundle.pipeline.window_feature_names)
    np.testing.assert_allclose(got[names].to_numpy(float),
                               surfaces.featured[names].to_numpy(float), rtol=1e-9, atol=1e-9)
    # The head's trees split at exact thresholds, and Spark's window sums may
    # differ from the engine's in the last bits (a split taken the other way):
    # the scores are those of the bundle on Spark's own features.
    # (The file's time column comes back as integer nanoseconds: the same times.)
    assert np.array_equal(got["transaction_id"], surfaces.featured["transaction_id"])
    local = surfaces.bundle.score_batch(
        got.drop(columns=[c for c in got.columns if c.startswith("gd_")])
        .assign(timestamp=surfaces.featured["timestamp"].to_numpy()))
    assert not local.batch_history_only
    _close(got["gd_score"], local.score)
    assert not scored["gd_batch_history_only"].any()


def test_model_loads_where_gendetect_is_not_installed(surfaces: Surfaces, tmp_path: Path) -> None:
    """`python -I -S`: no site processing, so the editable install's .pth
    (which puts the repository on sys.path) is not read; only site-packages
    is added by hand. gendetect must then come from the model's own code."""
    site_packages = sysconfig.get_paths()["purelib"]
    repo = str(Path(__file__).resolve().parents[3])
    assert not site_packages.startswith(repo + os.sep) or ".venv" in site_packages
    input_file = tmp_path / "input.parquet"
    surfaces.featured.to_parquet(input_file, index=False)
    script = (
        "import sys, json\n"
        f"sys.path.append({site_packages!r})\n"
        "try:\n"
        "    import gendetect\n"
        "    print(json.dumps({'importable_before': gendetect.__file__})); sys.exit(3)\n"
        "except ImportError:\n"
        "    pass\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({str(surfaces.local_model)!r})\n"
        f"out = model.predict(pd.read_parquet({str(input_file)!r}))\n"
        "import gendetect\n"
        "print(json.dumps({'module': gendetect.__file__, 'scores': out['score'].tolist()}))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["module"].startswith(str(surfaces.local_model)), report["module"]
    _close(report["scores"], surfaces.expected)
    requirements = (surfaces.local_model / "requirements.txt").read_text()
    assert "gendetect" not in requirements and "torch==" in requirements
