"""Categorical fields as model inputs, declared or learned from training data.

Declared categories (`categories:` in the schema) are a closed contract:
validation refuses other values, and each category is a 0/1 column, as
before. Undeclared ones learn their levels from the training rows:

- the most frequent levels (at most `max_levels`, each seen at least
  `min_level_count` times) get a 0/1 column each, every other level shares
  one `<field>=<other>` column: a field with 500 or 5,000 levels (merchant
  category codes, e-mail domains) costs at most max_levels + 3 columns, not a
  one-hot column per level, which would give the networks thousands of
  near-empty inputs to reconstruct and the scaler no spread to scale them by;
- one numeric column, `<field> frequency`: log((training count + 1) /
  (training rows + 1)) of the level. Frequency encoding is unsupervised and
  right for a density or reconstruction model: a rare level is exactly what
  it should notice, and it tells the rare levels lumped into "other" apart
  from the common ones. Target encoding (the fraud rate per level) would
  leak the labels into the generative inputs and overfit rare levels;
- a level never seen in training becomes "other" with the lowest frequency,
  and is counted (the API's `gendetect_unseen_levels` counter, the batch
  summary), never an error: new domains appear every day;
- a gap (nullable fields) is a value of its own: the `<field> missing`
  indicator and, for learned levels, the frequency of gaps in training.

The learned levels and counts are stored with the model as plain JSON
(gendetect.bundle_store), so training and serving encode identically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gendetect.features.missing import indicator_name, missing_mask
from gendetect.schema import FieldSpec

OTHER = "<other>"
# Training counts kept for the frequency column: the most frequent levels.
# Beyond them a level counts as unseen (its training count was at most the
# last kept one's, so its frequency was near the floor anyway).
MAX_STORED_LEVELS = 10_000


def level_text(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels as text, missing mask) for one column. Whole floats read as
    integers: a CSV column of codes with gaps arrives as 5411.0, the API
    sends "5411" or 5411, and they must be one level."""
    missing = missing_mask(values)
    if values.dtype.kind in "iub":
        return values.astype(str).astype(object), missing
    if values.dtype.kind != "f" or len(values) <= _SMALL:
        return np.array([_text(v) for v in values], dtype=object), missing
    # Large float columns: text per distinct value (a hash pass), not per
    # row (formatting a float is the slow part).
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = np.array([*(_text(u) for u in uniques), "nan"], dtype=object)
    return texts[codes], missing  # code -1 (a gap) -> "nan", masked anyway


# Up to this many values a plain loop beats a hash pass.
_SMALL = 64


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass
class CategoricalEncoder:
    """One categorical field's columns. `counts` is empty for declared
    categories (they have no frequency column and no "other")."""

    name: str
    levels: tuple[str, ...]
    declared: bool
    nullable: bool
    counts: dict[str, int] = field(default_factory=dict)
    n_rows: int = 0
    n_missing: int = 0
    # Hash lookups built once: the API encodes one record at a time.
    _level_index: pd.Index = field(init=False, repr=False, compare=False)
    _count_index: pd.Index = field(init=False, repr=False, compare=False)
    _count_array: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._level_index = pd.Index(list(self.levels), dtype=object)
        self._count_index = pd.Index(list(self.counts), dtype=object)
        self._count_array = np.fromiter(self.counts.values(), dtype=np.float64,
                                        count=len(self.counts))

    @classmethod
    def from_spec(cls, spec: FieldSpec) -> CategoricalEncoder | None:
        """The encoder of a field with declared categories; None when its
        levels must be learned (`learn`)."""
        if spec.categories is None:
            return None
        return cls(spec.name, tuple(spec.categories), declared=True, nullable=spec.nullable)

    @classmethod
    def learn(cls, spec: FieldSpec, values: np.ndarray) -> CategoricalEncoder:
        """Levels and counts from the training column `values`."""
        text, missing = level_text(np.asarray(values))
        counted = pd.Series(text[~missing]).value_counts(sort=False)
        # Most frequent first; ties by level, so the order does not depend on row order.
        ordered = sorted(counted.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        max_levels, min_count = spec.level_limits
        levels = tuple(str(k) for k, c in ordered[:max_levels] if c >= min_count)
        counts = {str(k): int(c) for k, c in ordered[:MAX_STORED_LEVELS]}
        return cls(spec.name, levels, declared=False, nullable=spec.nullable, counts=counts,
                   n_rows=len(text), n_missing=int(missing.sum()))

    # ------------------------------------------------------------------ names
    @property
    def feature_names(self) -> list[str]:
        names = [f"{self.name}={level}" for level in self.levels]
        if not self.declared:
            names.append(f"{self.name}={OTHER}")
        if self.nullable:
            names.append(indicator_name(self.name))
        if not self.declared:
            names.append(f"{self.name} frequency")
        return names

    @property
    def n_columns(self) -> int:
        return len(self.levels) + (0 if self.declared else 2) + int(self.nullable)

    # --------------------------------------------------------------- encoding
    def transform(self, values: np.ndarray) -> tuple[np.ndarray, int]:
        """(columns (n, n_columns) float64, number of values of a level never
        seen in training). A gap in a field that is not nullable (only
        possible when validation was skipped) reads as "other"."""
        text, missing = level_text(np.asarray(values))
        n, k = len(text), len(self.levels)
        out = np.zeros((n, self.n_columns))
        index = self._level_index.get_indexer(text) if n else np.zeros(0, dtype=np.int64)
        present = ~missing
        rows = np.flatnonzero(present & (index >= 0))
        out[rows, index[rows]] = 1.0
        col = k
        unseen = 0
        if not self.declared:
            out[:, col] = present & (index < 0) | (missing & (not self.nullable))
            col += 1
        if self.nullable:
            out[:, col] = missing
            col += 1
        if not self.declared:
            where = self._count_index.get_indexer(text) if n else np.zeros(0, dtype=np.int64)
            known = where >= 0
            counts = np.where(known, self._count_array[np.maximum(where, 0)], 0.0) \
                if len(self.counts) else np.zeros(n)
            counts = np.where(missing, float(self.n_missing), counts)
            out[:, col] = np.log((counts + 1.0) / (self.n_rows + 1.0))
            unseen = int((present & ~known).sum())
        return out, unseen

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "counts": self.counts, "n_rows": self.n_rows,
                "n_missing": self.n_missing}

    @classmethod
    def from_dict(cls, spec: FieldSpec, raw: dict[str, Any]) -> CategoricalEncoder:
        return cls(spec.name, tuple(str(v) for v in raw["levels"]), declared=False,
                   nullable=spec.nullable,
                   counts={str(k): int(v) for k, v in raw["counts"].items()},
                   n_rows=int(raw["n_rows"]), n_missing=int(raw["n_missing"]))

