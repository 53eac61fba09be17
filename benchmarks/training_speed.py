"""Training speed: gendetect's VAE, GAN and ensemble against PyOD's
AutoEncoder and VAE, for the same number of epochs, in one process.

    python benchmarks/training_speed.py --data ../shared/data
        [--epochs-handbook 5] [--epochs-1m 2] [--rows 1000000]
        [--detectors a,b] [--datasets handbook,simulated] [--quick] [--out DIR]

Datasets: (a) the handbook training set of the first test week (15 features,
StandardScaler fit on it, exactly the matrix the quality benchmark uses);
(b) `--rows` simulated transactions (`gendetect.data.simulator`, seed 0) run
through gendetect's own feature pipeline (schema "transactions": derived and
window features), then standardised. Every detector gets the same float
matrix, as in the quality benchmark; feature computation is timed separately
and is not part of any fit.

Every detector on a dataset trains for exactly the same number of epochs:
gendetect with max_epochs=E and early stopping disabled, PyOD with
epoch_num=E and its library defaults otherwise (verbose=0, device="cpu",
random_state=0). The timed call is `.fit(X)` for all of them; "training loop"
is the part of it spent in the epochs themselves (Lightning's fit for
gendetect, PyOD's `train()`). Ratios are PyOD s/epoch divided by the row's
s/epoch: above 1 means the row trains faster than that PyOD model.

Writes training_speed.md and training_speed.json to --out (default
benchmarks/results; --quick writes training_speed_quick.*).
"""

from __future__ import annotations

import os

# Pin every thread pool before numpy/torch load (as benchmarks/quality.py):
# the project benchmarks at one thread on a shared 2-core machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import protocols  # noqa: E402
from benchmarks.peers import GENDETECT_KINDS  # noqa: E402
from benchmarks.quality import _log, environment  # noqa: E402

SEED = 0
# Lightning's EarlyStopping never fires within E epochs with this patience.
NO_EARLY_STOPPING = 1_000_000

PYOD_CLASSES: dict[str, str] = {
    "pyod_autoencoder": "pyod.models.auto_encoder.AutoEncoder",
    "pyod_vae": "pyod.models.vae.VAE",
}
ALL_DETECTORS: tuple[str, ...] = (
    *(f"gendetect_{k}" for k in GENDETECT_KINDS),
    *PYOD_CLASSES,
)
AE, PVAE = "pyod_autoencoder", "pyod_vae"
# The simulator's default 5000 customers give ~9,700 transactions a day.
SIM_ROWS_PER_DAY = 9_000
WARM_UP_ROWS = 512
QUICK_HANDBOOK_ROWS = 5_000
QUICK_ROWS = 20_000
QUICK_EPOCHS_HANDBOOK = 2
QUICK_EPOCHS_1M = 1


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    key: str
    title: str
    x: np.ndarray
    epochs: int
    info: dict[str, Any]


def handbook_dataset(data_dir: Path, epochs: int, max_rows: int | None) -> Dataset:
    """The first test week's training rows, scaled as in the quality benchmark."""
    started = time.perf_counter()
    df = protocols.load_handbook(data_dir)
    start = protocols.HANDBOOK_TEST_STARTS[0]
    week = protocols.handbook_week(df, start, max_train_rows=max_rows)
    days = week.train["TX_DATETIME"].dt.date
    return Dataset(
        key="handbook",
        title=f"Handbook training set (test week {start}, {len(protocols.HANDBOOK_FEATURES)} "
        "features)",
        x=np.ascontiguousarray(week.x_train),
        epochs=epochs,
        info={
            "source": str(protocols.handbook_path(data_dir)),
            "test_start": start,
            "train_days": f"{days.min()}..{days.max()}",
            "features": list(protocols.HANDBOOK_FEATURES),
            "scaling": "StandardScaler fit on the training rows",
            "max_train_rows": max_rows,
            "prepare_seconds": time.perf_counter() - started,
        },
    )


def simulated_dataset(rows: int, epochs: int) -> Dataset:
    """`rows` simulated transactions through gendetect's feature pipeline."""
    from gendetect.data.simulator import simulate_transactions
    from gendetect.features.pipeline import FeaturePipeline
    from gendetect.schema import load_schema

    started = time.perf_counter()
    days = max(8, math.ceil(1.1 * rows / SIM_ROWS_PER_DAY))
    while True:
        frame = simulate_transactions(days=days, seed=SEED)
        if len(frame) >= rows:
            break
        days = math.ceil(days * 1.1 * rows / max(len(frame), 1))
    simulate_s = time.perf_counter() - started

    started = time.perf_counter()
    schema = load_schema("transactions")
    schema = schema.resolve_columns([c for c in frame.columns if c != schema.label_field])
    schema.validate_frame(frame, source="simulator")
    pipeline = FeaturePipeline(schema)
    # Windows need the whole history; the first `rows` rows are kept after.
    matrix = pipeline.transform_frame(frame)[:rows]
    x = StandardScaler().fit_transform(matrix)
    features_s = time.perf_counter() - started
    return Dataset(
        key="simulated",
        title=f"{rows:,} simulated rows ({len(pipeline.feature_names)} gendetect features)",
        x=np.ascontiguousarray(x),
        epochs=epochs,
        info={
            "simulator": {"days": days, "seed": SEED, "n_customers": 5000},
            "simulated_rows": len(frame),
            "rows_used": rows,
            "fraud_rate": float(frame["is_fraud"].to_numpy()[:rows].mean()),
            "features": pipeline.feature_names,
            "scaling": "StandardScaler fit on the rows used",
            "simulate_seconds": simulate_s,
            "feature_seconds": features_s,
        },
    )


# ----------------------------------------------------------------------- detectors


def _gendetect(kind: str) -> Callable[[int], Any]:
    def build(epochs: int) -> Any:
        from gendetect import make_detector

        return make_detector(kind, seed=SEED, max_epochs=epochs, patience=NO_EARLY_STOPPING)

    return build


def _pyod(cls_path: str) -> Callable[[int], Any]:
    def build(epochs: int) -> Any:
        import importlib

        module_name, cls_name = cls_path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), cls_name)
        return cls(epoch_num=epochs, verbose=0, device="cpu", random_state=SEED)

    return build


BUILDERS: dict[str, Callable[[int], Any]] = {
    **{f"gendetect_{k}": _gendetect(k) for k in GENDETECT_KINDS},
    **{name: _pyod(path) for name, path in PYOD_CLASSES.items()},
}


def time_fit(name: str, x: np.ndarray, epochs: int) -> dict[str, Any]:
    """Build, fit once, and report where the fit's seconds went."""
    detector = BUILDERS[name](epochs)
    loop_seconds = [0.0]
    if name in PYOD_CLASSES:
        inner = detector.train

        def timed_train(loader: Any) -> None:
            t0 = time.perf_counter()
            inner(loader)
            loop_seconds[0] += time.perf_counter() - t0

        # An instance attribute shadows the method BaseDeepLearningDetector.fit calls.
        detector.train = timed_train
    t0 = time.perf_counter()
    detector.fit(x)
    fit_s = time.perf_counter() - t0

    row: dict[str, Any] = {"detector": name, "epochs": epochs, "fit_seconds": fit_s}
    if name in PYOD_CLASSES:
        row.update(
            {
                "loop_seconds": loop_seconds[0],
                "epochs_run": {"network": epochs},
                "networks": 1,
                "batch_size": int(detector.batch_size),
                "train_rows": len(x),
            }
        )
    else:
        results = detector.detector_.training_results()
        row.update(
            {
                "loop_seconds": sum(r.seconds for r in results.values()),
                "epochs_run": {k: r.epochs_run for k, r in results.items()},
                "networks": len(results),
                "batch_size": int(detector.params.batch_size),
                "train_rows": len(x) - len(detector.detector_.validation_index_),
                "validation_rows": len(detector.detector_.validation_index_),
                "member_loop_seconds": {k: r.seconds for k, r in results.items()},
            }
        )
        short = {k: n for k, n in row["epochs_run"].items() if n != epochs}
        if short:
            raise RuntimeError(f"{name}: ran {short} epochs instead of {epochs}")
    # Optimiser steps: PyOD's loader drops the last partial batch, Lightning's does not.
    per_net = (
        row["train_rows"] // row["batch_size"]
        if name in PYOD_CLASSES
        else math.ceil(row["train_rows"] / row["batch_size"])
    )
    row["steps"] = per_net * epochs * row["networks"]
    row["loop_ms_per_step"] = 1000 * row["loop_seconds"] / max(row["steps"], 1)
    row["seconds_per_epoch"] = fit_s / epochs
    row["loop_seconds_per_epoch"] = row["loop_seconds"] / epochs
    row["other_seconds"] = fit_s - row["loop_seconds"]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """PyOD s/epoch / row s/epoch (fit and training loop)."""
    by_name = {r["detector"]: r for r in rows}
    for row in rows:
        for peer, key in ((AE, "pyod_ae"), (PVAE, "pyod_vae")):
            ref = by_name.get(peer)
            row[f"ratio_{key}"] = (
                ref["seconds_per_epoch"] / row["seconds_per_epoch"] if ref else math.nan
            )
            row[f"loop_ratio_{key}"] = (
                ref["loop_seconds_per_epoch"] / row["loop_seconds_per_epoch"] if ref else math.nan
            )


def warm_up(names: Sequence[str], n_features: int) -> None:
    """One untimed 1-epoch fit per detector on a few rows, so no timed fit
    pays for lazy imports and first-call set-up (PyOD's first fit in a
    process otherwise carries ~2 s of it)."""
    x = np.random.default_rng(SEED).standard_normal((WARM_UP_ROWS, n_features))
    for name in names:
        try:
            BUILDERS[name](1).fit(x)
        except Exception as exc:  # the timed fit reports the failure
            _log(f"  warm-up of {name} failed: {exc}")


def run_dataset(data: Dataset, names: Sequence[str], notes: list[str]) -> dict[str, Any]:
    _log(f"{data.key}: {data.x.shape[0]:,} rows x {data.x.shape[1]} features, {data.epochs} epochs")
    warm_up(names, data.x.shape[1])
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            row = time_fit(name, data.x, data.epochs)
        except Exception as exc:  # recorded, not fatal: the other rows still count
            notes.append(f"{data.key}: {name} failed ({type(exc).__name__}: {exc})")
            _log(f"  {name} FAILED: {exc}")
            continue
        rows.append(row)
        _log(
            f"  {name:<20} fit {row['fit_seconds']:8.1f}s  "
            f"{row['seconds_per_epoch']:7.2f} s/epoch  (loop {row['loop_seconds']:.1f}s)"
        )
    add_ratios(rows)
    return {
        "title": data.title,
        "n_rows": int(data.x.shape[0]),
        "n_features": int(data.x.shape[1]),
        "epochs": data.epochs,
        "info": data.info,
        "rows": rows,
    }


# --------------------------------------------------------------------------- report


def _f(value: float, digits: int) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def render_markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    cfg = results["config"]
    v = env["versions"]
    lines = [
        "# Training speed",
        "",
        f"Generated {env['timestamp']} by `{cfg['command']}`"
        + (" (**--quick smoke run: numbers are not comparable**)" if cfg["quick"] else "")
        + f", one process, {results['total_seconds'] / 60:.1f} min in all.",
        "",
        f"Environment: Python {env['python']}, torch {v.get('torch')}, pyod {v.get('pyod')}, "
        f"gendetect {v.get('gendetect')} (commit {str(env.get('git_commit'))[:12]}); "
        f"{env['cpu_count']} CPUs, torch threads {env['torch_threads']}. "
        "Wall-clock seconds of one fit each, on a machine that may have been shared.",
        "",
        "Every detector on a dataset trains for the same number of epochs (gendetect: "
        "early stopping off; PyOD: `epoch_num`, other arguments at library defaults). "
        "*fit s* is the whole `.fit(X)` call: for gendetect it includes robust scaling, "
        "training on 90% of the rows with a validation pass over the other 10% after every "
        "epoch, scoring the training rows and calibrating the threshold; for PyOD, "
        "standardisation, training on all rows and scoring them. "
        "*loop s* is the part spent in the training epochs. *s/epoch* = fit s / epochs. "
        "*batch* is each library's default mini-batch size and *loop ms/step* the loop "
        "seconds per optimiser step (all networks, validation included): most of the "
        "speed difference per epoch comes from the number of steps, not their cost. "
        "Before timing, each detector does one untimed 1-epoch fit on a few rows (imports, "
        "first-call set-up). The ratio columns are PyOD's s/epoch divided by the row's: "
        "above 1 = the row trains that many times faster. The ensemble is gendetect's "
        "default (NLL VAE + fixed-variance VAE: two networks, each E epochs).",
        "",
    ]
    if results.get("notes"):
        lines += ["Notes:", "", *(f"- {n}" for n in results["notes"]), ""]
    for key, ds in results["datasets"].items():
        lines += [f"## {ds['title']}", ""]
        info = ds["info"]
        if key == "simulated":
            lines += [
                f"{ds['n_rows']:,} rows x {ds['n_features']} features, {ds['epochs']} epoch(s); "
                f"simulated {info['simulator']['days']} days (seed {SEED}, "
                f"{info['simulated_rows']:,} rows, first {info['rows_used']:,} kept); "
                f"simulation {info['simulate_seconds']:.1f}s and feature computation "
                f"{info['feature_seconds']:.1f}s, not part of any fit.",
                "",
            ]
        else:
            lines += [
                f"{ds['n_rows']:,} rows x {ds['n_features']} features "
                f"(training days {info['train_days']}), {ds['epochs']} epoch(s).",
                "",
            ]
        header = [
            "detector",
            "epochs",
            "fit s",
            "s/epoch",
            "PyOD-AE s/epoch ÷ this",
            "PyOD-VAE s/epoch ÷ this",
            "loop s",
            "batch",
            "loop ms/step",
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in ds["rows"]:
            epochs = str(r["epochs"]) + (f" (x{r['networks']} nets)" if r["networks"] > 1 else "")
            cells = [
                r["detector"],
                epochs,
                _f(r["fit_seconds"], 1),
                _f(r["seconds_per_epoch"], 2),
                _f(r["ratio_pyod_ae"], 2),
                _f(r["ratio_pyod_vae"], 2),
                _f(r["loop_seconds"], 1),
                str(r["batch_size"]),
                _f(r["loop_ms_per_step"], 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_reports(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(_jsonable(results), indent=1) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(results), encoding="utf-8")
    return md_path, json_path


def _modified_paths() -> list[str]:
    """Library files that differ from the recorded commit (the numbers then
    belong to the working tree, not to that commit)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "gendetect", "benchmarks/protocols.py"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(line[3:] for line in out.splitlines() if line.strip())


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with handbook/")
    parser.add_argument("--epochs-handbook", type=int, default=5)
    parser.add_argument("--epochs-1m", type=int, default=2, help="epochs on the simulated rows")
    parser.add_argument("--rows", type=int, default=1_000_000, help="simulated rows")
    parser.add_argument(
        "--detectors",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_DETECTORS)} (ratios need the PyOD rows)",
    )
    parser.add_argument(
        "--datasets", default="handbook,simulated", help="comma-separated: handbook, simulated"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_HANDBOOK_ROWS} handbook rows, {QUICK_ROWS} simulated rows, "
        f"{QUICK_EPOCHS_HANDBOOK} and {QUICK_EPOCHS_1M} epoch(s)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    names = args.detectors.split(",") if args.detectors else list(ALL_DETECTORS)
    unknown = sorted(set(names) - set(ALL_DETECTORS))
    datasets = args.datasets.split(",")
    bad_sets = sorted(set(datasets) - {"handbook", "simulated"})
    if unknown or bad_sets:
        print(f"unknown detectors {unknown} or datasets {bad_sets}", file=sys.stderr)
        return 2
    epochs_hb = QUICK_EPOCHS_HANDBOOK if args.quick else args.epochs_handbook
    epochs_sim = QUICK_EPOCHS_1M if args.quick else args.epochs_1m
    rows = QUICK_ROWS if args.quick else args.rows
    if min(epochs_hb, epochs_sim, rows) < 1:
        print("epochs and rows must be >= 1", file=sys.stderr)
        return 2

    notes: list[str] = []
    env = environment()
    env["git_modified"] = _modified_paths()
    if env["git_modified"]:
        notes.append(
            "measured on a working tree with uncommitted changes to "
            + ", ".join(env["git_modified"])
        )
    results: dict[str, Any] = {
        "environment": env,
        "config": {
            "command": "python benchmarks/training_speed.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "epochs_handbook": epochs_hb,
            "epochs_simulated": epochs_sim,
            "rows": rows,
            "quick": args.quick,
            "detectors": names,
            "seed": SEED,
            "pyod_arguments": {
                "epoch_num": "E",
                "verbose": 0,
                "device": "cpu",
                "random_state": SEED,
            },
            "gendetect_arguments": {"max_epochs": "E", "patience": NO_EARLY_STOPPING},
        },
        "notes": notes,
        "datasets": {},
    }
    stem = "training_speed_quick" if args.quick else "training_speed"
    started = time.perf_counter()
    if "handbook" in datasets:
        if protocols.handbook_path(args.data).exists():
            data = handbook_dataset(
                args.data, epochs_hb, QUICK_HANDBOOK_ROWS if args.quick else None
            )
            results["datasets"]["handbook"] = run_dataset(data, names, notes)
            results["total_seconds"] = time.perf_counter() - started
            write_reports(results, args.out, stem)  # keep progress of a long run
        else:
            notes.append(f"handbook skipped: {protocols.handbook_path(args.data)} missing")
    if "simulated" in datasets:
        _log(f"simulating {rows:,} rows and computing features")
        data = simulated_dataset(rows, epochs_sim)
        results["datasets"]["simulated"] = run_dataset(data, names, notes)
    results["total_seconds"] = time.perf_counter() - started
    md_path, json_path = write_reports(results, args.out, stem)
    _log(f"wrote {md_path} and {json_path} in {results['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
