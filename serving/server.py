"""`gendetect serve`: run the scoring API under uvicorn, one worker by
default (GENDETECT_WORKERS > 1: serving.workers).

One worker by default: the model and the online feature state live in the
process, and torch runs with `settings.torch_threads` (default 1) intra-op
threads so that the event loop, not a pool of spinning BLAS threads, decides
what runs. Scale out with more processes behind a load balancer and a shared
(Redis) state store.

Nagle: we bind the listening socket ourselves, as an explicit
(AF_INET, SOCK_STREAM, IPPROTO_TCP) socket, and hand it to uvicorn. asyncio
sets TCP_NODELAY on an accepted connection only when the socket reports
proto == IPPROTO_TCP, and accepted sockets inherit the listener's proto; a
listener created with proto 0 (uvicorn's own pre-bound sockets, see
uvicorn issue 3149) leaves Nagle on, and each keep-alive response whose body
goes out as a second small segment then waits ~40 ms for the client's delayed
ACK. Binding it ourselves also lets `--port 0` pick a free port that we can
print before serving.

HTTP parsing: uvicorn uses httptools when it is installed and h11 (pure
Python) otherwise; httptools costs about half as much CPU per request.
uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (lifespan end,
state snapshot), so a stopped server exits by that signal.

Connections are bounded (settings `*_timeout_seconds`, `max_connections`):
a request head must arrive within the header timeout (serving.connections),
its body within the body timeout (serving.middleware.RequestGuard, 408), a
kept-alive connection may stay idle for the idle timeout, and requests on
connections beyond `max_connections` are answered 503 and closed. Before,
idle or slow connections were held for as long as the client liked.
"""

from __future__ import annotations

import argparse
import logging
import socket

from gendetect.config import get_settings
from gendetect.errors import ModelNotReadyError
from serving.settings import ServingSettings

log = logging.getLogger("gendetect.serving")


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections get TCP_NODELAY."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets on Linux; asyncio sets it again anyway.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _settings_from_args(args: argparse.Namespace) -> ServingSettings:
    settings = get_settings(ServingSettings)
    updates = {
        key: value
        for key, value in (
            ("host", getattr(args, "host", None)),
            ("port", getattr(args, "port", None)),
            ("model_uri", getattr(args, "model_uri", None)),
        )
        if value is not None
    }
    return settings.model_copy(update=updates) if updates else settings


def cli_main(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    uri = settings.resolved_model_uri
    if not uri.startswith("models:/"):
        # Refuse before loading anything: the API serves registry versions only.
        raise ModelNotReadyError(
            f"only registry URIs are served (models:/<name>@<alias> or "
            f"models:/<name>/<version>), got {uri!r}"
        )
    from serving.workers import check_shared_state, prepare_process

    check_shared_state(settings)
    prepare_process(settings)  # logging, torch threads, switch interval

    import uvicorn

    from serving.connections import deadline_protocol
    from serving.main import create_app

    app = create_app(settings)  # refuses half-open settings before the port opens
    sock = bind_listener(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    print(f"gendetect API on http://{shown}:{port} (docs at /docs, model "
          f"{settings.resolved_model_uri}{workers})", flush=True)
    if settings.workers > 1:
        from serving.workers import serve_workers

        try:
            return serve_workers(settings, sock)  # each worker makes its own app
        finally:
            sock.close()
    config = uvicorn.Config(
        app,
        workers=1,
        lifespan="on",
        log_config=None,  # our logging setup above; uvicorn's loggers propagate to it
        access_log=False,  # the app logs route/status/latency/model itself
        # Connection limits: a deadline on each request head (uvicorn has
        # none), the body's in RequestGuard, the idle one uvicorn's own.
        http=deadline_protocol(settings.header_timeout_seconds),
        timeout_keep_alive=settings.idle_timeout_seconds,  # type: ignore[arg-type]
        # uvicorn counts the connection asking among the open ones, and
        # answers 503 (connection closed) from `limit` on: + 1 admits
        # max_connections at once.
        limit_concurrency=settings.max_connections + 1,
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1
