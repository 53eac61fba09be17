"""Decisions for a scored batch, column by column, and how they are written.

`BatchDecisions` is what batch scoring returns: score, risk, flag and
threshold as arrays, and the explanations (top features and reasons) as
index and share arrays for the explained rows only. It becomes an Arrow
table with list<struct> columns (Parquet), a DataFrame whose explanation
columns are those same Arrow arrays (pandas' ArrowDtype: the pyfunc and
Spark surfaces), both without a Python object per row, JSON text for the
explained rows (CSV), and one dict per record for the online path
(`records`, the one-row case). `assemble` builds it from scores and
contributions for every scoring entry point of the bundle; every surface
writes it from here.

Each top feature also carries `value` and `expected`: the record's value of
that input and what the model expected it to be, in the units an analyst
reads (gendetect.features.units), null where there is none (a gap, a gap
indicator, a categorical column, a network without a reconstruction).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gendetect.reasons import ReasonMap, top_share_indices

if TYPE_CHECKING:
    import pyarrow as pa

# Decision columns holding lists of {name, contribution} records.
EXPLANATION_COLUMNS = ("top_features", "top_reasons")
# The key inside each explanation record, per explanation column.
EXPLANATION_KEYS = {"top_features": "feature", "top_reasons": "reason"}
# The observed and expected values each top feature carries (float or null).
FEATURE_VALUE_KEYS = ("value", "expected")
# True where the behaviour features were computed from the scored batch's own
# rows (no earlier history), False where they were given as input columns.
BATCH_HISTORY_COLUMN = "batch_history_only"


@dataclass
class BatchDecisions:
    """Decisions for a batch, column by column: what `score_records` returns
    per record, without a Python object per row. Explanations exist for the
    rows in `explained` (sorted row positions) only; elsewhere they are empty
    lists, on every surface (Parquet, CSV as "[]", pyfunc, Spark: MLflow's
    Spark conversion of array<struct> results takes no nulls)."""

    score: np.ndarray
    risk: np.ndarray
    is_fraud: np.ndarray
    threshold: float
    explained: np.ndarray
    feature_names: tuple[str, ...]
    feature_idx: np.ndarray
    feature_share: np.ndarray
    reason_names: tuple[str, ...]
    reason_idx: np.ndarray
    reason_share: np.ndarray
    batch_history_only: bool
    # Per explained row and top feature (same shape as feature_idx): the
    # observed and the expected value, NaN for null; None: all null.
    feature_value: np.ndarray | None = None
    feature_expected: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.score)

    @property
    def n_flagged(self) -> int:
        return int(self.is_fraud.sum())

    def _parts(self, column: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        if column == "top_features":
            return self.feature_names, self.feature_idx, self.feature_share
        return self.reason_names, self.reason_idx, self.reason_share

    def _feature_values(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, expected) per explained row and top feature, NaN = null."""
        empty = np.full(self.feature_idx.shape, np.nan)
        value = empty if self.feature_value is None else self.feature_value
        expected = empty if self.feature_expected is None else self.feature_expected
        return value, expected

    def explanation_array(self, column: str) -> pa.ListArray:
        """One column of explanations as list<struct<feature|reason: string,
        contribution: double>> (top features also `value` and `expected`,
        double, null where there is none), an empty list for rows without
        one. Built from the index arrays: offsets, a take of the names, the
        shares."""
        import pyarrow as pa

        names, idx, share = self._parts(column)
        n = len(self)
        k = idx.shape[1] if idx.ndim == 2 else 0
        lengths = np.zeros(n, dtype=np.int32)
        lengths[self.explained] = k
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        arrays = [
            pa.array(names, pa.string()).take(pa.array(idx.ravel(), pa.int64())),
            pa.array(share.ravel(), pa.float64()),
        ]
        fields = [EXPLANATION_KEYS[column], "contribution"]
        if column == "top_features":
            for values in self._feature_values():
                flat = values.ravel()
                arrays.append(pa.array(flat, pa.float64(), mask=np.isnan(flat)))
            fields.extend(FEATURE_VALUE_KEYS)
        values = pa.StructArray.from_arrays(arrays, names=fields)
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def explanation_lists(self, column: str) -> list[list[dict[str, Any]]]:
        """One entry per row: the [{feature|reason, contribution}] list of
        `score_records`, empty for rows without an explanation (Python
        objects: for tests and small batches, not the batch path)."""
        return self.explanation_array(column).to_pylist()

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (score, risk, is_fraud, threshold, top_features,
        top_reasons): the online path's decisions, for a batch whose rows are
        all explained (explain="all")."""
        threshold = self.threshold
        f_names, r_names = self.feature_names, self.reason_names
        value, expected = (_nullable(v) for v in self._feature_values())
        return [
            {
                "score": s,
                "risk": r,
                "is_fraud": flag,
                "threshold": threshold,
                "top_features": [
                    {"feature": f_names[j], "contribution": c, "value": v, "expected": e}
                    for j, c, v, e in zip(fj, fc, fv, fe, strict=True)
                ],
                "top_reasons": [
                    {"reason": r_names[j], "contribution": c}
                    for j, c in zip(rj, rc, strict=True)
                ],
            }
            for s, r, flag, fj, fc, fv, fe, rj, rc in zip(
                self.score.tolist(), self.risk.tolist(), self.is_fraud.tolist(),
                self.feature_idx.tolist(), self.feature_share.tolist(), value, expected,
                self.reason_idx.tolist(), self.reason_share.tolist(), strict=True,
            )
        ]

    def explanation_json(self, column: str) -> list[str]:
        """Per row the explanation list as JSON text (for CSV files): "[]"
        for rows without one; text is made for the explained rows only."""
        names, idx, share = self._parts(column)
        key = EXPLANATION_KEYS[column]
        out = ["[]"] * len(self)
        rows = zip(self.explained.tolist(), idx.tolist(), share.tolist(), strict=True)
        if column == "top_features":
            value, expected = (_nullable(v) for v in self._feature_values())
            for (row, js, ss), vs, es in zip(rows, value, expected, strict=True):
                out[row] = json.dumps([
                    {key: names[j], "contribution": c, "value": v, "expected": e}
                    for j, c, v, e in zip(js, ss, vs, es, strict=True)
                ])
            return out
        for row, js, ss in rows:
            out[row] = json.dumps(
                [{key: names[j], "contribution": c} for j, c in zip(js, ss, strict=True)]
            )
        return out

    def to_pandas(self, index: Any = None, *, json_text: bool = False) -> pd.DataFrame:
        """score, risk, is_fraud, threshold, top_features, top_reasons and
        batch_history_only. Explanations are Arrow-backed columns
        (pd.ArrowDtype of list<struct>): an element reads as a list of
        dicts, yet no Python object is made per row; JSON text with
        `json_text`."""
        n = len(self)
        columns: dict[str, Any] = {
            "score": self.score,
            "risk": self.risk,
            "is_fraud": self.is_fraud,
            "threshold": np.full(n, self.threshold),
        }
        for column in EXPLANATION_COLUMNS:
            if json_text:
                columns[column] = pd.Series(self.explanation_json(column), dtype=object,
                                            index=index)
            else:
                columns[column] = pd.Series(
                    pd.arrays.ArrowExtensionArray(self.explanation_array(column)), index=index
                )
        columns[BATCH_HISTORY_COLUMN] = np.full(n, self.batch_history_only)
        return pd.DataFrame(columns, index=index)

    def to_arrow(self, prefix: str = "") -> pa.Table:
        """The decisions as an Arrow table (for Parquet): explanations as
        list<struct<feature|reason: string, contribution: double>>, empty for
        rows without one. Built from the index arrays, no Python per row."""
        import pyarrow as pa

        n = len(self)
        arrays: dict[str, pa.Array] = {
            "score": pa.array(self.score, pa.float64()),
            "risk": pa.array(self.risk, pa.float64()),
            "is_fraud": pa.array(self.is_fraud, pa.bool_()),
            "threshold": pa.array(np.full(n, self.threshold), pa.float64()),
        }
        for column in EXPLANATION_COLUMNS:
            arrays[column] = self.explanation_array(column)
        arrays[BATCH_HISTORY_COLUMN] = pa.array(np.full(n, self.batch_history_only))
        return pa.table({prefix + name: array for name, array in arrays.items()})


def assemble(
    score: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    explained: np.ndarray,
    contributions: np.ndarray,
    *,
    feature_names: tuple[str, ...],
    reason_map: ReasonMap,
    top_k: int,
    batch_history_only: bool = False,
    values: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> BatchDecisions:
    """The decisions of scored rows: `contributions` are those of the rows
    in `explained`, turned here into top-k feature and reason shares;
    `values`, given the top features' column indices (n_explained, k),
    returns their observed and expected values (NaN for null)."""
    feature_idx, feature_share = top_share_indices(contributions, top_k)
    value, expected = values(feature_idx) if values is not None else (None, None)
    reason_idx, reason_share = top_share_indices(reason_map.sums(contributions), top_k)
    return BatchDecisions(
        score=score,
        risk=risk,
        is_fraud=score >= threshold,
        threshold=threshold,
        explained=explained.astype(np.int64, copy=False),
        feature_names=feature_names,
        feature_idx=feature_idx,
        feature_share=feature_share,
        reason_names=tuple(reason_map.reasons),
        reason_idx=reason_idx,
        reason_share=reason_share,
        batch_history_only=batch_history_only,
        feature_value=value,
        feature_expected=expected,
    )


def _nullable(values: np.ndarray) -> list[list[float | None]]:
    """Nested lists of floats with None for NaN (JSON null)."""
    return [[None if v != v else v for v in row] for row in values.tolist()]


def explanations_as_json(decisions: pd.DataFrame) -> pd.DataFrame:
    """The explanation columns of `score_frame` output as JSON strings (for
    CSV files, which have no list type). Modifies and returns `decisions`."""
    for column in EXPLANATION_COLUMNS:
        decisions[column] = [None if v is None else json.dumps(v) for v in decisions[column]]
    return decisions
