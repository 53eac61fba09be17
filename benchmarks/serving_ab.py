"""This code against the code before, alternated on the same models.

    python benchmarks/serving_ab.py --home HOME --before-src BEFORE
        [--model gendetect,gendetect-unsupervised] [--setups this,unbatched,before]
        [--requests 3000] [--rounds 2]

Each round starts a fresh `gendetect serve` process per setup in turn on the
champion of each `--model` in HOME's registry (audit on, SQLite, auth off,
the server on CPU 0, the load generator on CPU 1): `this` (this code, its
defaults), `unbatched` (this code with GENDETECT_MICRO_BATCH_MAX=1) and
`before` (the code in --before-src). Alternating them, round after round,
keeps drift in the machine's state from reading as a difference between
them. Prints, per server, req/s and server CPU per request at 8
connections and p50 / p99 / p99.9 at one; then per model and setup the
median over the rounds and the spread (lowest-highest), and the ratios to
`before`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_load import run_phases
from benchmarks.serving_models import request_records
from benchmarks.serving_servers import start_gendetect

# name: (extra environment, whether it runs the --before-src code)
SETUPS: dict[str, tuple[dict[str, str], bool]] = {
    "this": ({}, False),
    "unbatched": ({"GENDETECT_MICRO_BATCH_MAX": "1"}, False),
    "before": ({}, True),
}
# The summary's columns, (phase, field, label). "serving CPU": the serving
# process alone, without its helpers (the audit writer, the registry poll),
# which the session's CPU counts in whatever phase they run.
COLUMNS = (("c8", "rps", "req/s 8 conn"), ("c8", "server_cpu_ms_per_request", "CPU ms/req 8"),
           ("c8", "leader_cpu_ms_per_request", "serving CPU 8"),
           ("c1", "p50_ms", "p50 1 conn"), ("c1", "p99_ms", "p99"), ("c1", "p999_ms", "p99.9"),
           ("c1", "server_cpu_ms_per_request", "CPU ms/req 1"),
           ("c1", "leader_cpu_ms_per_request", "serving CPU 1"))


def summary(runs: dict[tuple[str, str], list[dict[str, Any]]], load: float) -> str:
    """Median (lowest-highest) over the rounds per model and setup, and the
    ratio of medians to `before` where it ran."""
    lines = [f"median (lowest-highest) over the rounds; load average {load:.1f} at the end",
             "| model | setup | " + " | ".join(c[2] for c in COLUMNS) + " | errors |",
             "|---|---|" + "---:|" * (len(COLUMNS) + 1)]
    for (model, name), outs in runs.items():
        base = runs.get((model, "before"))
        cells = []
        for phase, field, _ in COLUMNS:
            values = [o[phase][field] for o in outs]
            cell = f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            if base is not None and name != "before":
                ref = statistics.median(o[phase][field] for o in base)
                cell += f" x{statistics.median(values) / ref:.2f}" if ref else ""
            cells.append(cell)
        errors = sum(o["c8"]["errors"] + o["c1"]["errors"] for o in outs)
        lines.append(f"| {model} | {name} | " + " | ".join(cells) + f" | {errors} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--before-src", type=Path, required=True)
    p.add_argument("--model", default="gendetect-unsupervised",
                   help="registered model names, comma-separated (each served in turn)")
    p.add_argument("--setups", default="this,unbatched,before",
                   help=f"comma-separated, of {', '.join(SETUPS)}")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--days", type=int, default=30, help="the demo's days (requests come after)")
    args = p.parse_args()
    uri = f"sqlite:///{args.home.resolve() / 'mlflow.db'}"
    records = request_records(args.warmup + 2 * args.requests, customers=args.customers,
                              days=args.days + 10, start_day=args.days)
    bodies = [json.dumps(r).encode() for r in records]
    server_cpus = None
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {1})
        server_cpus = {0}
    work = Path(tempfile.mkdtemp(prefix="gendetect-serving-ab-"))
    names = [n for n in args.setups.split(",") if n]
    unknown = set(names) - set(SETUPS)
    if unknown:
        p.error(f"unknown setups {sorted(unknown)}; choose from {', '.join(SETUPS)}")
    models = [m for m in args.model.split(",") if m]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    k = 0
    try:
        for _ in range(args.rounds):
            for model in models:
                for name in names:
                    env, before = SETUPS[name]
                    server = start_gendetect(uri, model, work, server_cpus, extra_env=env,
                                             tag=str(k), src=args.before_src if before else None)
                    k += 1
                    try:
                        out = run_phases(server.port, server.path, server.process.pid, bodies,
                                         args.warmup, args.requests, (8, 1))
                    finally:
                        server.stop()
                    runs.setdefault((model, name), []).append(out)
                    c8, c1 = out["c8"], out["c1"]
                    print(f"{model:24s} {name:10s} 8 conn {c8['rps']:7.1f} req/s, "
                          f"CPU {c8['server_cpu_ms_per_request']:.2f} ms/req | 1 conn p50 "
                          f"{c1['p50_ms']:.2f} p99 {c1['p99_ms']:.2f} p99.9 "
                          f"{c1['p999_ms']:.2f} ms, CPU {c1['server_cpu_ms_per_request']:.2f} "
                          f"ms/req, errors {c8['errors'] + c1['errors']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(summary(runs, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
