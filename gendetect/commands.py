"""The core's commands (`simulate`, `features`), registered with the
`gendetect` command through the `gendetect.commands` entry point group."""

from __future__ import annotations

import argparse

from gendetect.cli import Command, add_quiet


def _simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=int, default=60, help="days of transactions")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    p.add_argument("--customers", type=int, default=5000, help="number of customers")
    p.add_argument("--terminals", type=int, default=10000, help="number of terminals")
    p.add_argument("--start-date", default="2024-01-01", help="first day (ISO date)")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")


def _features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="transactions file (.parquet or .csv)")
    p.add_argument("--out", required=True, help="output file with the window features added")
    p.add_argument("--config", default=None,
                   help="YAML training config whose windows: settings to use")
    add_quiet(p)


COMMANDS = [
    Command("simulate", "write simulated card transactions (the handbook's design)",
            _simulate, "gendetect.data.simulator:cli_main", order=10),
    Command("features", "add the behaviour (window) features to a transactions file",
            _features, "gendetect.features.offline_cli:cli_main", order=20),
]
