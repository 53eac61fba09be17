"""A bundle's inputs given as plain arrays: the checks that make a 2-D
numeric array a feature matrix (DataFrames go through the schema instead)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gendetect.errors import InputError
from gendetect.features.pipeline import FeaturePipeline
from gendetect.schema import Schema


def string_columns(X: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
    """A frame whose column labels are not all strings (pandas' default
    0, 1, ...) with the labels as text, which is how a schema names them."""
    if isinstance(X, pd.DataFrame) and not all(isinstance(c, str) for c in X.columns):
        return X.rename(columns=str)
    return X


def column_names(X: pd.DataFrame | np.ndarray) -> list[str]:
    """X's column names; f0, f1, ... for an array."""
    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    array = _dense(X)
    if array.ndim != 2:
        raise InputError(_not_2d(array))
    if array.shape[1] == 0:
        raise InputError(
            f"0 feature(s) (shape={array.shape}) while a minimum of 1 is required."
        )
    return [f"f{i}" for i in range(array.shape[1])]


def _dense(X: object) -> np.ndarray:
    """X as an array; sparse and complex input say so (np.asarray would give
    a 0-d object array, or drop the imaginary part)."""
    if hasattr(X, "tocsr") or hasattr(X, "todense"):
        raise InputError("sparse input is not supported: pass a dense array")
    array = np.asarray(X)
    if array.dtype.kind == "c":
        raise InputError("Complex data not supported")
    return array


def _not_2d(array: np.ndarray) -> str:
    return (
        f"expected a 2-D array, got {array.ndim} dimension(s); Reshape your data "
        "with array.reshape(1, -1) if it is a single record"
    )


def plain_matrix(
    X: np.ndarray, schema: Schema, pipeline: FeaturePipeline, *, source: str | None = None
) -> np.ndarray:
    """X as float64, when it holds exactly the schema's numeric features
    (no derived or window features, which only a DataFrame can give)."""
    array = _dense(X)
    try:
        array = array.astype(np.float64, copy=False)
    except ValueError:
        raise InputError("expected a numeric array", source=source) from None
    if array.ndim != 2:
        raise InputError(_not_2d(array), source=source)
    names = [f.name for f in schema.feature_fields]
    if array.shape[1] != len(names) or schema.derived or pipeline.behaviour:
        raise InputError(
            f"X has {array.shape[1]} features, but FraudModelBundle is expecting {len(names)} "
            f"features as input: a plain array must have the {len(names)} numeric feature "
            f"columns {names[:5]}...; pass a DataFrame with the schema's fields instead",
            source=source,
        )
    bad = ~np.isfinite(array)
    if bad.any():
        column = int(np.argmax(bad.any(axis=0)))
        raise InputError("missing, NaN or infinite value(s)", field=names[column], source=source)
    return array
