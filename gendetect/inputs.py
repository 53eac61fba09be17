"""A bundle's inputs given as plain arrays: the checks that make a 2-D
numeric array a feature matrix (DataFrames go through the schema instead)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import Schema


def column_names(X: pd.DataFrame | np.ndarray) -> list[str]:
    """X's column names; f0, f1, ... for an array."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise InputError(f"expected a 2-D array, got {array.ndim} dimension(s)")
    return [f"f{i}" for i in range(array.shape[1])]


def plain_matrix(
    X: np.ndarray, schema: Schema, pipeline: FeaturePipeline, *, source: str | None = None
) -> np.ndarray:
    """X as float64, when it holds exactly the schema's numeric features
    (no derived or window features, which only a DataFrame can give)."""
    try:
        array = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("expected a numeric array", source=source) from None
    if array.ndim != 2:
        raise InputError(f"expected a 2-D array, got {array.ndim} dimension(s)", source=source)
    names = [f.name for f in schema.feature_fields]
    if array.shape[1] != len(names) or schema.derived or pipeline.window_config:
        raise InputError(
            f"a plain array must have the {len(names)} numeric feature columns {names[:5]}...; "
            "pass a DataFrame with the schema's fields instead",
            source=source,
        )
    bad = ~np.isfinite(array)
    if bad.any():
        column = int(np.argmax(bad.any(axis=0)))
        raise InputError("missing, NaN or infinite value(s)", field=names[column], source=source)
    return array
