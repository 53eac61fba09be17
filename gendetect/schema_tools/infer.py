"""Drafting a schema from a table: each column's kind, bounds, levels and
gaps, and a starter `aggregates:` block for the entity columns found.

The draft is a starting point a person checks, not a verdict: every choice
made on a guess (a name, a cardinality) comes with a note saying what to
check, which the YAML writer (gendetect.schema_tools.render) turns into
comments. Kinds, in the order they are tried:
- timestamp: datetimes, or text that parses as ISO 8601 times;
- label: a 0/1 column named like the outcome (fraud, label, target, is_*):
  the first such, `fraud` before `label` before the rest; other 0/1 columns
  are boolean;
- id: integers, no gaps, each value once (the first such column);
- categorical: a name that ends like a code or category (mcc, type,
  channel, domain, country ...), or text of modest cardinality; levels are
  listed when there are few, otherwise left to be learned from training data;
- entity: many distinct values, repeated, named like an identifier (card,
  device, email, merchant, ..._id), or text of high cardinality;
- numeric: the rest, with bounds generous around the observed range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gendetect.schema import DEFAULT_MAX_LENGTH
from gendetect.schema_tools.draft import (
    CATEGORY_WORDS,
    ENTITY_WORDS,
    ID_ENDINGS,
    OUTCOME_WORDS,
    FieldDraft,
    SchemaDraft,
    tokens,
)
from gendetect.schema_tools.starter import starter_aggregates, starter_derived

# Levels listed as `categories:` up to this many; more are learned in training
# (a listed level set refuses any new value, which suits a channel, not an
# e-mail domain).
MAX_LISTED_LEVELS = 20
# An entity (an aggregate key) has at least this many distinct values.
ENTITY_MIN_DISTINCT = 20
# Text without a telling name is an entity above this share of distinct values.
ENTITY_TEXT_SHARE = 0.2

@dataclass(frozen=True)
class _Stats:
    n: int
    missing: int
    distinct: int
    is_bool: bool
    is_numeric: bool
    whole: bool  # numbers that are all whole (integer columns, or floats read with gaps)
    is_datetime: bool
    values: pd.Series  # the non-missing values


def _stats(col: pd.Series) -> _Stats:
    values = col.dropna()
    is_bool = pd.api.types.is_bool_dtype(col)
    is_numeric = pd.api.types.is_numeric_dtype(col) and not is_bool
    whole = False
    if is_numeric:
        arr = values.to_numpy(dtype=np.float64)
        whole = bool(np.isfinite(arr).all() and (arr == np.round(arr)).all())
    return _Stats(n=len(col), missing=int(col.isna().sum()), distinct=int(values.nunique()),
                  is_bool=is_bool, is_numeric=is_numeric, whole=whole,
                  is_datetime=pd.api.types.is_datetime64_any_dtype(col), values=values)


def _parses_as_times(values: pd.Series) -> bool:
    if len(values) == 0 or pd.api.types.is_numeric_dtype(values):
        return False
    text = values.astype(str)
    sample = text.head(1000)
    # Dates have separators; "20240101" or "1700000000" are numbers, not guessed.
    if not sample.str.contains(r"\d[-/:]\d|\d-\d\d", regex=True).all():
        return False
    try:
        pd.to_datetime(text, utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _is_binary(s: _Stats) -> bool:
    if s.is_bool:
        return True
    if not s.is_numeric or not s.whole or s.distinct == 0:
        return False
    return bool(np.isin(s.values.to_numpy(dtype=np.float64), (0.0, 1.0, -1.0)).all()
                and s.values.max() == 1)


def _label_rank(name: str) -> int | None:
    words = set(tokens(name))
    if "fraud" in words:
        return 0
    if words & {"label", "target", "chargeback", "cbk"}:
        return 1
    if name.lower().startswith("is_") or words & {"flag", "anomaly", "class"}:
        return 2
    return None


def _generous(value: float) -> int:
    """A bound ten times beyond the observed extreme, rounded up to a power of
    ten (1834.2 -> 100000): values a little outside today's range are not
    refused, absurd ones are."""
    return int(10 ** math.ceil(math.log10(abs(value) * 10)))


def _number(x: float, whole: bool) -> float | int:
    return int(x) if whole or float(x).is_integer() else float(x)


def _level_text(values: pd.Series, whole: bool) -> pd.Series:
    # Whole floats (an integer code column with gaps) as "7", not "7.0".
    if whole:
        return values.astype(np.int64).astype(str)
    return values.astype(str)


def _categorical(name: str, s: _Stats, why: str) -> FieldDraft:
    draft = FieldDraft(name, "categorical")
    levels = _level_text(s.values, s.whole)
    if s.distinct <= MAX_LISTED_LEVELS:
        draft.attrs["categories"] = sorted(levels.unique().tolist())
        draft.notes.append(f"{why}; {s.distinct} levels listed: any other value is refused")
    else:
        top = levels.value_counts().index[:3].tolist()
        draft.notes.append(f"{why}; {s.distinct} levels (most frequent: {', '.join(top)}): "
                           "learned from the training data, no list (max_levels and "
                           "min_level_count tune how)")
    return draft


def _numeric(name: str, s: _Stats) -> FieldDraft:
    draft = FieldDraft(name, "numeric")
    if len(s.values):
        lo, hi = float(s.values.min()), float(s.values.max())
        draft.attrs["min"] = -_generous(lo) if lo < 0 else 0
        draft.attrs["max"] = _generous(hi) if hi > 0 else 0
        draft.notes.append(f"observed {_number(lo, s.whole)} .. {_number(hi, s.whole)}; values "
                           "outside min..max are refused")
        draft.check = True
    if s.whole and s.distinct <= 10:
        draft.notes.append(f"only {s.distinct} distinct whole values: a code? then "
                           "kind: categorical")
        draft.check = True
    return draft


def _looks_like_entity(s: _Stats, words: set[str], last: str) -> bool:
    if s.distinct < ENTITY_MIN_DISTINCT or s.is_bool:
        return False
    if s.is_numeric:
        return s.whole and last in ID_ENDINGS
    return bool(words & ENTITY_WORDS) or s.distinct > ENTITY_TEXT_SHARE * max(len(s.values), 1)


def infer_field(name: str, col: pd.Series, *, label: str | None, id_column: str | None
                ) -> FieldDraft:
    s = _stats(col)
    words = set(tokens(name))
    last = tokens(name)[-1] if tokens(name) else ""
    if not len(s.values):
        # Nothing to learn from: kept (the column is in the file) but not an input.
        draft = FieldDraft(name, "numeric" if s.is_numeric else "categorical",
                           {"nullable": True, "feature": False},
                           ["every value is missing: not a model input"], check=True)
        return draft
    if s.is_datetime or (not s.is_numeric and not s.is_bool and _parses_as_times(s.values)):
        draft = FieldDraft(name, "timestamp")
        times = pd.to_datetime(s.values, utc=True, format="ISO8601")
        draft.notes.append(f"times from {times.min().isoformat()} to {times.max().isoformat()}"
                           " (naive times are read as UTC)")
    elif name == label:
        draft = FieldDraft(name, "label", {"required": False})
        rate = float((s.values == 1).mean()) if len(s.values) else 0.0
        draft.notes.append(f"the label: 1 = fraud ({rate:.2%} of known rows), 0 = genuine, "
                           "missing or -1 = unknown; optional (labels arrive late)")
        draft.check = True
    elif _is_binary(s):
        draft = FieldDraft(name, "boolean")
        draft.notes.append("0/1 values")
    elif name == id_column:
        draft = FieldDraft(name, "id")
        draft.notes.append("unique integers: one id, one transaction (a repeated id is refused)")
    elif last in CATEGORY_WORDS:
        draft = _categorical(name, s, "named like a code or category")
    elif _looks_like_entity(s, words, last):
        draft = FieldDraft(name, "entity", {"pii": True})
        draft.repeated = s.distinct < len(s.values)
        if draft.repeated:
            draft.notes.append(f"{s.distinct} distinct values, repeated: an identifier "
                               "(aggregate key); pii: stored and logged only as keyed hashes")
        else:
            draft.notes.append("each value once in this file: an identifier, but no use as an "
                               "aggregate key")
            draft.check = True
    elif not s.is_numeric and not s.is_bool:
        draft = _categorical(name, s, "text")
    else:
        draft = _numeric(name, s)
    if draft.kind in ("entity", "categorical") and "categories" not in draft.attrs:
        _length_limit(draft, s)
    if s.missing and draft.kind != "label":
        draft.attrs["nullable"] = True
        draft.notes.append(f"{s.missing / max(s.n, 1):.1%} missing: nullable (a gap is neither "
                           "normal nor fraud)")
    if draft.kind not in ("label", "id", "timestamp") and words & OUTCOME_WORDS:
        draft.notes.append("named like the outcome: if it is known only after the fact, "
                           "set feature: false (it would leak the answer)")
        draft.check = True
    return draft


def _length_limit(draft: FieldDraft, s: _Stats) -> None:
    """Free text is refused beyond max_length (64 by default): leave room
    above the longest value seen, in powers of two."""
    if s.is_numeric or s.is_bool:
        return
    longest = int(s.values.astype(str).str.len().max())
    if longest > DEFAULT_MAX_LENGTH // 2:
        limit = min(4096, max(DEFAULT_MAX_LENGTH, 2 ** math.ceil(math.log2(longest * 2))))
        draft.attrs["max_length"] = limit
        draft.notes.append(f"values up to {longest} characters: longer ones are refused "
                           f"beyond max_length {limit}")


def _choose_label(df: pd.DataFrame) -> str | None:
    ranked = []
    for i, name in enumerate(df.columns):
        rank = _label_rank(str(name))
        if rank is not None and _is_binary(_stats(df[name])):
            ranked.append((rank, i, str(name)))
    return min(ranked)[2] if ranked else None


def _choose_id(df: pd.DataFrame, label: str | None) -> str | None:
    candidates = []
    for i, name in enumerate(df.columns):
        col = df[name]
        if name == label or not pd.api.types.is_integer_dtype(col) or col.isna().any():
            continue
        if pd.api.types.is_bool_dtype(col) or not col.is_unique or len(col) < 2:
            continue
        if col.min() < 0:  # ids are refused below 0
            continue
        words = set(tokens(str(name)))
        rank = 0 if words & {"transaction", "tx", "txn", "trx"} else 1 if "id" in words else 2
        candidates.append((rank, i, str(name)))
    return min(candidates)[2] if candidates else None


def schema_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_")
    return name or "my_table"


def infer_schema(df: pd.DataFrame, *, name: str, source: str) -> SchemaDraft:
    """A draft schema for `df` (read by gendetect.data.io.read_table)."""
    label = _choose_label(df)
    id_column = _choose_id(df, label)
    fields = [infer_field(str(c), df[c], label=label, id_column=id_column) for c in df.columns]
    notes = []
    if label is None:
        notes.append("no 0/1 label column found (named like fraud, label, target, is_*): "
                     "the model learns unsupervised")
    if id_column is None:
        notes.append("no column of unique integers: no transaction id (decisions and verdicts "
                     "are keyed by one; the API needs it)")
    aggregates, agg_notes = starter_aggregates(fields)
    derived = starter_derived(fields, {f.name for f in fields})
    return SchemaDraft(name=name, source=source, n_rows=len(df), fields=fields, derived=derived,
                       aggregates=aggregates, notes=notes + agg_notes)
