"""`gendetect serve`, registered through the `gendetect.commands` entry point."""

from __future__ import annotations

import argparse

from gendetect.cli import Command


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="bind address (default: GENDETECT_HOST, "
                   "127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: GENDETECT_PORT, 8000; 0 picks a free one)")
    p.add_argument("--model-uri", default=None,
                   help="registry URI to serve (default: models:/<name>@<champion alias>)")


COMMANDS = [Command("serve", "start the scoring API (FastAPI under uvicorn)",
                    _serve, "serving.server:cli_main", order=60,
                    settings="serving.settings:ServingSettings")]
