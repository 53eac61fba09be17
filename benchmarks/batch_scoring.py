"""Batch scoring speed: rows/s per stage and end to end for `gendetect score`
(in-process), mlflow.pyfunc predict on the same rows and the bare forward
pass of the same networks (the ceiling), one thread, in one run; optionally
Spark features and scoring on the whole handbook file, with the ratio to the
single-machine engine.

    python benchmarks/batch_scoring.py --data ../shared/data [--rows 300000]
        [--before-src DIR] [--spark] [--out benchmarks/results]

The model is the default champion of `make demo` (the GAN on gendetect's 20
features), trained here for a few epochs on the handbook rows before the
scored ones (speed does not depend on how well it learnt). --before-src runs
the same stages with the code in DIR (e.g. a git worktree of an older
commit) in a subprocess, for a before/after table. Each figure is the best
of --repeats runs (the machine is shared). Writes batch_scoring.json and
batch_scoring.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.protocols import RAW_COLUMNS
from gendetect.bundle import SCORE_BLOCK_ROWS, FraudModelBundle

torch.set_num_threads(1)


def load(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "handbook" / "transactions.parquet"
    if not path.is_file():
        sys.exit(f"handbook data not found: {path} (pass --data <shared data folder>)")
    cols = [c for c in RAW_COLUMNS if c != "TX_FRAUD_SCENARIO"]
    df = pd.read_parquet(path, columns=cols).rename(columns=RAW_COLUMNS)
    return df.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def stages(bundle: FraudModelBundle, df: pd.DataFrame, repeats: int) -> dict[str, float]:
    pipeline = bundle.pipeline
    assert pipeline is not None

    def features() -> np.ndarray:
        bundle.schema.validate_frame(df)
        return pipeline.transform(pipeline.batch_columns(df)[0])

    t_feat, x = best(features, repeats)
    t_score, decisions = best(lambda: bundle.score_matrix(x), repeats)
    t_arrow, _ = best(lambda: decisions.to_arrow("gd_"), repeats)
    core = bundle.detector_
    assert core is not None
    z = torch.as_tensor(core.scaler.transform(x), dtype=torch.float32)
    networks = [m.network for m in core.members]

    def forward() -> None:
        with torch.inference_mode():
            for start in range(0, len(z), SCORE_BLOCK_ROWS):
                for network in networks:
                    network.feature_errors(z[start : start + SCORE_BLOCK_ROWS])

    t_bare, _ = best(forward, repeats)
    n = len(df)
    return {
        "rows": n,
        "flagged": decisions.n_flagged,
        "features_s": t_feat,
        "score_s": t_score,
        "assemble_s": t_arrow,
        "end_to_end_s": t_feat + t_score + t_arrow,
        "bare_forward_s": t_bare,
    }


def rates(r: dict[str, float]) -> dict[str, float]:
    n = r["rows"]
    out = {k.removesuffix("_s") + "_rows_per_s": n / v for k, v in r.items() if k.endswith("_s")}
    bare = out["bare_forward_rows_per_s"]
    out["score_vs_bare"] = out["score_rows_per_s"] / bare
    out["end_to_end_vs_bare"] = out["end_to_end_rows_per_s"] / bare
    return out


# The old code's batch path (before column-wise scoring), run in a
# subprocess with its own sources first on sys.path.
_BEFORE = r"""
import json, sys, time, torch, numpy as np, pandas as pd
torch.set_num_threads(1)
from gendetect.bundle import FraudModelBundle
from gendetect.decisions import explanations_as_json
b = FraudModelBundle.load(sys.argv[1]); df = pd.read_parquet(sys.argv[2]); reps = int(sys.argv[3])
def best(fn):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t0)
    return min(ts), out
t_feat, x = best(lambda: (b.schema.validate_frame(df), b.pipeline.transform_frame(df))[1])
t_net, parts = best(lambda: b.core.score_parts(x))
t_dec, dec = best(lambda: pd.DataFrame(b._decisions(*parts)))
t_json, _ = best(lambda: explanations_as_json(dec.copy()))
z = torch.as_tensor(b.core.scaler.transform(x), dtype=torch.float32)
def fwd():
    with torch.inference_mode():
        for m in b.core.members: m.module.model.feature_errors(z)
t_bare, _ = best(fwd)
print(json.dumps({"rows": len(df), "features_s": t_feat, "score_s": t_net + t_dec,
  "assemble_s": t_json, "end_to_end_s": t_feat + t_net + t_dec + t_json,
  "bare_forward_s": t_bare, "networks_s": t_net, "decisions_s": t_dec}))
"""


def before(src: Path, bundle_dir: Path, rows_file: Path, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _BEFORE, str(bundle_dir), str(rows_file),
                          str(repeats)], capture_output=True, text=True, env=env, cwd=src)
    if out.returncode != 0:
        # E.g. a bundle whose schema the older code cannot read: say why.
        raise RuntimeError(f"the code in {src} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pyfunc_predict(bundle: FraudModelBundle, df: pd.DataFrame, work: Path,
                   repeats: int) -> float:
    import mlflow

    from gendetect import tracking
    from gendetect.config import Settings
    from scoring import model_log

    settings = Settings(home=work, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = tracking.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment):
        ref = model_log.log_bundle(bundle, df.drop(columns=["is_fraud"]).head(5), settings)
    model = mlflow.pyfunc.load_model(f"models:/{ref.name}/{ref.version}")
    seconds, _ = best(lambda: model.predict(df), repeats)
    return seconds


def score_file_seconds(bundle: FraudModelBundle, path: Path, work: Path) -> dict[str, Any]:
    from scoring.batch import score_file

    t0 = time.perf_counter()
    summary = score_file(bundle, path, work / "scored.parquet")
    total = time.perf_counter() - t0
    return {"total_s": total, **{f"{k}_s": v for k, v in summary.seconds.items()},
            "chunks": summary.chunks}


def spark_run(data_dir: Path, bundle: FraudModelBundle, work: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from gendetect.features.window_engine import add_window_features
    from scoring.spark import spark_session, window_features

    config = bundle.pipeline.window_config
    df = load(data_dir)
    raw = work / "handbook.parquet"
    df.to_parquet(raw, index=False)
    t0 = time.perf_counter()
    engine = add_window_features(df, config)
    engine_s = time.perf_counter() - t0
    spark = spark_session("local[2]", "gendetect-bench", {"spark.sql.shuffle.partitions": "8"})
    spark.sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()
    window_features(spark.read.parquet(str(raw)), config).write.mode("overwrite").parquet(
        str(work / "spark_features"))
    spark_s = time.perf_counter() - t0
    got = pd.read_parquet(work / "spark_features").sort_values("transaction_id")
    want = engine.sort_values("transaction_id")
    diff = max(float(np.max(np.abs(got[n].to_numpy() - want[n].to_numpy())))
               for n in config.feature_names)
    result = {"rows": len(df), "engine_features_s": engine_s, "spark_features_s": spark_s,
              "spark_vs_engine": engine_s / spark_s, "max_abs_difference": diff,
              "agree_1e-9": diff <= 1e-9}
    try:
        import mlflow

        from gendetect import tracking
        from gendetect.config import Settings
        from scoring.spark import score

        settings = Settings(home=work, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
        tracking.configure(settings)
        ref = mlflow.search_model_versions(filter_string=f"name='{settings.model_name}'")[0]
        uri = f"models:/{ref.name}/{ref.version}"
        featured = spark.read.parquet(str(work / "spark_features"))
        t0 = time.perf_counter()
        score(featured, uri).select("transaction_id", "gd_score").write.mode(
            "overwrite").parquet(str(work / "spark_scored"))
        result["spark_score_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        bundle.score_batch(engine)
        result["engine_score_s"] = time.perf_counter() - t0
        result["spark_score_vs_engine"] = result["engine_score_s"] / result["spark_score_s"]
        scored = spark.read.parquet(str(work / "spark_scored")).agg(F.count(F.lit(1))).first()
        result["spark_scored_rows"] = int(scored[0])
    finally:
        spark.stop()
    return result


def write(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "batch_scoring.json").write_text(json.dumps(result, indent=2) + "\n")
    a = result["after"]
    ra = rates(a)
    lines = ["# Batch scoring", "", f"Machine: {result['machine']}; one thread; best of "
             f"{result['repeats']}; {a['rows']:,} handbook rows, the GAN champion "
             f"(20 features), {a['flagged']:,} flagged and explained.", "",
             f"Command: `{result['command']}`", "",
             "| stage | rows/s | vs bare forward |", "|---|---:|---:|"]
    bare = ra["bare_forward_rows_per_s"]
    for key, label in (("features", "behaviour + derived features"),
                       ("score", "scoring after features (networks, risk, flags, "
                        "explanations of flagged rows)"),
                       ("assemble", "output columns (Arrow)"),
                       ("end_to_end", "end to end, excluding file read/write"),
                       ("bare_forward", "bare forward pass (ceiling)")):
        rate = ra[f"{key}_rows_per_s"]
        lines.append(f"| {label} | {rate:,.0f} | {rate / bare:.2f} |")
    if "pyfunc_predict_s" in result:
        rate = a["rows"] / result["pyfunc_predict_s"]
        lines.append(f"| mlflow.pyfunc predict (same rows, features computed inside) | "
                     f"{rate:,.0f} | {rate / bare:.2f} |")
    if "score_file" in result:
        sf = result["score_file"]
        lines.append(f"| `gendetect score` in-process, with Parquet read and write | "
                     f"{a['rows'] / sf['total_s']:,.0f} | {a['rows'] / sf['total_s'] / bare:.2f} |")
    if "before" in result:
        b = result["before"]
        rb = rates(b)
        lines += ["", f"Before (`{result['before_src']}`), same rows and model:", "",
                  "| stage | before rows/s | after rows/s | speed-up |", "|---|---:|---:|---:|"]
        for key in ("features", "score", "assemble", "end_to_end", "bare_forward"):
            x, y = rb[f"{key}_rows_per_s"], ra[f"{key}_rows_per_s"]
            lines.append(f"| {key} | {x:,.0f} | {y:,.0f} | x{y / x:.1f} |")
    if "spark" in result:
        s = result["spark"]
        lines += ["", f"Spark, local[2], the whole handbook file ({s['rows']:,} rows):", "",
                  f"- behaviour features: Spark {s['spark_features_s']:.1f} s, single-machine "
                  f"engine {s['engine_features_s']:.1f} s (Spark/engine speed "
                  f"{s['spark_vs_engine']:.2f}); max difference {s['max_abs_difference']:.2g} "
                  f"(1e-9: {s['agree_1e-9']})"]
        if "spark_score_s" in s:
            lines.append(f"- scoring through spark_udf: {s['spark_score_s']:.1f} s, single "
                         f"machine {s['engine_score_s']:.1f} s (Spark/engine speed "
                         f"{s['spark_score_vs_engine']:.2f})")
    md = out_dir / "batch_scoring.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="shared data folder")
    p.add_argument("--rows", type=int, default=300_000, help="rows to score")
    p.add_argument("--train-rows", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before-src", type=Path, default=None,
                   help="sources of the code to compare with (e.g. a git worktree)")
    p.add_argument("--spark", action="store_true", help="also Spark on the whole file")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    df = load(args.data)
    # Training rows from the middle, after the 37-day window reach; scored
    # rows: the first --rows of the file (their own history, as a file).
    train = df.iloc[400_000 : 400_000 + args.train_rows]
    rows = df.iloc[: args.rows].copy()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = FraudModelBundle("gan", schema="transactions", max_epochs=args.epochs, seed=0,
                                  accelerator="cpu")
        bundle.fit(_with_history(df, train))
        bundle.save(work / "bundle")
        rows_file = work / "rows.parquet"
        rows.to_parquet(rows_file, index=False)
        result: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                       f"Python {platform.python_version()}, torch {torch.__version__}",
            "command": "python benchmarks/batch_scoring.py " + " ".join(
                sys.argv[1:] if argv is None else argv),
            "repeats": args.repeats,
        }
        result["after"] = stages(bundle, rows, args.repeats)
        print("after", json.dumps(rates(result["after"])))
        result["score_file"] = score_file_seconds(bundle, rows_file, work)
        result["pyfunc_predict_s"] = pyfunc_predict(bundle, rows, work, args.repeats)
        if args.before_src is not None:
            result["before_src"] = str(args.before_src)
            result["before"] = before(args.before_src, work / "bundle", rows_file, args.repeats)
            print("before", json.dumps(rates(result["before"])))
        if args.spark:
            result["spark"] = spark_run(args.data, bundle, work)
            print("spark", json.dumps(result["spark"]))
    md = write(result, args.out)
    print(md.read_text())
    return 0


def _with_history(df: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """The training rows with their behaviour features over the full
    history before them (given as columns, so fit uses them as they are)."""
    from gendetect.features.window_engine import add_window_features
    from gendetect.features.windows import WindowConfig

    start = train["timestamp"].min() - pd.Timedelta(days=38)
    span = df[(df["timestamp"] >= start) & (df["timestamp"] <= train["timestamp"].max())]
    featured = add_window_features(span, WindowConfig())
    return featured[featured["transaction_id"].isin(train["transaction_id"])]


if __name__ == "__main__":
    raise SystemExit(main())
