"""Servers for the serving benchmarks: `gendetect serve` (any settings, this
checkout's code or another's), `mlflow models serve` (the peer) and a
scratch redis-server, each in a session of its own (its CPU time is read
per session; stopping signals the whole group)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    path: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            # Children (workers, mlflow's uvicorn) are in the group: signal it.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path,
               timeout: float = 600) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server on port {port} not ready:\n{log.read_text()[-3000:]}")


def _launch(cmd: list[str], env: dict[str, str], log: Path, cpus: set[int] | None,
            cwd: Path | None = None) -> subprocess.Popen[bytes]:
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *cmd]
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=cwd)


def base_env(tracking_uri: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENDETECT_", "MLFLOW_"))}
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        MLFLOW_TRACKING_URI=tracking_uri,
        GENDETECT_TRACKING_URI=tracking_uri,
        GENDETECT_HOME=str(home),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


def start_gendetect(tracking_uri: str, model_name: str, work: Path, cpus: set[int] | None,
                    extra_env: dict[str, str] | None = None, tag: str = "",
                    src: Path | None = None) -> Server:
    """`gendetect serve` on a free port, with its own home: audit on (SQLite
    by default), auth disabled (like the peer, on 127.0.0.1). `src`: run
    another checkout's code (PYTHONPATH), e.g. the code before a change."""
    home = work / f"gendetect-serve{tag}"
    home.mkdir()
    log = work / f"gendetect-serve{tag}.log"
    env = base_env(tracking_uri, home) | {"GENDETECT_TORCH_THREADS": "1",
                                          "GENDETECT_MODEL_NAME": model_name,
                                          "GENDETECT_AUDIT_ENABLED": "true",
                                          "GENDETECT_AUTH": "disabled"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    env |= extra_env or {}
    cmd = [sys.executable, "-m", "gendetect.cli", "serve", "--port", "0"]
    proc = _launch(cmd, env, log, cpus, cwd=src)
    deadline = time.monotonic() + 300
    port = 0
    while not port:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text())
        if match:
            port = int(match.group(1))
        elif proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gendetect serve did not start:\n{log.read_text()}")
        else:
            time.sleep(0.2)
    _wait_http(port, "/readyz", proc, log)
    return Server("gendetect serve", proc, port, "/v1/score", log)


def start_mlflow(tracking_uri: str, work: Path, model_uri: str, cpus: set[int] | None
                 ) -> Server:
    log = work / "mlflow-serve.log"
    port = free_port()
    env = base_env(tracking_uri, work / "mlflow-home")
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
           "--env-manager", "local", "--workers", "1", "--host", "127.0.0.1",
           "--port", str(port)]
    proc = _launch(cmd, env, log, cpus)
    _wait_http(port, "/ping", proc, log)
    return Server("mlflow models serve", proc, port, "/invocations", log)


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A scratch redis-server (no persistence) and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is needed for the two-worker run (or --skip-workers)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
