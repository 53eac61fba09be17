"""What the job commands (`train`, `retrain`) make of their shared arguments:
the config with the command-line overrides, the training window
(--since/--until) and the label sources (--labels, --no-verdicts).

Also the commands' entry points (`train`, `retrain`): they validate the
config first and only then import the job (torch, Lightning, MLflow: seconds),
so a config typo is reported at once. This module stays import-light for
that: pandas and the label sources are imported where they are used.
"""

from __future__ import annotations

import argparse
import importlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gendetect.cli import CliError, show_progress
from training.config import TrainingConfig, load_config

if TYPE_CHECKING:
    from gendetect.config import Settings
    from training.labels import LabelSources

_CONFIG = "_job_config"  # where the checked config waits on the Namespace


def train(args: argparse.Namespace) -> int:
    """`gendetect train`: the config checked, then training.train."""
    return _checked_then(args, "training.train:cli_main")


def retrain(args: argparse.Namespace) -> int:
    """`gendetect retrain`: the config checked, then training.retrain."""
    return _checked_then(args, "training.retrain:cli_main")


def _checked_then(args: argparse.Namespace, target: str) -> int:
    job_config(args)  # raises ConfigError (exit 2) before the heavy import below
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(args) or 0)


def job_config(args: argparse.Namespace) -> TrainingConfig:
    """--config, with --seed, --epochs and the progress lines over it;
    loaded once per command line (the entry point checks it, the job reads it)."""
    loaded = getattr(args, _CONFIG, None)
    if isinstance(loaded, TrainingConfig):
        return loaded
    config = _load_job_config(args)
    setattr(args, _CONFIG, config)
    return config


def _load_job_config(args: argparse.Namespace) -> TrainingConfig:
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
    import pandas as pd  # not at module level: see the module's docstring

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
    from training.labels import LabelSources  # pandas: see the module's docstring

    use_store = settings.database_url is not None and not getattr(args, "no_verdicts", False)
    return LabelSources(labels_file=getattr(args, "labels", None),
                        database_url=settings.database_url if use_store else None)
