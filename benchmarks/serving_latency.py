"""Serving latency and throughput of the model users actually get.

    python benchmarks/serving_latency.py [--home .gendetect] [--requests 5000]
        [--before-src /path/to/old/checkout] [--skip-mlflow] [--skip-workers]

The model is the champion `make demo` produces (label-aware: the demo's
`gendetect retrain` trains with the file's fraud labels), and beside it the
unsupervised champion of the same kind and data (benchmarks/serving_models.py).
Without --home or --tracking-uri both are trained here with the demo's own
commands (75 days, 5,000 customers: tens of minutes; --demo-days,
--demo-customers and --demo-epochs make a quick harness check). With
--home .gendetect after `make demo`, the demo's champion is used as it is.

Runs, each a fresh server with its own home and the default settings (the
decision audit on, SQLite; the memory state store; one worker):

- gendetect serve on the label-aware champion, and on the unsupervised one;
- with --before-src, the same with another checkout's code (the code
  before a change: `git worktree add /tmp/before <commit>`), for the
  before/after ratios; with --thread-writer, the same with the audit
  writer in a thread of the serving process instead of its own process;
- mlflow models serve on the label-aware champion (the peer, one worker);
- unless --skip-workers, the production topology on this machine: the
  online state in Redis (a scratch redis-server) and the audit in
  PostgreSQL (a scratch database on --postgres-url), with one worker and
  with two (GENDETECT_WORKERS=2), and their throughput per core.

Each run: a warm-up, then --requests new single-record requests on 8
keep-alive connections (closed loop), then --requests more on one
connection (latency without queueing); p50 / p99 / p99.9, req/s, errors,
and the server's CPU time per request (all its processes: workers, audit
writer; 1000 / it is the rate one core sustains). The load generator is one
asyncio thread on the last CPU, the servers on the others.

Writes benchmarks/results/serving.md and serving.json.

    python benchmarks/serving_latency.py --audit [--postgres-url URL] [--rounds 3]

compares the decision audit off / SQLite / PostgreSQL instead
(benchmarks/serving_audit.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_load import run_load, run_phases
from benchmarks.serving_models import (
    demo_champions,
    describe,
    request_records,
    train_and_register,
)
from benchmarks.serving_servers import (
    Server,
    start_gendetect,
    start_mlflow,
    start_redis,
)

__all__ = ["RESULTS", "_http_parser", "_pinning", "request_records", "run_load",
           "start_gendetect", "train_and_register"]

RESULTS = Path(__file__).resolve().parent / "results"
# Issue 20's targets: one worker, audit on (SQLite), the label-aware champion.
TARGET = {"rps_c8": 2000.0, "p99_c1_ms": 2.0, "p999_c1_ms": 5.0}
CONCURRENCIES = (8, 1)


def _pinning(pin: bool) -> tuple[set[int] | None, set[int] | None, str]:
    """Servers on all CPUs but the last, the load generator on the last."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin:
        return None, None, "not pinned (--no-pin)"
    if len(cpus) < 2:
        return None, None, "not pinned (one CPU)"
    server, client = set(cpus[:-1]), {cpus[-1]}
    return server, client, f"servers on CPU(s) {cpus[:-1]}, load generator on CPU {cpus[-1]}"


def _http_parser() -> str:
    import importlib.util

    # What uvicorn's "auto" picks in the server processes (same interpreter).
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def _measure(server: Server, bodies: list[bytes], args: argparse.Namespace
             ) -> dict[str, Any]:
    try:
        out: dict[str, Any] = run_phases(server.port, server.path, server.process.pid, bodies,
                                         args.warmup, args.requests, CONCURRENCIES)
        out["mean_block"] = _mean_block(server)
        return out
    finally:
        server.stop()


def _mean_block(server: Server) -> float | None:
    """Single-record requests per model call over the whole run (the
    micro-batcher's counters on /metrics), or None where there are none."""
    import urllib.request

    if server.name != "gendetect serve":
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("gendetect_score_blocks_total", "gendetect_score_block_records_total"):
            values[name] = float(value)
    blocks = values.get("gendetect_score_blocks_total")
    return round(values["gendetect_score_block_records_total"] / blocks, 2) if blocks else None


def _setups(args: argparse.Namespace, uris: dict[str, str], work: Path
            ) -> list[tuple[str, dict[str, Any]]]:
    """(name, how to start it) per run."""
    aware = uris["label-aware"]
    out: list[tuple[str, dict[str, Any]]] = [
        ("gendetect, label-aware", {"uri": aware}),
        ("gendetect, unsupervised", {"uri": uris["unsupervised"]}),
    ]
    if args.before_src:
        out.insert(1, ("gendetect before, label-aware", {"uri": aware, "src": args.before_src}))
        out.append(("gendetect before, unsupervised",
                    {"uri": uris["unsupervised"], "src": args.before_src}))
    if args.thread_writer:
        out.insert(1, ("gendetect, label-aware, audit writer thread",
                       {"uri": aware, "env": {"GENDETECT_AUDIT_WRITER": "thread"}}))
    if not args.skip_mlflow:
        out.append(("mlflow models serve, label-aware", {"uri": aware, "mlflow": True}))
    if not args.skip_workers:
        for workers in (1, 2):
            out.append((f"gendetect, label-aware, Redis + PostgreSQL, {workers} worker"
                        f"{'s' if workers > 1 else ''}", {"uri": aware, "workers": workers}))
    return out


def _start(name: str, how: dict[str, Any], tracking_uri: str, work: Path,
           cpus: set[int] | None, shared: dict[str, str], k: int) -> Server:
    uri = how["uri"]
    if how.get("mlflow"):
        return start_mlflow(tracking_uri, work, uri, cpus)
    env = {"GENDETECT_MODEL_URI": uri, **how.get("env", {})}
    if "workers" in how:
        env |= {"GENDETECT_WORKERS": str(how["workers"]), "GENDETECT_STATE_STORE": "redis",
                # A Redis database and an empty audit of its own per run:
                # every run's requests are new transactions.
                "GENDETECT_REDIS_URL": f"{shared['redis']}/{k % 16}",
                "GENDETECT_DATABASE_URL": shared["postgres"]}
        _reset(shared["postgres"])
    src = Path(how["src"]).resolve() if how.get("src") else None
    return start_gendetect(tracking_uri, uri.split("/")[1].split("@")[0], work, cpus, env,
                           tag=f"-{k}", src=src)


def _reset(url: str) -> None:
    from benchmarks.serving_audit import _reset as reset

    reset(url)


def _ratios(servers: dict[str, Any]) -> dict[str, float]:
    out = {}
    for mine, other, key in (
            ("gendetect, label-aware", "mlflow models serve, label-aware", "vs_mlflow"),
            ("gendetect, label-aware", "gendetect before, label-aware", "vs_before"),
            ("gendetect, unsupervised", "gendetect before, unsupervised",
             "unsupervised_vs_before"),
            ("gendetect, label-aware", "gendetect, label-aware, audit writer thread",
             "vs_thread_writer")):
        ours = servers.get(mine)
        if ours and other in servers:
            o, b = ours["c8"], servers[other]["c8"]
            out[f"{key}_rps"] = round(o["rps"] / b["rps"], 2)
            out[f"{key}_p99_c8"] = round(b["p99_ms"] / o["p99_ms"], 2)
            c1o, c1b = ours["c1"], servers[other]["c1"]
            out[f"{key}_p99_c1"] = round(c1b["p99_ms"] / c1o["p99_ms"], 2)
            out[f"{key}_p999_c1"] = round(c1b["p999_ms"] / c1o["p999_ms"], 2)
    one = next((v for k, v in servers.items() if k.endswith("1 worker")), None)
    two = next((v for k, v in servers.items() if k.endswith("2 workers")), None)
    if one and two:
        out["two_workers_vs_one_rps"] = round(two["c8"]["rps"] / one["c8"]["rps"], 2)
    return out


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    models = results["models"]
    lines = [
        "# Serving: the label-aware champion, gendetect serve vs mlflow models serve",
        "",
        *(f"- {name}: {d['uri']} version {d['version']} ({d['kind']}, label mode "
          f"{d['label_mode']})" for name, d in models.items()),
        f"- load per run: {results['warmup']} warm-up requests, then {results['requests']} "
        "new single-record requests on 8 keep-alive connections (closed loop), then "
        f"{results['requests']} on one connection; audit on (SQLite) unless the row says "
        "PostgreSQL; torch with 1 thread per worker",
        f"- pinning: {results['pinning']}",
        f"- machine: {m['cpus']} CPUs, load average (1/5/15 min) at start "
        f"{m['loadavg_start']}, at end {m['loadavg_end']}, Python {m['python']}, uvicorn "
        f"HTTP parser {m['http_parser']}",
        "",
        "| run | req/s (8 conn) | p50 | p99 | p99.9 | errors | 1 conn: p50 | p99 | p99.9 "
        "| server CPU ms/req | of it the serving process | req/s per core | cores busy "
        "| records per model call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["servers"].items():
        c8, c1 = r["c8"], r["c1"]
        # The leader of a multi-worker server is the supervisor: not shown.
        leader = ("-" if name.endswith("workers") or name.startswith("mlflow")
                  else f"{c8['leader_cpu_ms_per_request']:.3f}")
        lines.append(
            f"| {name} | {c8['rps']:.0f} | {c8['p50_ms']:.2f} | {c8['p99_ms']:.2f} | "
            f"{c8['p999_ms']:.2f} | {c8['errors'] + c1['errors']} | {c1['p50_ms']:.2f} | "
            f"{c1['p99_ms']:.2f} | {c1['p999_ms']:.2f} | {c8['server_cpu_ms_per_request']:.3f}"
            f" | {leader} | {c8['rps_per_core']:.0f} | {c8['server_cores_busy']:.2f} | "
            f"{r.get('mean_block') or '-'} |")
    lines += ["", "Latencies in ms. Ratios: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in results["ratios"].items()) + "."]
    t = results["target"]
    lines += [
        "",
        f"Targets (1 worker, audit on SQLite, label-aware): >= {TARGET['rps_c8']:.0f} req/s "
        f"at 8 connections with 0 errors, p99 <= {TARGET['p99_c1_ms']:g} ms and p99.9 <= "
        f"{TARGET['p999_c1_ms']:g} ms at one: **{'met' if t['met'] else 'not met'}** "
        f"({t['detail']}).",
        "",
        "Server CPU ms/req: user+system CPU of all the server's processes (workers, the "
        "audit writer process) over the 8-connection requests, from /proc, and of it the "
        "serving process alone (with one worker the process whose event loop answers: the "
        "one core that bounds one worker's throughput); req/s per core = 1000 / the total, "
        "the rate one dedicated core sustains; cores busy = server CPU seconds per wall "
        "second; records per model call: single-record requests per block the "
        "micro-batcher scored, over the whole run (both phases; '-': not counted, as before "
        "it existed). `vs_*_rps`: our req/s over theirs; `vs_*_p99*`: their latency "
        "over ours.",
    ]
    return "\n".join(lines) + "\n"


def _target(servers: dict[str, Any]) -> dict[str, Any]:
    r = servers.get("gendetect, label-aware")
    if r is None:
        return {"met": False, "detail": "not run"}
    c8, c1 = r["c8"], r["c1"]
    met = (c8["rps"] >= TARGET["rps_c8"] and not (c8["errors"] or c1["errors"])
           and c1["p99_ms"] <= TARGET["p99_c1_ms"] and c1["p999_ms"] <= TARGET["p999_c1_ms"])
    return {"met": met, "detail": f"{c8['rps']:.0f} req/s, {c8['errors'] + c1['errors']} "
            f"errors, p99 {c1['p99_ms']:.2f} ms, p99.9 {c1['p999_ms']:.2f} ms"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000, help="per concurrency and run")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=8, help="audit mode only")
    p.add_argument("--sequential", type=int, default=300, help="audit mode only")
    p.add_argument("--home", type=Path, default=None, help="a gendetect home holding the "
                   "demo's champion (e.g. .gendetect after `make demo`)")
    p.add_argument("--tracking-uri", default=None, help="audit mode: this store's model")
    p.add_argument("--model-name", default="gendetect")
    p.add_argument("--demo-days", type=int, default=75)
    p.add_argument("--demo-customers", type=int, default=5000)
    p.add_argument("--demo-epochs", type=int, default=None, help="default: the training config's")
    p.add_argument("--before-src", default=None, help="another checkout to run as 'before'")
    p.add_argument("--thread-writer", action="store_true", help="also run with the audit "
                   "writer in a thread of the serving process (GENDETECT_AUDIT_WRITER=thread)")
    p.add_argument("--skip-mlflow", action="store_true")
    p.add_argument("--skip-workers", action="store_true")
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--audit", action="store_true",
                   help="compare the decision audit off / SQLite / PostgreSQL instead")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="a server where a scratch database may be created")
    p.add_argument("--rounds", type=int, default=3, help="audit mode: rounds of the three")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.audit:
        from benchmarks.serving_audit import run_audit_comparison

        return run_audit_comparison(args)
    from benchmarks.serving_audit import _drop_database, _scratch_database

    work = Path(tempfile.mkdtemp(prefix="gendetect-serving-bench-"))
    server_cpus, client_cpus, pinning = _pinning(args.pin)
    loadavg = os.getloadavg()
    shared: dict[str, str] = {}
    redis = db_name = None
    try:
        home = args.home or work / "demo-home"
        print(f"models: the demo's champion and the unsupervised one, home {home} ...",
              flush=True)
        tracking_uri, uris = demo_champions(home, days=args.demo_days,
                                            customers=args.demo_customers,
                                            epochs=args.demo_epochs, model_name=args.model_name)
        models = {name: describe(tracking_uri, home, uri) for name, uri in uris.items()}
        records = request_records(args.warmup + len(CONCURRENCIES) * args.requests,
                                  customers=args.demo_customers, days=args.demo_days + 10,
                                  start_day=args.demo_days)
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        if not args.skip_workers:
            redis, redis_url = start_redis(work)
            shared["redis"] = redis_url.rsplit("/", 1)[0]
            db_name, shared["postgres"] = _scratch_database(args.postgres_url)
        results: dict[str, Any] = {
            "models": models, "requests": args.requests, "warmup": args.warmup,
            "pinning": pinning, "servers": {},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "loadavg_start": [round(x, 2) for x in loadavg],
                        "http_parser": _http_parser()},
        }
        for k, (name, how) in enumerate(_setups(args, uris, work)):
            print(f"starting {name} ...", flush=True)
            server = _start(name, how, tracking_uri, work, server_cpus, shared, k)
            wrap = (lambda r: {"dataframe_records": [r]}) if how.get("mlflow") else (lambda r: r)
            bodies = [json.dumps(wrap(r)).encode() for r in records]
            results["servers"][name] = _measure(server, bodies, args)
            print(json.dumps(results["servers"][name]), flush=True)
        results["ratios"] = _ratios(results["servers"])
        results["target"] = _target(results["servers"])
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "serving.md").write_text(render(results))
        print(render(results))
        return 0
    finally:
        if redis is not None:
            redis.kill()
            redis.wait()
        if db_name is not None:
            _drop_database(args.postgres_url, db_name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
