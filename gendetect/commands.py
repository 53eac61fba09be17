"""The core's commands (`simulate`, `schema`, `features`, `db`, `labels`), registered with the
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
    p.add_argument("--profile", choices=("default", "rich"), default="default",
                   help="default: the handbook's columns; rich: with device, channel, mcc, "
                   "e-mail domain, gaps and a device-ring scenario (schema `rich`; "
                   "--amount-factor and --age-groups apply to the default profile only)")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")


def _features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="transactions file (.parquet or .csv)")
    p.add_argument("--out", required=True, help="output file with the window features added")
    p.add_argument("--config", default=None,
                   help="YAML file with a windows: mapping (default: the schema's windows)")
    add_quiet(p)


def _schema(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    infer = sub.add_parser(
        "infer", help="draft a schema from a table (kinds, bounds, levels, gaps, a starter "
        "aggregates: block), with comments saying what to check")
    infer.add_argument("--data", required=True, help="the table (.parquet or .csv)")
    infer.add_argument("--out", required=True, help="schema file to write (.yaml)")
    infer.add_argument("--name", default=None, help="schema name (default: the file's name)")
    infer.add_argument("--force", action="store_true", help="replace --out if it exists")
    check = sub.add_parser(
        "check", help="say column by column what train would refuse in a file (exit 2 if "
        "anything), without training")
    check.add_argument("--schema", required=True,
                       help="schema file (.yaml) or built-in name (transactions, numeric, rich)")
    check.add_argument("--data", required=True, help="the table (.parquet or .csv)")


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
            _simulate, "gendetect.data.simulate_cli:cli_main", order=10,
            examples=("gendetect simulate --days 30 --customers 500 --out tx.parquet",
                      "gendetect simulate --days 90 --seed 7 --age-groups --out tx.csv",
                      "gendetect simulate --profile rich --days 30 --out shop.csv")),
    Command("schema", "describe your own table: draft a schema (infer), check a file "
            "against one (check)", _schema, "gendetect.schema_tools.cli:main", order=15,
            examples=("gendetect schema infer --data shop.csv --out shop.yaml",
                      "gendetect schema check --schema shop.yaml --data shop.csv")),
    Command("features", "add the behaviour (window) features to a transactions file",
            _features, "gendetect.features.offline_cli:cli_main", order=20),
    Command("db", "the audit and verdict database: create or upgrade its schema",
            _db, "gendetect.stores.cli:db_main", order=70),
    Command("labels", "export analysts' verdicts as a labels file for training",
            _labels, "gendetect.stores.cli:labels_main", order=75),
]
