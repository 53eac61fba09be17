"""Window features: the vectorised offline engine against a straightforward
pandas groupby-rolling implementation of the same definitions, and the
online path's latency per request.

    python benchmarks/window_features.py --data ../shared/data [--rows N]
                                         [--online-records 20000] [--out DIR]
                                         [--rich-rows 300000]

Offline: both implementations run on the handbook file (the first --rows
rows if given); the script checks they agree (1e-6) and prints seconds and
the speed ratio. Online: OnlineWindowFeatures with the in-memory store
replays --online-records transactions of the same file in time order (each
label arriving 7 days after its transaction, as in production) and reports
p50 / p99 of compute_and_record per record. Rich: the aggregate engine on a
synthetic table of --rich-rows rows with a rich declaration (5 keys x 3
windows x 3 aggregates: count, mean and std of the amount over 1h, 1d, 7d
per card, account, device, IP and e-mail), in rows per second.

Writes window_features.json and window_features.md to --out
(default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.protocols import RAW_COLUMNS
from gendetect.features.aggregates import AggregateDeclaration
from gendetect.features.behaviour import Behaviour
from gendetect.features.online import OnlineWindowFeatures
from gendetect.features.state import MemoryStateStore
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig

AGREEMENT = 1e-6


def load_handbook(data_dir: Path, rows: int | None) -> pd.DataFrame:
    path = data_dir / "handbook" / "transactions.parquet"
    if not path.is_file():
        sys.exit(f"handbook data not found: {path} (pass --data <shared data folder>)")
    df = pd.read_parquet(path, columns=list(RAW_COLUMNS)).rename(columns=RAW_COLUMNS)
    return df.iloc[:rows].copy() if rows else df


# ----------------------------------------------------------- pandas version
def _rolling(
    df: pd.DataFrame, entity: str, column: str, days: int | float, config: WindowConfig
) -> tuple[pd.Series, pd.Series]:
    """Count and sum of `column` over (t - days, t] per entity, ending at the
    current row of the frame sorted by (entity, time, id): pandas' rule."""
    ordered = df.sort_values([entity, config.time_col, config.id_col], kind="stable")
    rolling = ordered.groupby(entity, sort=False).rolling(
        pd.Timedelta(days=days), on=config.time_col
    )[column]
    # Results come group by group in the frame's order, which `ordered`
    # already is: align by position (the result's index varies by version).
    count = pd.Series(rolling.count().to_numpy(), index=ordered.index).reindex(df.index)
    total = pd.Series(rolling.sum().to_numpy(), index=ordered.index).reindex(df.index)
    return count, total


def pandas_window_features(df: pd.DataFrame, config: WindowConfig) -> pd.DataFrame:
    """The handbook's recipe, written plainly with pandas."""
    out = pd.DataFrame(index=df.index)
    for w in config.customer_windows_days:
        count, total = _rolling(df, config.customer_col, config.amount_col, w, config)
        out[f"customer_nb_tx_{w}d"] = count
        out[f"customer_avg_amount_{w}d"] = total / count
    delay = config.delay_days
    if delay:
        delay_count, delay_frauds = _rolling(
            df, config.terminal_col, config.label_col, delay, config
        )
    else:
        delay_count = delay_frauds = pd.Series(0.0, index=df.index)
    for w in config.terminal_windows_days:
        count, frauds = _rolling(df, config.terminal_col, config.label_col, delay + w, config)
        nb = count - delay_count
        out[f"terminal_nb_tx_{w}d"] = nb
        out[f"terminal_risk_{w}d"] = ((frauds - delay_frauds) / nb).fillna(0.0)
    return out[list(config.feature_names)].astype(np.float64)


# ------------------------------------------------------------ rich table
RICH_KEYS = {"card_id": 20_000, "account_id": 12_000, "device_id": 8_000, "ip": 30_000,
             "email": 15_000}
RICH_DECLARATION = [
    {"key": key, "windows": ["1h", "1d", "7d"],
     "features": ["count", {"kind": "mean", "of": "amount"}, {"kind": "std", "of": "amount"}]}
    for key in RICH_KEYS
]


def rich_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic table with five keys of skewed popularity over 30 days."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "transaction_id": np.arange(rows, dtype=np.int64),
        "timestamp": pd.to_datetime("2024-01-01")
        + pd.to_timedelta(np.sort(rng.integers(0, 30 * 86_400, rows)), unit="s"),
        "amount": np.round(rng.gamma(2.0, 40.0, rows), 2),
    })
    for key, n in RICH_KEYS.items():
        df[key] = np.minimum(rng.zipf(1.3, rows), n) + 1000 * (rng.random(rows) < 0.5)
    return df


def rich_behaviour() -> Behaviour:
    keys = list(RICH_KEYS)
    declaration = AggregateDeclaration.from_list(
        RICH_DECLARATION, entity_columns=keys, numeric_columns=["amount"],
        all_columns=[*keys, "amount", "timestamp", "transaction_id"], has_label=False)
    return Behaviour(declaration, "timestamp", "transaction_id", None)


def time_rich(rows: int) -> dict[str, Any]:
    """Offline rows per second of the aggregate engine on the rich table."""
    df, behaviour = rich_frame(rows), rich_behaviour()
    t0 = time.perf_counter()
    out = behaviour.add_to_frame(df)
    seconds = time.perf_counter() - t0
    return {"rows": rows, "features": len(behaviour.feature_names),
            "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds),
            "finite": bool(np.isfinite(out[list(behaviour.feature_names)].to_numpy()).all())}


# ------------------------------------------------------------------ timing
def time_offline(df: pd.DataFrame, config: WindowConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    ours = add_window_features(df, config)
    engine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = pandas_window_features(df, config)
    pandas_s = time.perf_counter() - t0
    max_diff = {
        name: float(np.max(np.abs(ours[name].to_numpy() - reference[name].to_numpy()), initial=0))
        for name in config.feature_names
    }
    worst = max(max_diff.values())
    return {
        "rows": len(df),
        "engine_seconds": round(engine_s, 3),
        "pandas_seconds": round(pandas_s, 3),
        "speedup": round(pandas_s / engine_s, 1),
        "max_abs_difference": worst,
        "agree": worst <= AGREEMENT,
    }


def time_online(df: pd.DataFrame, config: WindowConfig, n_records: int) -> dict[str, Any]:
    """Latency of compute_and_record per record, labels arriving as in
    production (delay after the transaction), memory store."""
    df = df.sort_values([config.time_col, config.id_col], kind="stable").iloc[:n_records]
    online = OnlineWindowFeatures(config, MemoryStateStore())
    fields = [config.id_col, config.time_col, config.customer_col, config.terminal_col]
    records = df[[*fields, config.amount_col]].to_dict("records")
    times = df[config.time_col].to_numpy()
    label_times = times + np.timedelta64(int(config.delay_days * 86_400), "s")
    ids = df[config.id_col].to_numpy()
    labels = df[config.label_col].to_numpy()
    latencies = np.empty(len(records))
    next_label = 0
    for i, record in enumerate(records):
        while next_label < i and label_times[next_label] <= times[i]:
            online.add_label(
                int(ids[next_label]), bool(labels[next_label]), label_times[next_label]
            )
            next_label += 1
        t0 = time.perf_counter()
        online.compute_and_record(record)
        latencies[i] = time.perf_counter() - t0
    us = latencies * 1e6
    return {
        "records": len(records),
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def time_online_rich(n_records: int) -> dict[str, Any]:
    """Latency of compute_and_record per record for the rich declaration
    (5 keys x 3 windows x count/mean/std: 45 features), memory store, the
    synthetic table replayed in time order (no labels: none is declared)."""
    df = rich_frame(n_records)
    online = OnlineWindowFeatures(rich_behaviour(), MemoryStateStore())
    records = df.to_dict("records")
    latencies = np.empty(len(records))
    for i, record in enumerate(records):
        t0 = time.perf_counter()
        online.compute_and_record(record)
        latencies[i] = time.perf_counter() - t0
    us = latencies * 1e6
    return {
        "records": len(records),
        "features": len(online.feature_names),
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "window_features.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    off, on = result["offline"], result["online"]
    md = [
        "# Window features",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Offline, {off['rows']:,} handbook rows: engine {off['engine_seconds']} s, "
        f"pandas groupby-rolling {off['pandas_seconds']} s (x{off['speedup']}); "
        f"max difference {off['max_abs_difference']:.2g} (agree: {off['agree']}).",
        "",
        f"Online, memory store, {on['records']:,} records: compute_and_record "
        f"p50 {on['p50_us']} us, p99 {on['p99_us']} us, mean {on['mean_us']} us.",
        "",
    ]
    rich_on = result.get("online_rich")
    if rich_on:
        md += [f"Online, memory store, rich declaration ({rich_on['features']} features), "
               f"{rich_on['records']:,} records: compute_and_record p50 {rich_on['p50_us']} us, "
               f"p99 {rich_on['p99_us']} us, mean {rich_on['mean_us']} us "
               f"(x{rich_on['p99_us'] / on['p99_us']:.2f} the handbook's p99; target <= 2).",
               ""]
    rich = result.get("rich")
    if rich:
        md += [f"Aggregate engine, rich declaration (5 keys x 3 windows x count/mean/std), "
               f"{rich['rows']:,} synthetic rows: {rich['seconds']} s, "
               f"{rich['rows_per_second']:,} rows/s.", ""]
    md_path = out_dir / "window_features.md"
    md_path.write_text("\n".join(md))
    return md_path, json_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="shared data folder")
    parser.add_argument("--rows", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--online-records", type=int, default=20_000)
    parser.add_argument("--rich-rows", type=int, default=300_000,
                        help="rows of the synthetic rich table (0: skip)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = WindowConfig()
    df = load_handbook(args.data, args.rows)
    offline = time_offline(df, config)
    print(
        f"offline ({offline['rows']:,} rows): engine {offline['engine_seconds']:.2f} s, "
        f"pandas {offline['pandas_seconds']:.2f} s, ratio x{offline['speedup']}, "
        f"max |diff| {offline['max_abs_difference']:.2g}"
    )
    online = time_online(df, config, args.online_records)
    print(
        f"online ({online['records']:,} records, memory store): compute_and_record "
        f"p50 {online['p50_us']:.0f} us, p99 {online['p99_us']:.0f} us"
    )
    online_rich = time_online_rich(args.online_records)
    print(
        f"online rich ({online_rich['records']:,} records, {online_rich['features']} features, "
        f"memory store): p50 {online_rich['p50_us']:.0f} us, p99 {online_rich['p99_us']:.0f} us"
    )
    rich = time_rich(args.rich_rows) if args.rich_rows else None
    if rich:
        print(f"rich declaration ({rich['rows']:,} rows, {rich['features']} features): "
              f"{rich['seconds']:.2f} s, {rich['rows_per_second']:,} rows/s")
    result = {
        "rich": rich,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "offline": offline,
        "online": online,
        "online_rich": online_rich,
    }
    md_path, json_path = write_results(result, args.out)
    print(f"wrote {md_path} and {json_path}")
    return 0 if offline["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
