"""What the behaviour (window) features buy, per fraud scenario.

Trains the same detector twice on simulated transactions: once with the
stateless features only (amount, time of day, weekend, night), once with the
full pipeline (customer and terminal windows, amount against the customer's
history), and reports ROC AUC and average precision on the held-out week for
each fraud scenario (that scenario's frauds against all genuine rows).

    python benchmarks/scenario_quality.py [--days 75] [--kinds vae,gan,ensemble]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gendetect import metrics
from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import simulate_transactions
from gendetect.schema import Schema, load_schema
from training.config import load_config
from training.data import prepare_data

RESULTS = Path(__file__).resolve().parent / "results"


def stateless_schema() -> Schema:
    full = load_schema("transactions")
    derived = tuple(d for d in full.derived if d.by is None)
    return replace(full, derived=derived, windows=None, _by_name={})


def per_scenario(y: np.ndarray, scenario: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {
        "roc_auc": metrics.roc_auc(y, scores),
        "average_precision": metrics.average_precision(y, scores),
    }
    genuine = y == 0
    for k in (1, 2, 3):
        rows = genuine | (scenario == k)
        out[f"roc_auc_s{k}"] = metrics.roc_auc(y[rows], scores[rows])
        out[f"average_precision_s{k}"] = metrics.average_precision(y[rows], scores[rows])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="vae,gan,ensemble")
    args = parser.parse_args()
    torch.set_num_threads(1)

    df = simulate_transactions(days=args.days, seed=args.seed)
    config = load_config()
    data = prepare_data(df, config, source="simulator")
    assert data.test is not None
    y = data.test["is_fraud"].to_numpy()
    scenario = data.test["fraud_scenario"].to_numpy()
    rows = []
    for kind in args.kinds.split(","):
        for label, schema in (("stateless", stateless_schema()), ("behaviour", data.schema)):
            started = time.perf_counter()
            bundle = FraudModelBundle(kind, schema=schema, **config.model_params()).fit(data.train)
            scores = bundle.decision_function(data.test)
            row = {"kind": kind, "features": label, "n_features": len(bundle.feature_names),
                   "fit_seconds": round(time.perf_counter() - started, 1),
                   **per_scenario(y, scenario, scores)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    lines = [
        "# Behaviour features per fraud scenario (simulated, held-out week)",
        "",
        f"`python benchmarks/scenario_quality.py --days {args.days} --seed {args.seed}`: "
        f"{len(data.train):,} training rows, {len(data.test):,} held-out rows "
        f"({int(y.sum())} frauds: " + ", ".join(
            f"scenario {k}: {int((scenario == k).sum())}" for k in (1, 2, 3)) + ").",
        "",
        "| model | features | ROC AUC | AP | ROC s1 | AP s1 | ROC s2 | AP s2 | ROC s3 | AP s3 "
        "| fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[k]:.3f}" for k in ("roc_auc", "average_precision", "roc_auc_s1",
                                         "average_precision_s1", "roc_auc_s2",
                                         "average_precision_s2", "roc_auc_s3",
                                         "average_precision_s3")]
        lines.append(f"| {r['kind']} | {r['features']} ({r['n_features']}) | "
                     + " | ".join(cells) + f" | {r['fit_seconds']} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scenarios.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "scenarios.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
