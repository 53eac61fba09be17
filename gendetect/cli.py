"""The `gendetect` command: thin glue that parses arguments and imports each
command's implementation lazily, so `gendetect --help` stays fast and the core
library never imports the web or job layers at import time."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gendetect.errors import GendetectError

# command name -> "module:function"; each function takes the parsed Namespace
# and returns an exit code.
_COMMANDS: dict[str, str] = {
    "simulate": "gendetect.data.simulator:cli_main",
    "features": "gendetect.features.offline_cli:cli_main",
    "train": "training.train:cli_main",
    "retrain": "training.retrain:cli_main",
    "serve": "serving.server:cli_main",
    "score": "training.batch_score:cli_main",
}


class CliError(GendetectError):
    """A user-facing error: printed without a traceback, exit code 2."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gendetect", description="Fraud detection with generative models (VAE, GAN)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write simulated card transactions")
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--terminals", type=int, default=10000)
    p.add_argument("--start-date", default="2024-01-01")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")

    p = sub.add_parser("features", help="add behaviour (window) features to a transactions file")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=None, help="YAML training config (window settings)")

    p = sub.add_parser("train", help="train a detector as one MLflow run and register it")
    p.add_argument("--model", choices=["vae", "gan", "ensemble"], default="vae")
    p.add_argument("--data", required=True)
    p.add_argument("--config", default=None, help="YAML training config")
    p.add_argument("--alias", default=None, help="registry alias to set on the new version")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)

    p = sub.add_parser("retrain", help="train challengers, compare with the champion, promote")
    p.add_argument("--data", required=True)
    p.add_argument("--config", default=None)
    p.add_argument("--models", default="vae,gan")

    p = sub.add_parser("serve", help="start the scoring API")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--model-uri", default=None, help="defaults to models:/<name>@<alias>")

    p = sub.add_parser("score", help="batch-score a file with a registered model")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model-uri", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    module_name, func_name = _COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args) or 0)
    except GendetectError as exc:
        print(f"gendetect {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
