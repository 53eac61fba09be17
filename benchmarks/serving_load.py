"""The serving benchmarks' load generator and its statistics.

A single asyncio thread writes pre-built HTTP/1.1 requests on keep-alive
connections (closed loop: each connection sends its next request when the
previous answer arrived), so that it costs far less CPU per request than
the servers. Latency percentiles (p50, p99, p99.9) and the servers' own
CPU time per request, read from /proc for every process of the server's
session (workers, the audit writer process, mlflow's uvicorn child).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


def session_cpu_seconds(sid: int) -> tuple[float, float]:
    """User + system CPU time of every process in a session, and of its
    leader alone (one worker: the process that serves requests), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = leader = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # After the command: state ppid pgrp session ... utime(12) stime(13).
        if int(fields[3]) == sid:
            cpu = int(fields[11]) + int(fields[12])
            total += cpu
            if int(entry.name) == sid:
                leader = cpu
    return total / ticks, leader / ticks


def http_request(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _connection(port: int, requests: list[bytes], latencies: list[float],
                      errors: list[str]) -> None:
    """Send requests one after the other on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in requests:
            started = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if match is None:
                raise RuntimeError(f"no Content-Length in response: {head[:200]!r}")
            body = await reader.readexactly(int(match.group(1)))
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append((head.split(b"\r\n", 1)[0] + b" " + body[:300]).decode())
    finally:
        writer.close()


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    errors: int
    first_error: str | None = None
    server_cpu_ms_per_request: float | None = None
    server_cores_busy: float | None = None  # server CPU seconds per wall second
    # The session leader's share (one worker: the serving process itself,
    # without its audit writer process).
    leader_cpu_ms_per_request: float | None = None

    @property
    def rps_per_core(self) -> float | None:
        cpu = self.server_cpu_ms_per_request
        return round(1000 / cpu, 1) if cpu else None


async def _drive(port: int, requests: list[bytes], concurrency: int, sid: int) -> LoadResult:
    shares = [requests[i::concurrency] for i in range(concurrency)]
    latencies: list[float] = []
    errors: list[str] = []
    cpu_before, leader_before = session_cpu_seconds(sid)
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, s, latencies, errors) for s in shares))
    seconds = time.perf_counter() - started
    cpu_after, leader_after = session_cpu_seconds(sid)
    cpu, leader = cpu_after - cpu_before, leader_after - leader_before
    ms = np.array(latencies) * 1000

    def pct(q: float) -> float:
        return round(float(np.percentile(ms, q)), 3)

    return LoadResult(
        requests=len(ms), concurrency=concurrency, seconds=round(seconds, 3),
        rps=round(len(ms) / seconds, 1), p50_ms=pct(50), p95_ms=pct(95), p99_ms=pct(99),
        p999_ms=pct(99.9), max_ms=round(float(ms.max()), 3), mean_ms=round(float(ms.mean()), 3),
        errors=len(errors), first_error=errors[0] if errors else None,
        server_cpu_ms_per_request=round(cpu * 1000 / len(ms), 3),
        server_cores_busy=round(cpu / seconds, 2),
        leader_cpu_ms_per_request=round(leader * 1000 / len(ms), 3),
    )


def drive(port: int, path: str, bodies: list[bytes], concurrency: int, sid: int) -> LoadResult:
    reqs = [http_request(path, b) for b in bodies]
    return asyncio.run(_drive(port, reqs, concurrency, sid))


def as_dict(result: LoadResult) -> dict[str, Any]:
    return {**asdict(result), "rps_per_core": result.rps_per_core}


def run_phases(port: int, path: str, sid: int, bodies: list[bytes], warmup: int,
               requests: int, concurrencies: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """A warm-up at the first concurrency, then `requests` new requests at
    each concurrency in turn (fresh records each: no retries)."""
    drive(port, path, bodies[:warmup], concurrencies[0], sid)
    out = {}
    start = warmup
    for c in concurrencies:
        out[f"c{c}"] = as_dict(drive(port, path, bodies[start:start + requests], c, sid))
        start += requests
    return out


def run_load(server: Any, bodies: list[bytes], concurrency: int, warmup: int,
             sequential: int) -> dict[str, Any]:
    """The older benchmarks' shape: warm-up, the load at `concurrency`, then
    `sequential` back-to-back requests on one connection."""
    sid = server.process.pid  # the server leads its own session
    measured = len(bodies) - warmup - sequential
    drive(server.port, server.path, bodies[:warmup], concurrency, sid)
    loaded = drive(server.port, server.path, bodies[warmup:warmup + measured], concurrency, sid)
    single = drive(server.port, server.path, bodies[warmup + measured:], 1, sid)
    return {"load": as_dict(loaded), "sequential": as_dict(single)}
