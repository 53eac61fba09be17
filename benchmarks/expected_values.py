"""Explanations against normal (issue 21, item 6): what an explanation's
expected values say and what they cost.

Quality: a model is trained on simulated traffic; scenario 3 (a third of a
card's transactions, amount x5) is applied to a fifth of the cards in the
last week, and for the flagged frauds the expected amount is compared with
the card's median training amount, three ways: the whole record's
reconstruction, the reconstruction with the amount withheld (what the
explanations use), and that repeated (the withheld cells replaced by their
reconstruction, 3 and 10 passes).

Speed: `score_matrix` on behaviour-featured simulated rows (200k explain
flagged, 20k explain all, one record at a time with explain all as the API
does), for a VAE and a label-aware GAN; with --before-src DIR the same
bundles are timed with the code in DIR in a subprocess (the bundle format
is unchanged). Best of --repeats; the machine is shared: read the ratios.

    python benchmarks/expected_values.py [--customers 150] [--days 45]
        [--before-src DIR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.environ.get("GENDETECT_BENCH_SRC")
                    or str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import torch

from gendetect.bundle import FraudModelBundle
from gendetect.data.simulator import compromise_cards, simulate_transactions

torch.set_num_threads(1)
AMOUNT_GROUP = ("amount", "log_amount", "amount_vs_customer_7d", "amount_vs_customer_30d")


def quality(kind: str, customers: int, days: int, seed: int) -> dict[str, Any]:
    history = simulate_transactions(n_customers=customers, n_terminals=2 * customers,
                                    days=days, seed=seed)
    history = history.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)
    times = pd.to_datetime(history["timestamp"])
    since = times.max().normalize() - pd.Timedelta(days=7)
    train = history[times < since]
    bundle = FraudModelBundle(kind, schema="transactions", seed=0, accelerator="cpu",
                              alert_rate=0.05).fit(train)
    cards = np.random.default_rng(0).choice(history["customer_id"].unique(),
                                            size=customers // 5, replace=False)
    compromised = compromise_cards(history, cards, since, seed=0)
    injected = ((compromised["is_fraud"] == 1) & (history["is_fraud"] == 0)).to_numpy()
    frauds = bundle.pipeline.with_window_features(compromised)[injected]
    flagged = frauds[bundle.predict(frauds) == 1]
    x = bundle.features(flagged)
    names = bundle.feature_names
    group = np.zeros(x.shape, dtype=bool)
    group[:, [names.index(n) for n in AMOUNT_GROUP]] = True
    usual = train.groupby("customer_id")["amount"].median().reindex(flagged["customer_id"])
    usual = usual.to_numpy()
    observed = flagged["amount"].to_numpy()
    detector, col = bundle.detector_, names.index("amount")

    def repeated(passes: int) -> np.ndarray:
        guess = x.copy()
        for _ in range(passes):
            answer = detector.expected(guess, group if _ == 0 else np.zeros_like(group))
            assert answer is not None
            guess = np.where(group, answer, x)
        return guess[:, col]

    ways = {
        "whole record": detector.expected(x, np.zeros_like(group))[:, col],  # type: ignore[index]
        "amount withheld (used)": repeated(1),
        "withheld, 3 passes": repeated(3),
        "withheld, 10 passes": repeated(10),
    }
    out: dict[str, Any] = {"kind": kind, "flagged_frauds": len(flagged)}
    for way, expected in ways.items():
        off = np.abs(np.log(np.maximum(expected, 0.01) / usual))
        out[way] = {
            "median_factor": float(np.exp(np.median(off))),
            "within_x2": float(np.mean(off < np.log(2.0))),
            "closer_than_observed": float(np.mean(off < np.abs(np.log(observed / usual)))),
        }
    return out


def featured_rows(work: Path) -> Path:
    """~230k simulated rows with their behaviour features; two bundles
    trained on the rows that are not timed plus a sample of the timed ones."""
    history = simulate_transactions(n_customers=4000, n_terminals=8000, days=30, seed=1)
    history = history.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)
    probe = FraudModelBundle("vae", schema="transactions")
    probe.fit(history.head(2000), None)  # a pipeline to compute the features with
    featured = probe.pipeline.with_window_features(history)
    path = work / "featured.parquet"
    featured.to_parquet(path)
    train = pd.concat([featured.iloc[200_000:], featured.iloc[:200_000].sample(30_000,
                                                                             random_state=0)])
    train = train.sort_values(["timestamp", "transaction_id"])
    for kind, labels in (("vae", None), ("gan", "is_fraud")):
        FraudModelBundle(kind, schema="transactions", max_epochs=2, seed=0,
                         accelerator="cpu").fit(train, labels).save(work / kind)
    return path


def speed(work: Path, repeats: int) -> dict[str, Any]:
    featured = pd.read_parquet(work / "featured.parquet").iloc[:200_000]
    out: dict[str, Any] = {}
    for kind in ("vae", "gan"):
        bundle = FraudModelBundle.load(work / kind)
        out[kind] = _speed_of(bundle, bundle.features(featured), repeats)
    return out


def _speed_of(bundle: FraudModelBundle, x: np.ndarray, repeats: int) -> dict[str, Any]:
    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def one_by_one() -> None:
        for i in range(2000):
            bundle.score_matrix(x[i : i + 1], explain="all").records()

    return {
        "flagged_200k_s": timed(lambda: bundle.score_matrix(x, explain="flagged")),
        "none_200k_s": timed(lambda: bundle.score_matrix(x, explain="none")),
        "all_20k_s": timed(lambda: bundle.score_matrix(x[:20_000], explain="all")),
        "one_record_us": timed(one_by_one) / 2000 * 1e6,
        "flagged_rows": int(bundle.score_matrix(x, explain="flagged").n_flagged),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=150)
    p.add_argument("--days", type=int, default=45)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before-src", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure is not None:  # the --before-src subprocess
        print(json.dumps(speed(args.measure, args.repeats)))
        return
    result: dict[str, Any] = {
        "quality": [quality(k, args.customers, args.days, args.seed) for k in ("vae", "ensemble")]
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        featured_rows(work)
        result["speed_after"] = speed(work, args.repeats)
        if args.before_src is not None:
            env = {**os.environ, "GENDETECT_BENCH_SRC": str(args.before_src.resolve())}
            done = subprocess.run(
                [sys.executable, __file__, "--measure", str(work), "--repeats",
                 str(args.repeats)], env=env, capture_output=True, text=True, check=True)
            result["speed_before"] = json.loads(done.stdout.strip().splitlines()[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "expected_values.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
