"""The decision audit's cost: `gendetect serve` with the audit off, on with
SQLite and on with PostgreSQL, single-record requests, same load and the
same requests (see serving_latency.py --audit). Target: throughput with the
audit on >= 80% of the audit off, on both databases."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serving_latency import (
    _http_parser,
    _pinning,
    request_records,
    run_load,
    start_gendetect,
    train_and_register,
)

TARGET_RATIO = 0.8


def _scratch_database(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    from gendetect.stores.database import normalise_url

    name = f"gendetect_bench_{secrets.token_hex(4)}"
    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, normalise_url(admin_url).rsplit("/", 1)[0] + f"/{name}"


def _drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    from gendetect.stores.database import normalise_url

    engine = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _audit_rows(url: str) -> int:
    from sqlalchemy import create_engine, text

    from gendetect.stores.database import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        n = int(conn.scalar(text("SELECT count(*) FROM decisions")) or 0)
    engine.dispose()
    return n


def _rows_per_commit(port: int) -> float | None:
    """The group-commit size over the run, from the server's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    commits = values.get("gendetect_audit_commits_total")
    return round(values["gendetect_audit_rows_total"] / commits, 2) if commits else None


def run_audit_comparison(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="gendetect-audit-bench-"))
    server_cpus, client_cpus, pinning = _pinning(args.pin)
    loadavg = os.getloadavg()
    db_name = None
    try:
        tracking_uri = args.tracking_uri
        if tracking_uri is None:
            print("training and registering a small model ...", flush=True)
            (work / "registry").mkdir()
            tracking_uri = train_and_register(work / "registry")
        records = request_records(args.warmup + args.requests + args.sequential)
        bodies = [json.dumps(r).encode() for r in records]
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        db_name, pg_url = _scratch_database(args.postgres_url)
        setups: dict[str, dict[str, str]] = {
            "audit off": {"GENDETECT_AUDIT_ENABLED": "false"},
            "audit on, SQLite": {},
            "audit on, PostgreSQL": {"GENDETECT_DATABASE_URL": pg_url},
        }
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
        for k in range(args.rounds):
            for i, (name, env) in enumerate(setups.items()):
                if name.endswith("PostgreSQL"):
                    _reset(pg_url)
                print(f"round {k + 1}: {name} ...", flush=True)
                server = start_gendetect(tracking_uri, args.model_name, work, server_cpus,
                                         env, tag=f"-{k}-{i}")
                try:
                    result = run_load(server, bodies, args.concurrency, args.warmup,
                                      args.sequential)
                    result["rows_per_commit"] = _rows_per_commit(server.port)
                finally:
                    server.stop()
                home = work / f"gendetect-serve-{k}-{i}"
                url = pg_url if name.endswith("PostgreSQL") else (
                    f"sqlite:///{home / 'gendetect.db'}")
                result["audit_rows"] = 0 if name == "audit off" else _audit_rows(url)
                rounds[name].append(result)
                print(json.dumps(result["load"]), flush=True)
        results = _summarise(args, rounds, pinning, loadavg)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serving_audit.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "serving_audit.md").write_text(render(results))
        print(render(results))
        return 0
    finally:
        if db_name is not None:
            _drop_database(args.postgres_url, db_name)
        shutil.rmtree(work, ignore_errors=True)


def _reset(url: str) -> None:
    """Each PostgreSQL round starts on an empty schema, like SQLite's fresh file."""
    from sqlalchemy import create_engine, text

    from gendetect.stores.database import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.begin() as conn:
        for table in ("verdicts", "decisions", "hash_key_check", "alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()


def _summarise(args: argparse.Namespace, rounds: dict[str, list[dict[str, Any]]],
               pinning: str, loadavg: tuple[float, float, float]) -> dict[str, Any]:
    median = {name: {key: statistics.median(r["load"][key] for r in runs)
                     for key in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")}
              for name, runs in rounds.items()}
    off = median["audit off"]["rps"]
    ratios = {name: m["rps"] / off for name, m in median.items()}
    return {
        "requests": args.requests, "concurrency": args.concurrency, "warmup": args.warmup,
        "rounds": rounds, "median": median, "ratios": ratios, "pinning": pinning,
        "target_ratio": TARGET_RATIO,
        "met": all(r >= TARGET_RATIO for r in ratios.values()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": [round(x, 2) for x in loadavg],
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                    "http_parser": _http_parser()},
    }


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Serving with the decision audit: off / SQLite / PostgreSQL",
        "",
        f"- load: {results['requests']} single-record requests per run, "
        f"{results['concurrency']} keep-alive connections (closed loop), after "
        f"{results['warmup']} warm-up requests; one worker, torch with 1 thread; the three "
        f"setups alternate, {len(next(iter(results['rounds'].values())))} rounds",
        f"- pinning: {results['pinning']} (PostgreSQL runs as the machine's service, unpinned)",
        f"- machine: {m['cpus']} CPUs, load average at start {m['loadavg_start']}, at end "
        f"{m['loadavg_end']} (other work shares the CPUs), Python {m['python']}",
        "- audit on: every decision committed before its 2xx (group commit; SQLite in WAL "
        "mode with synchronous=FULL, PostgreSQL with synchronous_commit on)",
        "",
        "| setup | req/s (median) | vs off | p50 ms | p99 ms | server CPU ms/req | "
        "CPU vs off | req/s per round | rows per commit | audit rows (last round) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    off_cpu = results["median"]["audit off"]["server_cpu_ms_per_request"]
    for name, med in results["median"].items():
        runs = results["rounds"][name]
        per_round = ", ".join(f"{r['load']['rps']:.0f}" for r in runs)
        groups = [r["rows_per_commit"] for r in runs if r.get("rows_per_commit")]
        group = f"{statistics.median(groups):.1f}" if groups else "-"
        cpu = med["server_cpu_ms_per_request"]
        lines.append(
            f"| {name} | {med['rps']:.0f} | {results['ratios'][name]:.0%} | "
            f"{med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {cpu:.3f} | "
            f"{off_cpu / cpu:.0%} | {per_round} | {group} | {runs[-1]['audit_rows']} |"
        )
    lines += [
        "",
        f"Target: audit on >= {results['target_ratio']:.0%} of audit off on both databases: "
        f"**{'met' if results['met'] else 'not met'}**.",
        "",
        "CPU vs off: server CPU per request with the audit off over that with it on, the "
        "throughput one dedicated core would keep (wall-clock req/s depend much more on "
        "other work on the machine). Rows per commit: decisions per audit transaction "
        "(group commit), from the server's /metrics over the whole run.",
        "",
        "Audit rows: decisions in the database after the run (warm-up, measured and "
        "sequential requests): every answered request has its row.",
    ]
    return "\n".join(lines) + "\n"
