"""`gendetect features`: add the behaviour window features to a transactions
file (the offline engine; training files are prepared with it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from gendetect.data.io import prepare_output, read_table, write_table
from gendetect.errors import InputError
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig


def load_window_config(path: str | None) -> WindowConfig:
    """Window settings from a YAML config: its `windows:` mapping, or
    `features: {windows: ...}`; defaults when there is no file or no such key."""
    if path is None:
        return WindowConfig()
    try:
        raw: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read config: {exc}", source=path) from exc
    if raw is None:
        return WindowConfig()
    if not isinstance(raw, dict):
        raise InputError("expected a mapping at the top level", source=path)
    section = raw.get("windows")
    if section is None and isinstance(raw.get("features"), dict):
        section = raw["features"].get("windows")
    if section is None:
        return WindowConfig()
    if not isinstance(section, dict):
        raise InputError("`windows` must be a mapping", source=path)
    try:
        return WindowConfig.from_dict(section)
    except InputError as exc:
        raise InputError(exc.message, field=exc.field, source=path) from exc
    except TypeError as exc:
        raise InputError(f"bad window settings: {exc}", source=path) from exc


def cli_main(args: argparse.Namespace) -> int:
    from gendetect.cli import show_progress

    progress = show_progress(args)
    started = time.perf_counter()
    config = load_window_config(args.config)
    prepare_output(args.out, inputs=(args.data,))
    df = read_table(args.data)
    if progress:
        print(f"features: {len(df):,} rows read in {time.perf_counter() - started:.1f} s; "
              "computing the window features", file=sys.stderr, flush=True)
    try:
        out = add_window_features(df, config)
    except InputError as exc:
        # Name the file: the user may have passed several.
        raise InputError(exc.message, field=exc.field, source=str(args.data)) from exc
    write_table(out, args.out)
    if progress:
        print(f"features: {len(out):,} rows done in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    print(f"{args.out}: {len(out)} rows, {len(config.feature_names)} window features added")
    return 0
