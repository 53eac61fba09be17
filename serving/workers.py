"""Several worker processes on one port (GENDETECT_WORKERS > 1).

One process with one event loop runs Python on one core; more cores serve
more requests only with more processes. `gendetect serve` then binds the
socket itself (as for one worker, see serving.server), checks the settings
once, and hands the socket to uvicorn's process supervisor, which starts
the workers (spawned, not forked: no copy of a process with threads),
restarts one that dies, and stops them all on SIGTERM/SIGINT. Each worker
builds its own app from the same settings (the environment) and loads the
model itself.

What the workers share must live outside them, so this topology is refused
unless it does:

- the online behaviour state: Redis (GENDETECT_STATE_STORE=redis). A memory
  store per process would split each customer's history between workers;
- the audit, the verdicts and the review queue: one database
  (GENDETECT_DATABASE_URL; PostgreSQL in production, a SQLite file works on
  one machine). Idempotent retries and 409 conflicts are decided by the
  audit's unique transaction ids, whichever worker answers. An in-memory
  SQLite database is refused.

Per worker, and said so: the Prometheus metrics (a scrape reaches one
worker), the drift window, a /v1/model/reload (the other workers follow the
registry alias within GENDETECT_MODEL_POLL_SECONDS), and the in-flight
previews that let concurrent requests of one customer count each other
(gendetect.features.in_flight) while their decisions are being stored:
two such requests on two workers within that millisecond do not.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from serving.auth import ConfigurationError
from serving.settings import ServingSettings

SWITCH_INTERVAL_SECONDS = 0.0005


def check_shared_state(settings: ServingSettings) -> None:
    """ConfigurationError unless several workers would share their state."""
    if settings.workers <= 1:
        return
    if settings.state_store != "redis":
        raise ConfigurationError(
            f"GENDETECT_WORKERS={settings.workers} needs GENDETECT_STATE_STORE=redis: a memory "
            "store per worker would split each customer's history between the workers")
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and (
            url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"):
        raise ConfigurationError(
            f"GENDETECT_WORKERS={settings.workers} needs a database the workers share "
            "(GENDETECT_DATABASE_URL: PostgreSQL, or a SQLite file), not an in-memory one")


def prepare_process(settings: ServingSettings) -> None:
    """Per serving process, before anything loads a model."""
    _setup_logging(settings.log_level, settings.log_format)
    import torch

    # The thread count is fixed at first use.
    torch.set_num_threads(settings.torch_threads)
    # Threads of the process that want the interpreter lock (the journal
    # flusher, a model load, the thread audit writer) get it after the
    # switch interval (5 ms by default) while the event loop keeps the CPU
    # busy: shorter, so that they never hold a request up for long.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def _setup_logging(level: str, fmt: Any) -> None:
    from gendetect.logs import configure_logging

    configure_logging(level, fmt)
    # Alembic's per-plugin and per-context INFO lines at start say nothing to
    # an operator; the schema check logs its own line (gendetect.stores).
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def create_worker_app() -> Any:
    """uvicorn's app factory in each worker process."""
    from gendetect.config import get_settings
    from serving.main import create_app
    from serving.parent_death import end_with_parent

    # A worker stops (gracefully) when the supervisor dies, even by SIGKILL,
    # instead of serving on as an orphan.
    end_with_parent()
    settings = get_settings(ServingSettings)
    prepare_process(settings)
    return create_app(settings)


def __getattr__(name: str) -> Any:
    # uvicorn imports the HTTP protocol by name in each worker: the class
    # with the configured header deadline (serving.connections).
    if name == "WorkerProtocol":
        from gendetect.config import get_settings
        from serving.connections import deadline_protocol

        return deadline_protocol(get_settings(ServingSettings).header_timeout_seconds)
    raise AttributeError(name)


def serve_workers(settings: ServingSettings, sock: socket.socket) -> int:
    """Run `settings.workers` worker processes on the bound socket until
    SIGTERM/SIGINT."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # The workers read their settings from the environment: what the
    # command line said must be there too.
    os.environ["GENDETECT_MODEL_URI"] = settings.resolved_model_uri
    config = uvicorn.Config(
        "serving.workers:create_worker_app",
        factory=True,
        workers=settings.workers,
        lifespan="on",
        log_config=None,
        access_log=False,
        http="serving.workers:WorkerProtocol",
        timeout_keep_alive=settings.idle_timeout_seconds,  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections + 1,  # per worker, as for one
        server_header=False,
    )
    Multiprocess(config, sockets=[sock]).run()
    return 0
