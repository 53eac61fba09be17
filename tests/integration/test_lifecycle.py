"""The whole loop on the compose topology run as local processes
(scripts/topology.py): the real PostgreSQL on 127.0.0.1 (databases of this
test's own, created and dropped here), a real `mlflow server` with the
PostgreSQL backend store and proxied artifacts, two API replicas sharing
Redis and PostgreSQL, and `gendetect` jobs as the trainer.

1. train and register a champion on a window; both replicas serve it;
2. score a stream across both replicas, post verdicts for it;
3. retrain on a later window with the verdicts from the store, while a
   client keeps scoring on both replicas; the challenger is promoted and both
   replicas switch to it by themselves (alias polling), with zero failed
   requests;
4. SIGKILL of `gendetect retrain` mid-training on the shared server, then a
   rerun: one consistent registry (no half-registered version; aliases on
   finished versions only).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from gendetect.data.simulator import simulate_transactions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own; cleared before and after
WINDOW_1 = ("2024-01-08", "2024-01-22")  # first champion: held out [22, 29)
WINDOW_2 = ("2024-01-15", "2024-01-29")  # the retraining: held out [29, 36)


def _load_topology() -> ModuleType:
    spec = importlib.util.spec_from_file_location("topology", ROOT / "scripts" / "topology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("topology", module)
    spec.loader.exec_module(module)
    return module


def _postgres_or_skip(topo: Any) -> None:
    try:
        topo.wait_postgres(timeout=5)
    except RuntimeError as exc:
        if os.environ.get("GENDETECT_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {exc}")


def _flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    module = _load_topology()
    root = tmp_path_factory.mktemp("topology")
    t = module.Topology(root, prefix=f"gdtest_life_{uuid.uuid4().hex[:8]}")
    t.redis_url = REDIS_URL
    _postgres_or_skip(t)
    with pytest.MonkeyPatch.context() as mp:
        # The replicas pick up a new champion within a second or two.
        mp.setenv("GENDETECT_MODEL_POLL_SECONDS", "1")
        try:
            t.db_init()
            t.ensure_redis()
            _flush_redis()
            t.start_mlflow()
            yield t
        finally:
            t.down(drop=True)
            _flush_redis()


@pytest.fixture(scope="module")
def data_file(topo: Any) -> Path:
    path = topo.root / "trainer" / "tx.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    simulate_transactions(n_customers=120, n_terminals=240, days=36, seed=3,
                          age_groups=True).to_parquet(path)
    return path


def _client(topo: Any) -> MlflowClient:
    return MlflowClient(tracking_uri=topo.tracking_uri, registry_uri=topo.tracking_uri)


def _config(topo: Any, name: str, **sections: Any) -> str:
    path = topo.root / "trainer" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"model": {"max_epochs": 1, "seed": 0}, **sections}))
    return str(path)


def _record(row: pd.Series) -> dict[str, Any]:
    return {"transaction_id": int(row["transaction_id"]),
            "timestamp": pd.Timestamp(row["timestamp"]).isoformat(),
            "customer_id": int(row["customer_id"]), "terminal_id": int(row["terminal_id"]),
            "amount": float(row["amount"])}


def _between(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    return df[(df["timestamp"] >= start) & (df["timestamp"] < end)]


def _assert_registry_consistent(client: MlflowClient, name: str) -> list[int]:
    """Every version READY with a FINISHED run and its model artifact;
    every alias on such a version."""
    versions = client.search_model_versions(f"name='{name}'")
    for mv in versions:
        assert mv.status == "READY", mv.version
        assert client.get_run(mv.run_id).info.status == "FINISHED", mv.version
        assert mv.tags.get("gendetect.training_key"), mv.version
    finished = {str(mv.version) for mv in versions}
    for alias in client.get_registered_model(name).aliases:
        assert str(client.get_model_version_by_alias(name, alias).version) in finished
    return sorted(int(mv.version) for mv in versions)


class Streamer(threading.Thread):
    """Scores records one at a time, alternating replicas, and records what
    each response said (status, model version)."""

    def __init__(self, urls: list[str], key: str, records: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.urls, self.records = urls, records
        self.headers = {"X-API-Key": key}
        self.results: list[tuple[int, int, str | None]] = []  # (replica, status, version)
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()

    def served(self, replica: int, version: str) -> int:
        return sum(1 for r, s, v in self.results if r == replica and v == version)

    def run(self) -> None:
        clients = [httpx.Client(base_url=u, headers=self.headers, timeout=30) for u in self.urls]
        try:
            for i, body in enumerate(self.records):
                if self._halt.is_set():
                    return
                replica = i % len(clients)
                try:
                    response = clients[replica].post("/v1/score", json=body)
                    version = response.json().get("model", {}).get("version") \
                        if response.status_code == 200 else None
                    self.results.append((replica, response.status_code, version))
                except httpx.HTTPError as exc:
                    self.results.append((replica, -1, type(exc).__name__))
                time.sleep(0.05)
        finally:
            for c in clients:
                c.close()


def test_the_whole_loop(topo: Any, data_file: Path) -> None:
    df = pd.read_parquet(data_file)
    client = _client(topo)
    # 1. Train and register the first champion against the tracking server.
    assert topo.run_trainer(["train", "--model", "vae", "--data", str(data_file),
                             "--since", WINDOW_1[0], "--until", WINDOW_1[1],
                             "--config", _config(topo, "first"), "--alias", "champion",
                             "-q"]) == [0]
    assert _assert_registry_consistent(client, "gendetect") == [1]
    # Against a tracking server MLflow prints "🏃 View run ... at" and "🧪 View
    # experiment at" at each run's end; the job's own summary says where to look.
    trainer_output = (topo.root / "trainer" / "trainer.log").read_text()
    assert "View run" not in trainer_output and "View experiment" not in trainer_output
    assert "MLflow: http" in trainer_output  # training.summary.where_to_look
    # Artifacts went through the server (proxied), not to a local path.
    experiment = client.get_experiment_by_name("gendetect")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    for name in topo_module_replicas(topo):
        # A small drift window, so that this short stream gets a report.
        topo.start_api(name, require_model=True, GENDETECT_DRIFT_WINDOW_ROWS="400")
    urls = [topo.api_url(n) for n in topo_module_replicas(topo)]
    headers = {"X-API-Key": topo.api_key}
    for url in urls:
        info = httpx.get(f"{url}/v1/model", headers=headers, timeout=10).json()
        assert str(info["version"]) == "1", info

    # 2. Score a stream across both replicas (batches, in time order), then
    # post verdicts for it: every fraud and some genuine, one day later.
    stream = _between(df, "2024-01-22", "2024-01-26")
    records = [_record(r) for _, r in stream.iterrows()]
    with httpx.Client(headers=headers, timeout=60) as http:
        for k, start in enumerate(range(0, len(records), 40)):
            response = http.post(f"{urls[k % 2]}/v1/score/batch",
                                 json={"records": records[start : start + 40]})
            assert response.status_code == 200, response.text
        picked = pd.concat([stream[stream["is_fraud"] == 1], stream[stream["is_fraud"] == 0]
                            .head(150)])
        verdicts = [{"transaction_id": int(r["transaction_id"]),
                     "label": "fraud" if r["is_fraud"] else "genuine", "analyst": "lifecycle",
                     "labelled_at": (pd.Timestamp(r["timestamp"]) + pd.Timedelta(days=1))
                     .isoformat()} for _, r in picked.iterrows()]
        for k, start in enumerate(range(0, len(verdicts), 100)):
            response = http.post(f"{urls[k % 2]}/v1/feedback", json=verdicts[start : start + 100])
            assert response.status_code == 200, response.text
            assert not response.json()["unknown"]
        # Each replica reports drift of what it scored on /metrics.
        for url in urls:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = http.get(f"{url}/metrics").text
                if 'gendetect_drift_psi{input="score"}' in text:
                    break
                time.sleep(0.5)
            assert 'gendetect_drift_psi{input="amount"}' in text
            assert "gendetect_drift_detected" in text and "gendetect_drift_level 0.2" in text

    # 3. Retrain on the later window with the stored verdicts while a client
    # keeps scoring on both replicas.
    later = [_record(r) for _, r in _between(df, "2024-01-26", "2024-02-06").iterrows()]
    streamer = Streamer(urls, topo.api_key, later)
    streamer.start()
    try:
        codes = topo.run_trainer(["retrain", "--data", str(data_file), "--models", "vae",
                                  "--since", WINDOW_2[0], "--until", WINDOW_2[1],
                                  "--config", _config(topo, "promote",
                                                      promotion={"min_improvement": -1.0}),
                                  "-q"])
        assert codes == [0]  # promoted
        # Both replicas switch by themselves and serve the new version.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                streamer.served(i, "2") >= 10 for i in range(2)):
            assert streamer.is_alive(), "the stream ran out before both replicas switched"
            time.sleep(0.5)
    finally:
        streamer.halt()
        streamer.join(60)
    failed = [r for r in streamer.results if r[1] != 200]
    assert not failed, failed[:10]
    for replica in range(2):
        seen = [v for r, _, v in streamer.results if r == replica]
        assert seen[0] == "1" and seen[-1] == "2", seen
        switched = seen.index("2")
        assert set(seen[switched:]) == {"2"}  # never back to the old version
    # The registry: two finished versions, the champion moved; the retraining
    # run used the verdicts known by the end of its window.
    assert _assert_registry_consistent(client, "gendetect") == [1, 2]
    assert str(client.get_model_version_by_alias("gendetect", "champion").version) == "2"
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`gendetect.job` = 'retrain'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    labels = json.loads(Path(client.download_artifacts(
        runs[0].info.run_id, "data/labels.json", str(topo.root))).read_text())
    assert labels["sources"]["verdict_store"] == len(verdicts)
    assert labels["known_by"] == "2024-01-29T00:00:00"
    assert runs[0].data.metrics["decision/n_labels"] > 0
    mv = client.get_model_version("gendetect", "2")
    assert mv.tags["gendetect.window.since"] == "2024-01-15T00:00:00"
    assert mv.description.startswith("# gendetect vae detector")
    # Batch scoring against the same server scores with the new champion.
    sample = topo.root / "trainer" / "sample.parquet"
    df[df["timestamp"] >= "2024-02-01"].head(300).to_parquet(sample)
    out = topo.root / "trainer" / "scored.parquet"
    assert topo.run_trainer(["score", "--data", str(sample), "--out", str(out), "-q"]) == [0]
    assert set(pd.read_parquet(out)["gd_model_version"].astype(str)) == {"2"}


def topo_module_replicas(topo: Any) -> tuple[str, ...]:
    return tuple(sys.modules["topology"].API_REPLICAS)


def test_sigkill_mid_retraining_then_a_rerun_leaves_one_consistent_registry(
    topo: Any, data_file: Path
) -> None:
    env = {"GENDETECT_MODEL_NAME": "gdkill", "GENDETECT_EXPERIMENT": "gdkill"}
    client = _client(topo)
    args = ["retrain", "--data", str(data_file), "--models", "vae", "--since", WINDOW_1[0],
            "--until", WINDOW_1[1], "-q"]
    assert topo.run_trainer([*args, "--config", _config(topo, "k1")], env=env) == [0]
    assert _assert_registry_consistent(client, "gdkill") == [1]
    experiment = client.get_experiment_by_name("gdkill").experiment_id

    # A retraining that would run for long, killed while it trains.
    long = _config(topo, "long", model={"max_epochs": 1000, "patience": 1000, "seed": 7})
    log = open(topo.root / "trainer" / "killed.log", "wb")  # noqa: SIM115 - handed to the job
    proc = subprocess.Popen([sys.modules["topology"]._bin("gendetect"), *args, "--config", long],
                            env=topo.env("trainer", **env), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 240
        child = None
        while time.monotonic() < deadline and child is None:
            assert proc.poll() is None, (topo.root / "trainer" / "killed.log").read_text()
            running = client.search_runs(
                [experiment], filter_string="attributes.status = 'RUNNING' and "
                "tags.`gendetect.kind` = 'vae'")
            # Training has started once the child run logged a dataset.
            child = next((r for r in running if r.inputs.dataset_inputs), None)
            time.sleep(0.5)
        assert child is not None, "the retraining never started training"
        time.sleep(2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Nothing half-registered: the killed job left RUNNING runs, no version.
    assert _assert_registry_consistent(client, "gdkill") == [1]
    stale = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
    assert {r.info.run_id for r in stale} >= {child.info.run_id}

    # The rerun marks the dead job's runs FAILED, trains, registers, promotes.
    rerun = _config(topo, "k2", model={"max_epochs": 1, "seed": 7},
                    promotion={"min_improvement": -1.0})
    assert topo.run_trainer([*args, "--config", rerun], env=env) == [0]
    assert _assert_registry_consistent(client, "gdkill") == [1, 2]
    for run in stale:
        after = client.get_run(run.info.run_id)
        assert after.info.status == "FAILED"
        assert after.data.tags["gendetect.end_reason"].startswith("stale:")
    for alias in ("champion", "challenger"):
        assert str(client.get_model_version_by_alias("gdkill", alias).version) == "2"
