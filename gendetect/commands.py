"""The core's commands (`simulate`, `features`, `db`, `labels`), registered with the
`gendetect` command through the `gendetect.commands` entry point group."""

from __future__ import annotations

import argparse

from gendetect.cli import Command, add_quiet, positive_int, seed


def _simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=positive_int, default=60, help="days of transactions")
    p.add_argument("--seed", type=seed, default=0, help="random seed (same seed, same file)")
    p.add_argument("--customers", type=positive_int, default=5000, help="number of customers")
    p.add_argument("--terminals", type=positive_int, default=10000, help="number of terminals")
    p.add_argument("--start-date", default="2024-01-01", help="first day (ISO date)")
    p.add_argument("--amount-factor", type=float, default=1.0,
                   help="scale every customer's spending (a drifted population)")
    p.add_argument("--age-groups", action="store_true",
                   help="add customer_age_group, a protected attribute (never a model input; "
                   "reported per group in the model card)")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")


def _features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="transactions file (.parquet or .csv)")
    p.add_argument("--out", required=True, help="output file with the window features added")
    p.add_argument("--config", default=None,
                   help="YAML file with a legacy windows: mapping, or a training config "
                   "(its schema's aggregates:)")
    p.add_argument("--schema", default=None,
                   help="schema whose aggregates: to compute (built-in name or YAML file; "
                   "default: the built-in transactions schema)")
    add_quiet(p)


def _database_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None,
                   help="SQLAlchemy URL (default: GENDETECT_DATABASE_URL, else SQLite in "
                   "GENDETECT_HOME)")


def _db(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _database_url(sub.add_parser("upgrade", help="create or upgrade the schema (migrations)"))
    _database_url(sub.add_parser("current", help="show the schema revision (exit 1 if it is "
                                 "not the one this version uses)"))


def _labels(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = sub.add_parser(
        "export", help="write the verdicts as a labels file (transaction_id, label, "
        "labelled_at) for training")
    export.add_argument("--since", default=None,
                        help="labels known from this ISO date/time on (default: all)")
    export.add_argument("--until", default=None,
                        help="only verdicts before this ISO date/time (exclusive; default: now)")
    export.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    export.add_argument("--label-column", default="is_fraud",
                        help="name of the 0/1 label column (the schema's label field)")
    _database_url(export)


COMMANDS = [
    Command("simulate", "write simulated card transactions (the handbook's design)",
            _simulate, "gendetect.data.simulator:cli_main", order=10),
    Command("features", "add the behaviour features (schema aggregates:) to a transactions file",
            _features, "gendetect.features.offline_cli:cli_main", order=20),
    Command("db", "the audit and verdict database: create or upgrade its schema",
            _db, "gendetect.stores.cli:db_main", order=70),
    Command("labels", "export analysts' verdicts as a labels file for training",
            _labels, "gendetect.stores.cli:labels_main", order=75),
]
