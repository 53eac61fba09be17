"""What the job commands (`train`, `retrain`) make of their shared arguments:
the config with the command-line overrides, the training window
(--since/--until) and the label sources (--labels, --no-verdicts)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import pandas as pd

from gendetect.cli import CliError, show_progress
from gendetect.config import Settings
from training.config import TrainingConfig, load_config
from training.labels import LabelSources


def job_config(args: argparse.Namespace) -> TrainingConfig:
    """--config, with --seed, --epochs and the progress lines over it."""
    model: dict[str, Any] = {}
    if args.seed is not None:
        model["seed"] = args.seed
    if args.epochs is not None:
        model["max_epochs"] = args.epochs
    if show_progress(args):
        model["progress"] = True  # one line per epoch on stderr
    return load_config(args.config, overrides={"model": model} if model else None)


def window_arguments(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """--since / --until as naive UTC datetimes (ISO dates or times)."""
    out: list[datetime | None] = []
    for option in ("since", "until"):
        value = getattr(args, option, None)
        try:
            ts = None if value is None else pd.Timestamp(value)
        except ValueError:
            raise CliError(f"--{option}: not an ISO date or time: {value!r}") from None
        if ts is not None and ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        out.append(None if ts is None else ts.to_pydatetime())
    since, until = out
    if since is not None and until is not None and until <= since:
        raise CliError("--until must be after --since")
    return since, until


def label_arguments(args: argparse.Namespace, settings: Settings) -> LabelSources:
    """--labels FILE, and the verdict store when a database is configured
    (GENDETECT_DATABASE_URL set) unless --no-verdicts."""
    use_store = settings.database_url is not None and not getattr(args, "no_verdicts", False)
    return LabelSources(labels_file=getattr(args, "labels", None),
                        database_url=settings.database_url if use_store else None)
