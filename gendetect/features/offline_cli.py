"""`gendetect features`: add the behaviour features to a transactions file
(the aggregate engine; training files are prepared with it).

Which features: the schema's `aggregates:` (`--schema`, or the `schema:` of
a training config given with `--config`), a legacy `windows:` mapping in the
config, else the built-in `transactions` schema's."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from gendetect.data.io import prepare_output, read_table, write_table
from gendetect.errors import InputError
from gendetect.features.behaviour import Behaviour
from gendetect.features.window_engine import add_window_features
from gendetect.features.windows import WindowConfig
from gendetect.schema import Schema, load_schema, validate_column

DEFAULT_SCHEMA = "transactions"


def load_window_config(path: str | None) -> WindowConfig | None:
    """A legacy `windows:` mapping from a YAML config (top level, or
    `features: {windows: ...}`), None when there is none."""
    raw = _read_config(path)
    section = raw.get("windows")
    if section is None and isinstance(raw.get("features"), dict):
        section = raw["features"].get("windows")
    if section is None:
        return None
    if not isinstance(section, dict):
        raise InputError("`windows` must be a mapping", source=path)
    try:
        return WindowConfig.from_dict(section)
    except InputError as exc:
        raise InputError(exc.message, field=exc.field, source=path) from exc
    except TypeError as exc:
        raise InputError(f"bad window settings: {exc}", source=path) from exc


def _read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        raw: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read config: {exc}", source=path) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError("expected a mapping at the top level", source=path)
    return raw


def load_behaviour(
    config: str | None, schema_name: str | None
) -> tuple[Behaviour, WindowConfig | None, Schema | None]:
    """The behaviour features to compute: (behaviour, the legacy config it
    came from or None, the schema it came from or None)."""
    if schema_name is None:
        windows = load_window_config(config)
        if windows is not None:
            return Behaviour.from_window_config(windows), windows, None
        schema_name = _read_config(config).get("schema") or DEFAULT_SCHEMA
    schema = load_schema(str(schema_name))  # errors name the file and key
    behaviour = Behaviour.from_schema(schema)
    if behaviour is None:
        raise InputError("the schema declares no behaviour features (`aggregates:`)",
                         source=str(schema_name))
    return behaviour, None, schema


def _check(df: pd.DataFrame, behaviour: Behaviour, schema: Schema) -> None:
    """The columns the features read, held to their schema kinds. A missing
    key or value is a gap the semantics define (NaN features, or not
    counted), so only the values present are checked; times must all be."""
    behaviour.check_columns(df)
    validate_column(schema[behaviour.time_col], df[behaviour.time_col])
    for name in (*behaviour.input_columns, behaviour.label_col):
        if name is not None and name in df.columns and name in schema:
            validate_column(schema[name], df[name].dropna())


def cli_main(args: argparse.Namespace) -> int:
    from gendetect.cli import show_progress

    progress = show_progress(args)
    started = time.perf_counter()
    behaviour, windows, schema = load_behaviour(args.config, getattr(args, "schema", None))
    prepare_output(args.out, inputs=(args.data,))
    df = read_table(args.data)
    if progress:
        print(f"features: {len(df):,} rows read in {time.perf_counter() - started:.1f} s; "
              "computing the behaviour features", file=sys.stderr, flush=True)
    try:
        if windows is not None:
            out = add_window_features(df, windows)
        else:
            assert schema is not None
            _check(df, behaviour, schema)
            out = behaviour.add_to_frame(df)
    except InputError as exc:
        # Name the file: the user may have passed several.
        raise InputError(exc.message, field=exc.field, source=str(args.data)) from exc
    write_table(out, args.out)
    if progress:
        print(f"features: {len(out):,} rows done in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    print(f"{args.out}: {len(out)} rows, {len(behaviour.feature_names)} behaviour features added")
    return 0
