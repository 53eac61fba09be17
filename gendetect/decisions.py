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
"""

from __future__ import annotations

import json
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

    def __len__(self) -> int:
        return len(self.score)

    @property
    def n_flagged(self) -> int:
        return int(self.is_fraud.sum())

    def _parts(self, column: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        if column == "top_features":
            return self.feature_names, self.feature_idx, self.feature_share
        return self.reason_names, self.reason_idx, self.reason_share

    def explanation_array(self, column: str) -> pa.ListArray:
        """One column of explanations as list<struct<feature|reason: string,
        contribution: double>>, an empty list for rows without one. Built
        from the index arrays: offsets, a take of the names, the shares."""
        import pyarrow as pa

        names, idx, share = self._parts(column)
        n = len(self)
        k = idx.shape[1] if idx.ndim == 2 else 0
        lengths = np.zeros(n, dtype=np.int32)
        lengths[self.explained] = k
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = pa.StructArray.from_arrays(
            [
                pa.array(names, pa.string()).take(pa.array(idx.ravel(), pa.int64())),
                pa.array(share.ravel(), pa.float64()),
            ],
            names=[EXPLANATION_KEYS[column], "contribution"],
        )
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
        return [
            {
                "score": s,
                "risk": r,
                "is_fraud": flag,
                "threshold": threshold,
                "top_features": [
                    {"feature": f_names[j], "contribution": c}
                    for j, c in zip(fj, fc, strict=True)
                ],
                "top_reasons": [
                    {"reason": r_names[j], "contribution": c}
                    for j, c in zip(rj, rc, strict=True)
                ],
            }
            for s, r, flag, fj, fc, rj, rc in zip(
                self.score.tolist(), self.risk.tolist(), self.is_fraud.tolist(),
                self.feature_idx.tolist(), self.feature_share.tolist(),
                self.reason_idx.tolist(), self.reason_share.tolist(), strict=True,
            )
        ]

    def explanation_json(self, column: str) -> list[str]:
        """Per row the explanation list as JSON text (for CSV files): "[]"
        for rows without one; text is made for the explained rows only."""
        names, idx, share = self._parts(column)
        key = EXPLANATION_KEYS[column]
        out = ["[]"] * len(self)
        for row, js, ss in zip(self.explained.tolist(), idx.tolist(), share.tolist(), strict=True):
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
) -> BatchDecisions:
    """The decisions of scored rows: `contributions` are those of the rows
    in `explained`, turned here into top-k feature and reason shares."""
    feature_idx, feature_share = top_share_indices(contributions, top_k)
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
    )


def explanations_as_json(decisions: pd.DataFrame) -> pd.DataFrame:
    """The explanation columns of `score_frame` output as JSON strings (for
    CSV files, which have no list type). Modifies and returns `decisions`."""
    for column in EXPLANATION_COLUMNS:
        decisions[column] = [None if v is None else json.dumps(v) for v in decisions[column]]
    return decisions
