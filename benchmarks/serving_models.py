"""The models the serving benchmarks serve, and the requests they send.

- `demo_champions`: the champion `make demo` produces (scripts/demo.sh:
  `gendetect simulate --days 75 --seed 0 --age-groups`, then `gendetect
  retrain --models vae,gan`, which trains with the file's fraud labels and
  so registers a label-aware model when there are enough of them), and
  beside it the unsupervised champion: the same kind on the same data
  with the label head off (`label_min_frauds` beyond any count), registered
  under `<name>-unsupervised`. Made with the same commands, in a home of
  the benchmark's own; or taken from an existing home (`--home .gendetect`
  after `make demo`; the unsupervised one is trained there once if missing).
- `train_and_register`: the older benchmarks' small unsupervised VAE.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

UNSUPERVISED = "-unsupervised"
DEMO_DATA = Path("data") / "transactions.parquet"  # under the home, as scripts/demo.sh


def _gendetect(args: list[str], home: Path, **env: str) -> int:
    full_env = {**os.environ, "GENDETECT_HOME": str(home), "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", **env}
    for key in ("GENDETECT_TRACKING_URI", "MLFLOW_TRACKING_URI", "GENDETECT_MODEL_NAME"):
        if key not in env:
            full_env.pop(key, None)
    cmd = [sys.executable, "-m", "gendetect.cli", *args]
    print("  $", " ".join(cmd[2:]), flush=True)
    return subprocess.run(cmd, env=full_env, check=False).returncode


def _retrain(home: Path, data: Path, models: str, epochs: int | None,
             config: Path | None = None, **env: str) -> None:
    args = ["retrain", "--data", str(data), "--models", models, "--quiet"]
    if config is not None:
        args += ["--config", str(config)]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    code = _gendetect(args, home, **env)
    if code not in (0, 3):  # 3: the champion was kept (a rerun)
        raise RuntimeError(f"gendetect retrain failed (exit {code})")


def _registered(tracking_uri: str, name: str) -> bool:
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri
                     ).get_model_version_by_alias(name, "champion")
        return True
    except Exception:
        return False


def describe(tracking_uri: str, home: Path, uri: str) -> dict[str, Any]:
    """Kind, version and label mode of a registered model."""
    from gendetect import tracking
    from gendetect.config import Settings

    settings = Settings(home=home, tracking_uri=tracking_uri)
    bundle, ref = tracking.load_registered_bundle(uri, settings)
    return {"uri": uri, "version": ref.version, "kind": bundle.kind,
            "label_mode": bundle.label_summary_.get("mode")}


def demo_champions(home: Path, *, days: int, customers: int, epochs: int | None,
                   model_name: str = "gendetect") -> tuple[str, dict[str, str]]:
    """(tracking URI, {"label-aware": uri, "unsupervised": uri}); trains what
    `home` does not hold yet, the way the demo does."""
    home.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    data = home / DEMO_DATA
    if not _registered(tracking_uri, model_name):
        if not data.exists():
            code = _gendetect(["simulate", "--days", str(days), "--seed", "0", "--customers",
                               str(customers), "--terminals", str(2 * customers),
                               "--age-groups", "--out", str(data)], home)
            if code:
                raise RuntimeError(f"gendetect simulate failed (exit {code})")
        _retrain(home, data, "vae,gan", epochs, GENDETECT_MODEL_NAME=model_name)
    champion = f"models:/{model_name}@champion"
    unsupervised = f"{model_name}{UNSUPERVISED}"
    if not _registered(tracking_uri, unsupervised):
        kind = describe(tracking_uri, home, champion)["kind"]
        config = home / "unsupervised.yaml"
        # The label head needs at least label_min_frauds confirmed frauds:
        # more than any data set holds means the unsupervised detector.
        config.write_text("model:\n  label_min_frauds: 1000000000\n")
        _retrain(home, data, kind, epochs, config, GENDETECT_MODEL_NAME=unsupervised)
    return tracking_uri, {"label-aware": champion,
                          "unsupervised": f"models:/{unsupervised}@champion"}


def train_and_register(home: Path) -> str:
    """A small registered unsupervised VAE in a fresh SQLite store; returns
    the store's URI (the older benchmarks' model)."""
    import mlflow
    import torch

    from gendetect import tracking
    from gendetect.bundle import FraudModelBundle
    from gendetect.config import Settings
    from gendetect.data.simulator import simulate_transactions
    from scoring import model_log

    torch.set_num_threads(1)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    settings = Settings(home=home, tracking_uri=uri)
    data = simulate_transactions(n_customers=300, n_terminals=600, days=25, seed=0)
    bundle = FraudModelBundle("vae", schema="transactions", max_epochs=2, seed=0,
                              accelerator="cpu").fit(data)
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(settings)):
        ref = model_log.log_bundle(bundle, data.drop(columns=["is_fraud"]).head(5), settings)
    tracking.set_alias(settings, settings.champion_alias, ref.version)
    return uri


def request_records(n: int, *, customers: int = 300, days: int = 30,
                    start_day: int = 25) -> list[dict[str, Any]]:
    """`n` transactions from day `start_day` on (after a model's training
    period), in time order (the online state sees a realistic stream), with
    distinct ids (fresh ones when more are needed than simulated)."""
    from gendetect.data.simulator import simulate_transactions

    data = simulate_transactions(n_customers=customers, n_terminals=2 * customers, days=days,
                                 seed=1)
    data = data[data["timestamp"] >= data["timestamp"].min() + np.timedelta64(start_day, "D")]
    rows = data.sort_values(["timestamp", "transaction_id"]).to_dict("records")
    out = []
    for i in range(n):
        row = rows[i % len(rows)]
        out.append({
            "transaction_id": int(row["transaction_id"]) + 10_000_000 * (i // len(rows) + 1),
            "timestamp": row["timestamp"].isoformat(),
            "customer_id": int(row["customer_id"]),
            "terminal_id": int(row["terminal_id"]),
            "amount": float(row["amount"]),
            # Optional for gendetect; required by the pyfunc's inferred signature.
            "fraud_scenario": 0,
        })
    return out
