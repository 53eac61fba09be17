"""Micro-batching on and off against the code before, alternated on one model.

    python benchmarks/serving_ab.py --home HOME --before-src BEFORE [--model gendetect]
        [--requests 3000] [--rounds 2]

Each round starts three fresh `gendetect serve` processes in turn on the
champion of `--model` in HOME's registry (audit on, SQLite, auth off, the
server on CPU 0, the load generator on CPU 1): this code with micro-batching
(the default), this code with GENDETECT_MICRO_BATCH_MAX=1, and the code in
--before-src. Alternating the three, round after round, keeps drift in the
machine's state from reading as a difference between them. Prints req/s and
server CPU per request at 8 connections, p50 / p99 / p99.9 at one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_load import run_phases
from benchmarks.serving_models import request_records
from benchmarks.serving_servers import start_gendetect


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--before-src", type=Path, required=True)
    p.add_argument("--model", default="gendetect-unsupervised")
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
    setups = [("micro-batching", {}, None),
              ("MICRO_BATCH_MAX=1", {"GENDETECT_MICRO_BATCH_MAX": "1"}, None),
              ("before", {}, args.before_src)] * args.rounds
    try:
        for k, (name, env, src) in enumerate(setups):
            server = start_gendetect(uri, args.model, work, server_cpus, extra_env=env,
                                     tag=str(k), src=src)
            try:
                out = run_phases(server.port, server.path, server.process.pid, bodies,
                                 args.warmup, args.requests, (8, 1))
            finally:
                server.stop()
            c8, c1 = out["c8"], out["c1"]
            print(f"{name:18s} 8 conn {c8['rps']:7.1f} req/s, "
                  f"CPU {c8['server_cpu_ms_per_request']:.2f} ms/req | 1 conn p50 "
                  f"{c1['p50_ms']:.2f} p99 {c1['p99_ms']:.2f} p99.9 {c1['p999_ms']:.2f} ms, "
                  f"errors {c8['errors'] + c1['errors']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
