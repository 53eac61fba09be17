"""Gaps in nullable fields, as the feature pipeline represents them.

A gap is NaN in the feature matrix, in the field's own column and in every
column derived from it, plus a 0/1 indicator column per nullable field
(`<field> missing`). The detector reads NaN as "not observed": it imputes the
training median there and leaves the cell out of the reconstruction error
and the likelihood (gendetect.models.components.blocks), so a gap by itself
is evidence of neither fraud nor normality. The indicator is an ordinary
input: where gaps are common it is unremarkable, where they are rare (or
come in an unusual combination) it is what the record is flagged for, and
the explanation then names `<field> missing`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING_SUFFIX = " missing"


def indicator_name(field: str) -> str:
    """The indicator column of a nullable field."""
    return field + MISSING_SUFFIX


def is_indicator(feature: str) -> bool:
    return feature.endswith(MISSING_SUFFIX)


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a value is missing: None, NaN or pandas' NA."""
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind in "iub":
        return np.zeros(len(values), dtype=bool)
    return np.asarray(pd.isna(values), dtype=bool)


def float_column(values: np.ndarray) -> np.ndarray:
    """A numeric or boolean column as float64 with NaN for gaps (object
    columns from JSON records or pandas' nullable dtypes hold None / NA)."""
    if values.dtype.kind in "fciub":
        return values.astype(np.float64)
    missing = missing_mask(values)
    out = np.full(len(values), np.nan)
    out[~missing] = values[~missing].astype(np.float64)
    return out


def absent_column(n: int) -> np.ndarray:
    """The column of an optional nullable field a file or record left out."""
    return np.full(n, np.nan)
