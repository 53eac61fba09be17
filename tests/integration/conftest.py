"""Integration fixtures for the scoring API: a real registered model in a
SQLite MLflow store, and the real `gendetect serve` process started on it.

Nothing is mocked: the server is a subprocess that loads the model from the
registry, and the tests talk to it over HTTP.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
import torch

from gendetect import tracking
from gendetect.bundle import FraudModelBundle
from gendetect.config import Settings
from gendetect.data.simulator import simulate_transactions
from scoring import model_log
from serving.settings import ServingSettings
from tests.conftest import FOREIGN_ENV

torch.set_num_threads(1)

API_KEY = "integration-test-key"
MAX_BATCH = 300
_URL_LINE = re.compile(r"gendetect API on (http://\S+)")


@dataclass
class RegisteredFixture:
    settings: Settings
    bundle: FraudModelBundle  # loaded back from the registry, as the server does
    fitted: FraudModelBundle  # the in-memory bundle that was logged
    data: pd.DataFrame
    version: str

    def register_again(self) -> str:
        """Log the same bundle as a new version and move the champion alias."""
        experiment = tracking.ensure_experiment(self.settings)
        with mlflow.start_run(experiment_id=experiment):
            ref = model_log.log_bundle(self.fitted, _example(self.data), self.settings)
        tracking.set_alias(self.settings, self.settings.champion_alias, ref.version)
        return ref.version


def _example(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["is_fraud"]).head(5)


@pytest.fixture(scope="session")
def registry_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a fresh SQLite MLflow store (created here, so that the
    server process never races us creating its tables)."""
    home = tmp_path_factory.mktemp("registry-home")
    # The API's settings: tests build apps from them (create_app); no
    # registry helper (its first check, which /readyz waits for, costs ~5 s
    # of CPU) unless a test follows the registry.
    settings = ServingSettings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
                               model_poll_seconds=0)
    tracking.ensure_experiment(settings)
    return settings


@pytest.fixture(scope="session")
def registered_model(registry_settings: Settings) -> RegisteredFixture:
    settings = registry_settings
    data = simulate_transactions(n_customers=300, n_terminals=600, days=25, seed=0)
    bundle = FraudModelBundle("vae", schema="transactions", max_epochs=2, seed=0,
                              accelerator="cpu")
    bundle.fit(data)
    experiment = tracking.ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment):
        ref = model_log.log_bundle(bundle, _example(data), settings)
    tracking.set_alias(settings, settings.champion_alias, ref.version)
    loaded, _ = tracking.load_registered_bundle(settings.resolved_model_uri, settings)
    return RegisteredFixture(settings, loaded, bundle, data, ref.version)


class ServerProcess:
    """`gendetect serve` as a subprocess on a free port (it binds port 0 and
    prints its URL). Output goes to a file: an unread pipe would fill up and
    block the server."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.api_key = env.get("GENDETECT_API_KEY", "")
        self.max_batch = int(env.get("GENDETECT_MAX_BATCH_SIZE", "1000"))
        self.log_path = home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._log_offset = 0
        self.statuses: list[int] = []

    @staticmethod
    def command() -> list[str]:
        script = Path(sys.executable).with_name("gendetect")
        if script.exists():
            return [str(script), "serve", "--port", "0"]
        return [sys.executable, "-m", "gendetect.cli", "serve", "--port", "0"]

    def start(self, timeout: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process; `wait_ready` waits for it."""
        self.home.mkdir(parents=True, exist_ok=True)
        # The log is appended to across restarts: read this start's part only.
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the process
        self.process = subprocess.Popen(self.command(), env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        self.url = ""
        self.statuses = []

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if not self.url:
                self.url = self._printed_url()
            elif self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready in {timeout} s:\n{self.log()}")

    def _printed_url(self) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            match = _URL_LINE.search(fh.read().decode(errors="replace"))
        return match.group(1) if match else ""

    def _ready(self) -> bool:
        try:
            status = httpx.get(f"{self.url}/readyz", timeout=2).status_code
        except httpx.TransportError:
            return False
        self.statuses.append(status)  # what /readyz said while starting
        return status == 200

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful shutdown: uvicorn runs the lifespan end, which
        writes the state snapshot), then wait."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# Settings of the stores and keys that a developer's environment must not
# pass to the servers the tests start (each test says what it wants).
STORE_ENV = ("GENDETECT_DATABASE_URL", "GENDETECT_API_KEYS", "GENDETECT_AUDIT_ENABLED",
             "GENDETECT_HASH_KEY", "GENDETECT_AUTH")
KEY_ENV = ("GENDETECT_API_KEY", "GENDETECT_API_KEYS")


def server_env(settings: Settings, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV and k not in STORE_ENV}
    env.update(
        GENDETECT_HOME=str(home),
        GENDETECT_TRACKING_URI=settings.resolved_tracking_uri,
        GENDETECT_TORCH_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        GENDETECT_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # No registry helper unless a test follows the registry (it says so
        # in `extra`): the helper's first check costs ~5 s of CPU per start.
        GENDETECT_MODEL_POLL_SECONDS="0",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def server(
    registry_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[ServerProcess]:
    """One API server for the session, with an API key and a small batch
    limit. Its home (state snapshot) is its own; the registry is shared.

    It starts *before* the model is trained: its imports overlap with the
    training (two cores), it shows /readyz at 503 while the registry is
    empty, and it picks the model up once the champion alias exists."""
    home = tmp_path_factory.mktemp("server-home")
    env = server_env(registry_settings, home, GENDETECT_API_KEY=API_KEY,
                     GENDETECT_MAX_BATCH_SIZE=str(MAX_BATCH),
                     GENDETECT_STATE_SNAPSHOT_SECONDS="3600")
    proc = ServerProcess(home, env)
    proc.launch()
    try:
        request.getfixturevalue("registered_model")
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def audit_db(home: Path) -> Any:
    """The server's default database (SQLite under its home), to read its
    tables as the tests check them."""
    from sqlalchemy import create_engine

    return create_engine(f"sqlite:///{home / 'gendetect.db'}")


def table_rows(engine: Any, table: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(f"SELECT * FROM {table}")).mappings()]


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key},
                      timeout=30) as c:
        yield c


@pytest.fixture
def server_factory(registered_model: RegisteredFixture, tmp_path: Path) -> Iterator[Any]:
    """Make servers with their own home and settings (not started); killed
    afterwards. Without a key from the test they run with
    GENDETECT_AUTH=disabled, said here: the API refuses to start without
    keys otherwise."""
    started: list[ServerProcess] = []

    def make(home: Path | None = None, **extra: str) -> ServerProcess:
        home = home or tmp_path / f"server-{len(started)}"
        if not any(name in extra for name in (*KEY_ENV, "GENDETECT_AUTH")):
            extra = {"GENDETECT_AUTH": "disabled", **extra}
        env = server_env(registered_model.settings, home,
                         GENDETECT_STATE_SNAPSHOT_SECONDS="3600", **extra)
        proc = ServerProcess(home, env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.process is not None:
            proc.process.kill()
            proc.process.wait()
