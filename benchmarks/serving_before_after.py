"""Serving before and after a change, in one run: the same registered model,
the same load (benchmarks/serving_latency.py's closed-loop driver), the
servers alternating round by round so that other work on the machine weighs
on each of them alike.

    python benchmarks/serving_before_after.py --before-src /path/to/old/checkout
        [--rounds 3] [--requests 3000] [--concurrency 8]

The old checkout is run with PYTHONPATH pointing at it (same virtualenv).
The model is trained and registered by the *old* code, which the new code
loads too (bundles stay readable across versions). Three setups: before,
after with the decision audit off (the code path alone), after with the
audit on (the default). Writes benchmarks/results/serving_before_after.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_latency import (
    RESULTS,
    _pinning,
    request_records,
    run_load,
    start_gendetect,
)

SETUPS = ("before", "after, audit off", "after, audit on (default)")


def _register_with(src: Path, home: Path) -> str:
    """Train and register the benchmark's model with the code at `src`."""
    code = ("import sys; from pathlib import Path; "
            "from benchmarks.serving_latency import train_and_register; "
            f"print(train_and_register(Path({str(home)!r})))")
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before-src", type=Path, required=True, help="the old checkout")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    before = args.before_src.resolve()
    commit = subprocess.run(["git", "-C", str(before), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="gendetect-before-after-"))
    server_cpus, client_cpus, pinning = _pinning(True)
    (work / "registry").mkdir()
    print("training and registering with the old code ...", flush=True)
    tracking_uri = _register_with(before, work / "registry")
    records = request_records(args.warmup + args.requests + 50)
    bodies = [json.dumps(r).encode() for r in records]
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    extra = {
        SETUPS[0]: {"PYTHONPATH": str(before)},
        SETUPS[1]: {"GENDETECT_AUDIT_ENABLED": "false"},
        SETUPS[2]: {"GENDETECT_AUDIT_ENABLED": "true"},
    }
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETUPS}
    loadavg_start = os.getloadavg()
    for r in range(args.rounds):
        for i, setup in enumerate(SETUPS):
            server = start_gendetect(tracking_uri, "gendetect", work, server_cpus,
                                     extra_env=extra[setup], tag=f"-{r}-{i}")
            try:
                result = run_load(server, bodies, args.concurrency, args.warmup, 50)["load"]
            finally:
                server.stop()
            runs[setup].append(result)
            print(f"round {r + 1} {setup}: {result['rps']:.0f} req/s, "
                  f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}", flush=True)
    summary = {
        setup: {
            "rps_median": statistics.median(x["rps"] for x in rs),
            "p50_ms_median": statistics.median(x["p50_ms"] for x in rs),
            "p99_ms_median": statistics.median(x["p99_ms"] for x in rs),
            "cpu_ms_per_request_median": statistics.median(
                x["server_cpu_ms_per_request"] or 0.0 for x in rs),
            "errors": sum(x["errors"] for x in rs),
            "rounds": [round(x["rps"]) for x in rs],
        }
        for setup, rs in runs.items()
    }
    result = {"before_commit": commit, "pinning": pinning, "requests": args.requests,
              "concurrency": args.concurrency, "rounds": args.rounds, "summary": summary,
              "loadavg": [list(loadavg_start), list(os.getloadavg())]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_before_after.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "serving_before_after.md").write_text(render(result))
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    base = result["summary"][SETUPS[0]]
    lines = [
        "# Serving before and after, one run",
        "",
        f"Before: the code at {result['before_commit']}; after: this checkout. "
        f"{result['requests']} single-record requests per round, {result['concurrency']} "
        f"keep-alive clients, {result['rounds']} rounds with the setups alternating; "
        f"{result['pinning']}; load average {result['loadavg'][0][0]:.1f} at the start, "
        f"{result['loadavg'][1][0]:.1f} at the end.",
        "",
        "| setup | req/s (median) | vs before | p50 ms | p99 ms | p99 vs before | "
        "server CPU ms/req | req/s per round | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for setup, s in result["summary"].items():
        lines.append(
            f"| {setup} | {s['rps_median']:,.0f} | {s['rps_median'] / base['rps_median']:.1%} | "
            f"{s['p50_ms_median']:.2f} | {s['p99_ms_median']:.2f} | "
            f"{s['p99_ms_median'] / base['p99_ms_median']:.1%} | "
            f"{s['cpu_ms_per_request_median']:.3f} | {', '.join(map(str, s['rounds']))} | "
            f"{s['errors']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
