#!/usr/bin/env python3
"""The docker-compose topology as local processes on this machine.

    python scripts/topology.py up --root /tmp/gd-topo [--trainer] [--prefix gendetect]
    python scripts/topology.py status --root /tmp/gd-topo
    python scripts/topology.py down --root /tmp/gd-topo [--drop]

The same services, dependencies and health checks as docker-compose.yml
(tests/unit/test_compose.py checks the parsed file against SERVICES below,
so the two cannot drift apart):

- postgres: the local PostgreSQL (127.0.0.1:5432, PGHOST/PGPORT/PGUSER to
  change); not started here, only waited for;
- db-init: one-shot, creates the databases `<prefix>_mlflow` (MLflow's
  backend store) and `<prefix>_gendetect` (decision audit, verdicts) when
  missing;
- redis: the local Redis (GENDETECT_REDIS_URL, default 127.0.0.1:6379),
  started as `redis-server` when it does not answer;
- mlflow: `mlflow server` with the PostgreSQL backend store and proxied
  artifacts (`--artifacts-destination <root>/mlartifacts`), health /health;
- api-1, api-2: `gendetect serve` replicas sharing Redis (online state),
  PostgreSQL (audit, verdicts) and the keyed-hash secret, following the
  registry's champion alias every GENDETECT_MODEL_POLL_SECONDS; health
  /readyz (a model is loaded) or, before the first model, /healthz;
- trainer: one-shot (`--trainer`, compose's `train` profile): simulate a
  file and `gendetect retrain` it against the tracking server.

Every process runs in its own session (process group), its pid in
<root>/topology.json; `down` stops exactly those groups (SIGTERM, then
SIGKILL after a grace period), newest first. Secrets (API key, hash key)
are made once per root and kept in that file (mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Service:
    """One service of the topology, as docker-compose.yml declares it."""

    kind: str  # "external" (waited for), "oneshot" (runs to completion), "process"
    depends: dict[str, str] = field(default_factory=dict)  # name -> compose condition
    health: str | None = None  # what the health check asks (None: one-shot, no check)
    env: tuple[str, ...] = ()  # environment variables the service is given
    profile: str | None = None


_API_ENV = (
    "MLFLOW_TRACKING_URI", "GENDETECT_DATABASE_URL", "GENDETECT_STATE_STORE",
    "GENDETECT_REDIS_URL", "GENDETECT_API_KEY", "GENDETECT_HASH_KEY",
    "GENDETECT_MODEL_POLL_SECONDS",
)
_API_DEPENDS = {"postgres": "service_healthy", "db-init": "service_completed_successfully",
                "redis": "service_healthy", "mlflow": "service_healthy"}
SERVICES: dict[str, Service] = {
    "postgres": Service("external", health="pg_isready"),
    "db-init": Service("oneshot", {"postgres": "service_healthy"}),
    "redis": Service("external", health="redis-cli ping"),
    "mlflow": Service("process", {"postgres": "service_healthy",
                                  "db-init": "service_completed_successfully"},
                      health="/health"),
    "api-1": Service("process", _API_DEPENDS, health="/readyz", env=_API_ENV),
    "api-2": Service("process", _API_DEPENDS, health="/readyz", env=_API_ENV),
    "trainer": Service("oneshot", {"mlflow": "service_healthy",
                                   "db-init": "service_completed_successfully"},
                       env=("MLFLOW_TRACKING_URI", "GENDETECT_DATABASE_URL"), profile="train"),
}
API_REPLICAS = ("api-1", "api-2")
STATE_FILE = "topology.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _bin(name: str) -> str:
    """A console script of this interpreter's environment (the venv's)."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else name


class Topology:
    def __init__(self, root: Path, prefix: str = "gendetect") -> None:
        self.root = Path(root).resolve()
        self.prefix = prefix
        self.pg = {"host": os.environ.get("PGHOST", "127.0.0.1"),
                   "port": os.environ.get("PGPORT", "5432"),
                   "user": os.environ.get("PGUSER", "postgres")}
        self.redis_url = os.environ.get("GENDETECT_REDIS_URL", "redis://127.0.0.1:6379/0")
        self.state: dict[str, Any] = self._load()

    # ------------------------------------------------------------- state
    @property
    def _state_path(self) -> Path:
        return self.root / STATE_FILE

    def _load(self) -> dict[str, Any]:
        if self._state_path.exists():
            return json.loads(self._state_path.read_text())
        return {"prefix": self.prefix, "processes": {}, "ports": {},
                "api_key": secrets.token_urlsafe(24), "hash_key": secrets.token_hex(32)}

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.state, fh, indent=1)
        os.replace(tmp, self._state_path)

    # ------------------------------------------------------------ naming
    def database(self, role: str) -> str:
        return f"{self.state['prefix']}_{role}"

    def database_url(self, role: str, driver: str = "postgresql+psycopg") -> str:
        pg = self.pg
        return f"{driver}://{pg['user']}@{pg['host']}:{pg['port']}/{self.database(role)}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['mlflow']}"

    def api_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.state['ports'][name]}"

    @property
    def api_key(self) -> str:
        return str(self.state["api_key"])

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """The environment of a service: this process's, minus settings that
        would point it elsewhere, plus the service's own."""
        base = {k: v for k, v in os.environ.items()
                if not (k.startswith("GENDETECT_") or k.startswith("MLFLOW_"))}
        base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                    GENDETECT_HOME=str(self.root / name))
        values = {
            "MLFLOW_TRACKING_URI": self.tracking_uri if "mlflow" in self.state["ports"] else "",
            "GENDETECT_DATABASE_URL": self.database_url("gendetect"),
            "GENDETECT_STATE_STORE": "redis",
            "GENDETECT_REDIS_URL": self.redis_url,
            "GENDETECT_API_KEY": self.api_key,
            "GENDETECT_HASH_KEY": str(self.state["hash_key"]),
            "GENDETECT_MODEL_POLL_SECONDS": os.environ.get("GENDETECT_MODEL_POLL_SECONDS", "5"),
        }
        base.update({k: values[k] for k in SERVICES[name].env})
        base.update(extra)
        return base

    # ----------------------------------------------------------- services
    def wait_postgres(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self._admin_dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL does not answer: {exc}") from None
                time.sleep(0.5)

    def _admin_dsn(self) -> str:
        pg = self.pg
        return f"host={pg['host']} port={pg['port']} user={pg['user']} dbname=postgres"

    def db_init(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            for role in ("mlflow", "gendetect"):
                name = self.database(role)
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def drop_databases(self) -> None:
        import psycopg

        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            for role in ("mlflow", "gendetect"):
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database(role)}" WITH (FORCE)')

    def ensure_redis(self, timeout: float = 10.0) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=1)
        try:
            client.ping()
            return
        except redis.RedisError:
            pass
        folder = self.root / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        port = client.connection_pool.connection_kwargs.get("port", 6379)
        self._spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                              "--save", "", "--appendonly", "no", "--dir", str(folder)],
                    os.environ.copy())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.2)
        raise RuntimeError(f"redis-server did not answer on {self.redis_url}")

    def start_mlflow(self, timeout: float = 180.0) -> None:
        port = self.state["ports"].setdefault("mlflow", _free_port())
        artifacts = self.root / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        self._spawn("mlflow", self.mlflow_command(port, artifacts), self.env("mlflow"))
        self._wait("mlflow", f"{self.tracking_uri}/health", timeout)

    def mlflow_command(self, port: int, artifacts: Path) -> list[str]:
        """`mlflow server` as compose runs it (one worker: a shared 2-core
        machine), on the PostgreSQL backend store with proxied artifacts."""
        return [
            _bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
            "--backend-store-uri", self.database_url("mlflow"),
            "--artifacts-destination", str(artifacts),
        ]

    def start_api(self, name: str, *, require_model: bool = True, timeout: float = 180.0,
                  **extra: str) -> None:
        port = self.state["ports"].setdefault(name, _free_port())
        self._spawn(name, [_bin("gendetect"), "serve", "--host", "127.0.0.1", "--port",
                           str(port)], self.env(name, GENDETECT_TORCH_THREADS="1", **extra))
        path = "/readyz" if require_model else "/healthz"
        self._wait(name, f"{self.api_url(name)}{path}", timeout)

    def run_trainer(self, *commands: list[str], timeout: float = 900.0,
                    env: dict[str, str] | None = None) -> list[int]:
        """Each command is a `gendetect` argument list, run with the trainer's
        environment (plus `env`), in order; a non-zero exit other than 3
        (champion kept) raises with the trainer's log. Returns the exit codes."""
        folder = self.root / "trainer"
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "trainer.log"
        codes = []
        for args in commands:
            with open(log, "ab") as out:
                code = subprocess.run([_bin("gendetect"), *args],
                                      env=self.env("trainer", **(env or {})), cwd=folder,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      timeout=timeout).returncode
            codes.append(code)
            if code not in (0, 3):
                raise RuntimeError(f"trainer: gendetect {' '.join(args)} exited {code}:\n"
                                   f"{log.read_text()[-3000:]}")
        return codes

    def default_trainer(self) -> None:
        data = str(self.root / "trainer" / "tx.parquet")
        # 60 days: the 37-day warm-up (longest window + label delay) is skipped
        # and the model learns steady-state traffic.
        self.run_trainer(["simulate", "--days", "60", "--customers", "500", "--terminals",
                          "1000", "--out", data],
                         ["retrain", "--data", data, "--models", "vae", "-q"])

    # --------------------------------------------------------- processes
    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.stop(name)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(command, env=env, cwd=folder, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.state["processes"][name] = proc.pid
        self._save()

    def _alive(self, name: str) -> bool:
        pid = self.state["processes"].get(name)
        if pid is None:
            return False
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return False
        except ChildProcessError:
            pass  # not our child (another process started it): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _wait(self, name: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(name):
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            if _http_ok(url):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name} not healthy at {url} in {timeout:.0f} s:\n"
                           f"{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.root / name / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, grace: float = 20.0) -> None:
        """SIGTERM the service's process group (the one _spawn made), then
        SIGKILL it after `grace` seconds."""
        pid = self.state["processes"].pop(name, None)
        if pid is None:
            return
        self._save()
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
                if waited == pid:
                    break
            except ChildProcessError:
                pass
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    # ------------------------------------------------------------ up/down
    def up(self, *, trainer: bool = False, require_model: bool | None = None) -> None:
        """Start in dependency order; without a trainer run and without a
        champion yet, the APIs are only waited for until alive (/healthz)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._save()
        self.wait_postgres()
        self.db_init()
        self.ensure_redis()
        self.start_mlflow()
        if trainer:
            self.default_trainer()
        ready = trainer if require_model is None else require_model
        for name in API_REPLICAS:
            self.start_api(name, require_model=ready)

    def down(self, *, drop: bool = False) -> None:
        for name in reversed(list(self.state["processes"])):
            self.stop(name)
        if drop:
            self.drop_databases()
            shutil.rmtree(self.root / "mlartifacts", ignore_errors=True)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.state["processes"]:
            out[name] = {"pid": self.state["processes"][name], "alive": self._alive(name)}
        for name in ("mlflow", *API_REPLICAS):
            if name in self.state["ports"]:
                url = self.tracking_uri if name == "mlflow" else self.api_url(name)
                out.setdefault(name, {})["url"] = url
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--root", required=True, help="folder for logs, artifacts and state")
    parser.add_argument("--prefix", default="gendetect", help="database name prefix")
    parser.add_argument("--trainer", action="store_true",
                        help="up: run the one-shot trainer before the APIs")
    parser.add_argument("--drop", action="store_true",
                        help="down: also drop the databases and the artifacts")
    args = parser.parse_args(argv)
    topology = Topology(Path(args.root), args.prefix)
    try:
        if args.action == "up":
            topology.up(trainer=args.trainer)
            print(json.dumps({**topology.status(), "api_key": "in topology.json"}, indent=1))
        elif args.action == "down":
            topology.down(drop=args.drop)
        else:
            print(json.dumps(topology.status(), indent=1))
    except RuntimeError as exc:
        print(f"topology: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
