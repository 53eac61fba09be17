"""The static features of a record: its feature fields and the derived
features (schema `derived:`), functions of the record alone, as opposed to
the behaviour (window) features over its history.

Numeric and boolean fields are one column each, followed by a gap
indicator when nullable (gendetect.features.missing); categorical fields
are encoded by gendetect.features.categorical, whose learned levels are
this part's fitted state (`fit`, `state`), stored with the model.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gendetect.features.categorical import CategoricalEncoder
from gendetect.features.derived import DERIVED_FUNCTIONS, TWO_COLUMN_FUNCTIONS
from gendetect.features.missing import absent_column, float_column, indicator_name
from gendetect.schema import Schema


class StaticFeatures:
    def __init__(self, schema: Schema, state: Mapping[str, Any] | None = None) -> None:
        self.schema = schema
        # Categorical features: declared ones now, learned ones from `state`
        # (a saved model) or `fit` (training data).
        learned = (state or {}).get("categorical", {})
        self._encoders: dict[str, CategoricalEncoder | None] = {}
        for f in schema.feature_fields:
            if f.kind == "categorical":
                encoder = CategoricalEncoder.from_spec(f)
                if encoder is None and f.name in learned:
                    encoder = CategoricalEncoder.from_dict(f, learned[f.name])
                self._encoders[f.name] = encoder
        self.nullable = frozenset(f.name for f in schema.fields if f.nullable)
        self._unseen_lock = threading.Lock()
        self._unseen: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Picklable (scikit-learn clones and pickles estimators): the lock is
        # recreated, the counts travel.
        return {k: v for k, v in vars(self).items() if k != "_unseen_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._unseen_lock = threading.Lock()

    # ----------------------------------------------------------------- fitting
    @property
    def is_fitted(self) -> bool:
        """True when every categorical feature has its levels."""
        return all(e is not None for e in self._encoders.values())

    def fit(self, df: pd.DataFrame) -> None:
        """Learn the levels of categorical features without declared
        categories from the training rows."""
        for f in self.schema.feature_fields:
            if f.kind == "categorical" and f.categories is None:
                values = df[f.name].to_numpy() if f.name in df.columns else absent_column(len(df))
                self._encoders[f.name] = CategoricalEncoder.learn(f, values)

    def state(self) -> dict[str, Any]:
        """What a saved model keeps of the fit: the learned levels (JSON)."""
        return {"categorical": {name: e.to_dict() for name, e in self._encoders.items()
                                if e is not None and not e.declared}}

    def encoder(self, name: str) -> CategoricalEncoder:
        found = self._encoders.get(name)
        if found is None:
            raise RuntimeError(
                f"categorical feature {name!r} has no levels yet: fit the pipeline on "
                "training data first")
        return found

    def unseen_levels(self) -> dict[str, int]:
        with self._unseen_lock:
            return dict(self._unseen)

    # ------------------------------------------------------------------ columns
    @property
    def names(self) -> list[str]:
        names: list[str] = []
        for f in self.schema.feature_fields:
            if f.kind == "categorical":
                names.extend(self.encoder(f.name).feature_names)
            else:
                names.append(f.name)
                if f.nullable:
                    names.append(indicator_name(f.name))
        names.extend(d.name for d in self.schema.derived)
        return names

    def parts(self, cols: Mapping[str, np.ndarray], count_unseen: bool) -> list[np.ndarray]:
        """The static columns (1-D arrays and 2-D blocks), in `names` order."""
        parts: list[np.ndarray] = []
        unseen: dict[str, int] = {}
        for f in self.schema.feature_fields:
            values = cols[f.name]
            if f.kind == "categorical":
                block, unseen[f.name] = self.encoder(f.name).transform(values)
                parts.append(block)
            elif f.nullable:
                value = float_column(values)
                parts.extend((value, np.isnan(value).astype(np.float64)))
            else:
                parts.append(values.astype(np.float64))
        for d in self.schema.derived:
            source = self._numeric(cols, d.source)
            if d.op in TWO_COLUMN_FUNCTIONS:
                parts.append(TWO_COLUMN_FUNCTIONS[d.op](source, self._numeric(cols, d.by or "")))
            else:
                parts.append(DERIVED_FUNCTIONS[d.op](source))
        if count_unseen and any(unseen.values()):
            with self._unseen_lock:
                for name, count in unseen.items():
                    if count:
                        self._unseen[name] = self._unseen.get(name, 0) + count
        return parts

    def _numeric(self, cols: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        # Gaps of nullable sources arrive as None from records: NaN here, so
        # that the derived feature is a gap too.
        values = cols[name]
        return float_column(values) if name in self.nullable else values
