"""Batch scoring speed on the model users get: rows/s per stage, end to end
for `gendetect score` (in-process, Parquet to Parquet) and for
`mlflow.pyfunc.load_model(...).predict` (MLflow's generic pyfunc serving
path) with the behaviour features given, one thread, in one run; optionally
Spark features and scoring on the whole handbook file.

    python benchmarks/batch_scoring.py --data ../shared/data [--rows 300000]
        [--kind gan] [--before-src DIR] [--spark] [--clock wall|cpu] [--out benchmarks/results]

Models: the champion `make demo` produces, label-aware (`--kind`, default the
GAN, fitted with the handbook's labels: a training with labels), and beside
it the same kind fitted without labels (the unsupervised champion). Both are
trained here for a few epochs (speed does not depend on how well they
learnt). "Before" in the same run: the label-aware model again with the
head's reference traversal (gendetect.models.labels.reference_decision, the
code before issue 20). --before-src DIR measures both models with the code
in DIR (e.g. a git worktree of an older commit) in a subprocess. Each figure
is the best of --repeats runs (the machine is shared): read the ratios.
Writes batch_scoring.json and batch_scoring.md to --out.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
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
    # GENDETECT_BENCH_SRC: the code to measure (--before-src's subprocess).
    sys.path.insert(0, os.environ.get("GENDETECT_BENCH_SRC")
                    or str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.protocols import RAW_COLUMNS
from gendetect.bundle import SCORE_BLOCK_ROWS, FraudModelBundle

torch.set_num_threads(1)
MODELS = ("label_aware", "unsupervised")
# Stages measured per model, with their labels in the table.
STAGES = {
    "features": "behaviour + derived features",
    "score": "scoring after features (networks, head, risk, flags, explanations of flagged rows)",
    "arrow": "decision columns as Arrow (Parquet)",
    "frame": "decision columns as a DataFrame (pyfunc)",
    "bare_forward": "bare forward pass of the networks (ceiling)",
    "pyfunc_predict": "mlflow.pyfunc predict, behaviour features given",
    "score_file_given": "`gendetect score` Parquet to Parquet, behaviour features given",
    "score_file_computed": "`gendetect score` Parquet to Parquet, behaviour features computed",
}


def load(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "handbook" / "transactions.parquet"
    if not path.is_file():
        sys.exit(f"handbook data not found: {path} (pass --data <shared data folder>)")
    cols = [c for c in RAW_COLUMNS if c != "TX_FRAUD_SCENARIO"]
    df = pd.read_parquet(path, columns=cols).rename(columns=RAW_COLUMNS)
    return df.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)


def clock() -> Callable[[], float]:
    """The clock the stages are timed with: wall time, or with
    GENDETECT_BENCH_CLOCK=cpu (--clock cpu) this process's CPU time, which a
    machine shared with other jobs disturbs far less (one thread scores;
    Arrow's Parquet threads count in it too)."""
    return time.process_time if os.environ.get("GENDETECT_BENCH_CLOCK") == "cpu" \
        else time.perf_counter


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    now = clock()
    times, out = [], None
    for _ in range(repeats):
        t0 = now()
        out = fn()
        times.append(now() - t0)
    return min(times), out


def use_reference(bundle: FraudModelBundle) -> None:
    """Score the label-aware head with the reference traversal ("before")."""
    trees = getattr(bundle.label_head_, "trees", None)
    if trees is not None:
        trees.reference = True


def measure(bundle_dir: Path, raw_file: Path, given_file: Path, work: Path, repeats: int,
            reference: bool = False) -> dict[str, Any]:
    """Seconds per stage for the bundle in `bundle_dir` (only APIs the code
    before issue 20 has too: --before-src runs this with that code)."""
    import mlflow

    from gendetect import tracking
    from gendetect.config import Settings
    from scoring import model_log
    from scoring.batch import score_file

    bundle = FraudModelBundle.load(bundle_dir)
    if reference:
        use_reference(bundle)
    raw, given = pd.read_parquet(raw_file), pd.read_parquet(given_file)
    pipeline = bundle.pipeline

    def features() -> np.ndarray:
        bundle.schema.validate_frame(raw)
        return pipeline.transform(pipeline.batch_columns(raw)[0])

    out: dict[str, Any] = {"rows": len(raw)}
    out["features_s"], x = best(features, repeats)
    out["score_s"], decisions = best(lambda: bundle.score_matrix(x), repeats)
    out["flagged"] = int(decisions.n_flagged)
    out["arrow_s"], _ = best(lambda: decisions.to_arrow("gd_"), repeats)
    out["frame_s"], _ = best(decisions.to_pandas, repeats)
    core = bundle.detector_
    z = torch.as_tensor(core.scaler.transform(x), dtype=torch.float32)

    def forward() -> None:
        with torch.inference_mode():
            for start in range(0, len(z), SCORE_BLOCK_ROWS):
                for member in core.members:
                    member.network.feature_errors(z[start : start + SCORE_BLOCK_ROWS])

    out["bare_forward_s"], _ = best(forward, repeats)
    settings = Settings(home=work, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(settings)):
        ref = model_log.log_bundle(bundle, given.head(5), settings)
    model = mlflow.pyfunc.load_model(f"models:/{ref.name}/{ref.version}")
    if reference:
        use_reference(model.unwrap_python_model().bundle)
    out["pyfunc_predict_s"], _ = best(lambda: model.predict(given), repeats)
    for key, path in (("given", given_file), ("computed", raw_file)):
        out[f"score_file_{key}_s"], _ = best(
            lambda p=path: score_file(bundle, p, work / "scored.parquet"), repeats)
    return out


def readable_bundle(bundle_dir: Path, work: Path) -> tuple[Path, list[str]]:
    """The bundle as the running code reads it. A bundle saves every
    parameter, and code from before a parameter existed refuses the name;
    for --before-src, a copy without the parameters that code does not know
    (reported with the figures: they must be ones the measured model does not
    read, such as the discriminator score's settings of a reconstruction-scored
    GAN, else the comparison is not of the same model)."""
    from gendetect.params import DetectorParams

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    try:
        DetectorParams.from_dict(dict(manifest["params"]))
        return bundle_dir, []
    except ValueError as exc:
        message = str(exc)
        if "unknown detector parameter" not in message:
            raise
    names = ast.literal_eval(message.split(": ", 1)[1])
    params = {k: v for k, v in manifest["params"].items() if k not in names}
    return _with_params(bundle_dir, work / "readable_bundle", manifest, params), sorted(names)


def settled_bundle(bundle_dir: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """For --before-src: a copy whose parameters saved unset (None, resolved
    per score mode by this code, such as `tail_weight`) hold the value this
    code resolves them to; code from before such a default requires the
    number. Returns the copy and the values written."""
    from gendetect.params import DetectorParams

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    params = DetectorParams.from_dict(dict(manifest["params"]))
    settled = {k: getattr(params, f"effective_{k}") for k, v in manifest["params"].items()
               if v is None and hasattr(params, f"effective_{k}")}
    if not settled:
        return bundle_dir, {}
    params = {**manifest["params"], **settled}
    return _with_params(bundle_dir, work / "settled_bundle", manifest, params), settled


def _with_params(bundle_dir: Path, copy: Path, manifest: dict[str, Any],
                 params: dict[str, Any]) -> Path:
    """A copy of the bundle at `copy` whose manifest holds `params`."""
    shutil.copytree(bundle_dir, copy)
    (copy / "bundle.json").write_text(json.dumps({**manifest, "params": params}))
    return copy


def measure_before(src: Path, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "GENDETECT_BENCH_SRC": str(src),
           "OMP_NUM_THREADS": "1"}
    script = str(Path(__file__).resolve())
    done = subprocess.run([sys.executable, script, "--measure", *args], capture_output=True,
                          text=True, env=env, cwd=src)
    if done.returncode != 0:
        # E.g. a bundle whose schema the older code cannot read: say why.
        raise RuntimeError(f"the code in {src} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rates(r: dict[str, Any]) -> dict[str, float]:
    return {k.removesuffix("_s"): r["rows"] / v for k, v in r.items() if k.endswith("_s")}


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
    runs = result["runs"]
    columns = [("label_aware", "label-aware (after)"),
               ("label_aware_reference", "label-aware, reference traversal (before)"),
               ("unsupervised", "unsupervised")]
    columns += [(f"before_{m}", f"{m.replace('_', '-')}, {result['before_src']}")
                for m in MODELS if f"before_{m}" in runs]
    a = runs["label_aware"]
    lines = ["# Batch scoring", "", f"Machine: {result['machine']}; one thread; best of "
             f"{result['repeats']} ({result.get('clock', 'wall')} clock); {a['rows']:,} handbook "
             f"rows; load average {result.get('load', '?')}. Models: {result['models']}", "",
             f"Command: `{result['command']}`", "", "Rows/s:", "",
             "| stage | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for stage, label in STAGES.items():
        cells = [f"{rates(runs[key]).get(stage, float('nan')):,.0f}" for key, _ in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "After / before (same run):", "", "| stage | label-aware vs reference "
              "traversal |" + "".join(f" {m} vs {result['before_src']} |" for m in MODELS
                                      if f"before_{m}" in runs),
              "|---|---:|" + "---:|" * sum(f"before_{m}" in runs for m in MODELS)]
    for stage, label in STAGES.items():
        cells = [rates(a)[stage] / rates(runs["label_aware_reference"])[stage]]
        cells += [rates(runs[m])[stage] / rates(runs[f"before_{m}"])[stage]
                  for m in MODELS if f"before_{m}" in runs]
        lines.append(f"| {label} | " + " | ".join(f"x{c:.2f}" for c in cells) + " |")
    dropped = sorted({n for m in MODELS for n in runs.get(f"before_{m}", {}).get(
        "dropped_params", [])})
    if dropped:
        lines += ["", f"The code in {result['before_src']} read the bundles without the "
                  f"parameters it does not know: {', '.join(dropped)}."]
    if "spark" in result:
        s = result["spark"]
        lines += ["", f"Spark, local[2], the whole handbook file ({s['rows']:,} rows), "
                  "the label-aware model:", "",
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
    p.add_argument("--data", type=Path, help="shared data folder")
    p.add_argument("--rows", type=int, default=300_000, help="rows to score")
    p.add_argument("--train-rows", type=int, default=100_000)
    p.add_argument("--kind", default="gan", help="detector kind of both models")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before-src", type=Path, default=None,
                   help="sources of the code to compare with (e.g. a git worktree)")
    p.add_argument("--spark", action="store_true", help="also Spark on the whole file")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="time stages by wall clock or by this process's CPU time (a busy "
                        "machine); the --before-src run uses the same")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--measure", nargs=5, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure is not None:  # --before-src's subprocess
        bundle_dir, raw, given, work, repeats = args.measure
        readable, dropped = readable_bundle(Path(bundle_dir), Path(work))
        out = measure(readable, Path(raw), Path(given), Path(work), int(repeats))
        print(json.dumps({**out, "dropped_params": dropped}))
        return 0
    if args.data is None:
        sys.exit("--data is required")
    os.environ["GENDETECT_BENCH_CLOCK"] = args.clock  # --before-src's subprocess inherits it
    from gendetect.features.window_engine import add_window_features
    from gendetect.features.windows import WindowConfig

    df = load(args.data)
    # Training rows from the middle, after the 37-day window reach; scored
    # rows: the first --rows of the file (their own history, as a file).
    train = _with_history(df, df.iloc[400_000 : 400_000 + args.train_rows])
    # The file keeps its label column (the delayed terminal risk reads it);
    # the frame with the behaviour features given has none, as in production.
    rows = df.iloc[: args.rows]
    given = add_window_features(df.iloc[: args.rows], WindowConfig()).drop(columns=["is_fraud"])
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}, torch {torch.__version__}",
        "command": "python benchmarks/batch_scoring.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "repeats": args.repeats, "runs": {}, "clock": args.clock,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw_file, given_file = work / "rows.parquet", work / "given.parquet"
        rows.to_parquet(raw_file, index=False)
        given.to_parquet(given_file, index=False)
        described = []
        for model in MODELS:
            bundle = FraudModelBundle(args.kind, schema="transactions", max_epochs=args.epochs,
                                      seed=0, accelerator="cpu")
            bundle.fit(train, "is_fraud" if model == "label_aware" else None)
            labels = bundle.label_summary_
            described.append(f"{model.replace('_', '-')}: {args.kind} fitted on "
                             f"{len(train):,} rows ({labels['frauds']:,} confirmed frauds), "
                             f"mode {labels['mode']}, {labels.get('trees', 0)} trees")
            bundle.save(work / model)
            if model == "label_aware":
                label_aware = bundle
            plans = [(model, False)] + ([(f"{model}_reference", True)]
                                        if model == "label_aware" else [])
            for key, reference in plans:
                (work / key).mkdir(exist_ok=True)
                result["runs"][key] = measure(work / model, raw_file, given_file,
                                              work / key, args.repeats, reference)
                print(key, json.dumps(rates(result["runs"][key])), flush=True)
            if args.before_src is not None:
                (work / f"before_{model}").mkdir()
                settled, values = settled_bundle(work / model, work / f"before_{model}")
                if values:
                    print(f"before_{model}: unset parameters given as {values}", flush=True)
                result["runs"][f"before_{model}"] = measure_before(args.before_src, [
                    str(settled), str(raw_file), str(given_file),
                    str(work / f"before_{model}"), str(args.repeats)])
                result["before_src"] = str(args.before_src)
        result["models"] = "; ".join(described)
        if args.spark:
            result["spark"] = spark_run(args.data, label_aware, work / "label_aware")
            print("spark", json.dumps(result["spark"]))
    result["load"] = " ".join(f"{v:.2f}" for v in os.getloadavg())  # at the end of the run
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
