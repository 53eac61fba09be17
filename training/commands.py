"""The job commands (`train`, `retrain`, `score`), registered with the
`gendetect` command through the `gendetect.commands` entry point group."""

from __future__ import annotations

import argparse

from gendetect.cli import (
    Command,
    add_quiet,
    non_negative_int,
    positive_int,
    registry_alias,
    seed,
)
from gendetect.models.registry import list_detector_kinds


def _window_and_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", default=None,
                   help="first day (ISO date or time, UTC) of the training window; the days "
                   "before it only warm up the behaviour features (default: after the warm-up)")
    p.add_argument("--until", default=None,
                   help="end of the training window (exclusive); the held-out period is the "
                   "evaluation.holdout_days after it (default: the file's last holdout_days)")
    p.add_argument("--labels", default=None,
                   help="labels file from `gendetect labels export` (transaction_id, label, "
                   "labelled_at), over the transactions file's own label column")
    p.add_argument("--no-verdicts", action="store_true",
                   help="do not read the verdict store even when GENDETECT_DATABASE_URL is set")


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=list_detector_kinds(), default="vae",
                   help="detector kind (registered models and the ensemble)")
    p.add_argument("--data", required=True, help="transactions file (.parquet or .csv)")
    p.add_argument("--config", default=None,
                   help="YAML training config merged over training/configs/default.yaml")
    p.add_argument("--alias", type=registry_alias, default=None,
                   help="registry alias to set on the new version if it passes the quality "
                   "gate (beats the champion on promotion.metric over the same held-out "
                   "period, ROC AUC >= promotion.min_roc_auc)")
    p.add_argument("--force", action="store_true",
                   help="set the alias even if the quality gate refuses the new version "
                   "(tagged gendetect.gate=forced; exit 0 instead of 3)")
    p.add_argument("--seed", type=seed, default=None, help="overrides the config's seed")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="overrides the config's max epochs")
    _window_and_labels(p)
    add_quiet(p)


def detector_kinds(text: str) -> str:
    """A comma-separated list of distinct registered detector kinds."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    known = list_detector_kinds()
    unknown = [k for k in kinds if k not in known]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        what = (f"unknown {', '.join(unknown)}" if unknown
                else "repeated kinds" if kinds else "no kinds")
        raise argparse.ArgumentTypeError(
            f"{what} in {text!r}: distinct kinds from {', '.join(known)}")
    return ",".join(kinds)


def _retrain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="transactions file (.parquet or .csv)")
    p.add_argument("--config", default=None,
                   help="YAML training config merged over training/configs/default.yaml")
    p.add_argument("--models", type=detector_kinds, default="vae,gan",
                   help=f"comma-separated challenger kinds from {', '.join(list_detector_kinds())}")
    p.add_argument("--seed", type=seed, default=None, help="overrides the config's seed")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="overrides the config's max epochs")
    _window_and_labels(p)
    add_quiet(p)


def _score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="file to score (.parquet or .csv)")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    p.add_argument("--model-uri", default=None,
                   help="registry URI (default: models:/<name>@<champion alias>)")
    p.add_argument("--explain", choices=("flagged", "all", "none"), default="flagged",
                   help="rows that get top features and reasons")
    p.add_argument("--chunk-rows", type=non_negative_int, default=1 << 20,
                   help="rows per chunk when streaming a Parquet file (0: in one piece)")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local: this process; spark: scoring.spark on a SparkSession "
                   "(pyspark extra; --out is then a Parquet folder)")
    add_quiet(p)


COMMANDS = [
    Command("train", "train a detector as one MLflow run, register it and judge it against "
            "the champion (quality gate); exit 0 passed, 3 refused (no alias), 2 bad input",
            _train, "training.cli_args:train", order=30),
    Command("retrain", "train challengers on a window, compare with the champion on the same "
            "held-out period after it, promote only what is better; exit 0 promoted, 3 champion "
            "kept, 1 failed, 2 bad input", _retrain, "training.cli_args:retrain", order=40),
    Command("score", "batch-score a file with a registered model", _score,
            "scoring.batch:cli_main", order=50),
]
