"""How each model input reads to an analyst: the units an explanation shows
its observed and expected values in.

An explanation names a feature and, for a flagged record, the value it had
and the value the model expected (its reconstruction, mapped back through
the scaler: gendetect.detector.DetectorCore.expected). Most inputs are
shown as they are: a field's own value, a behaviour feature's aggregate, a
ratio. A few are not in units anyone reads:
- a `log1p` derived feature (log_amount) is shown in its source's units
  (expm1 of both values: the amount an analyst compares with the card's
  usual spend), and a `log_ratio` as the ratio it is the logarithm of;
- gap indicators (`<field> missing`) and the columns of categorical fields
  (one-hot levels, `<field>=<other>`, `<field> frequency`) have no
  expected value an analyst could act on: both values are null;
- a gap in the record (NaN) has no observed value, and nothing is expected
  of it: both null.

What the model expects of a value is asked with that value hidden from it
(and every column derived from the same field: gendetect.detector's
DetectorCore.expected says why). Expected values are kept within the range
the input can take (a field's schema bounds, [0, 1] for flags and rates,
[-1, 1] for the hour's sine and cosine, at least 0 for counts, a mean within
its column's bounds): a reconstruction is unbounded, an expected amount of
-3 is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gendetect.aggregates import ZSCORE_CLIP

if TYPE_CHECKING:
    from gendetect.features.pipeline import FeaturePipeline
    from gendetect.schema import FieldSpec

# How a column's values are shown (see the module docstring).
AS_IS, EXPM1, EXP, HIDDEN = 0, 1, 2, 3
_UNBOUNDED = (-np.inf, np.inf)
# Derived ops shown as they are, with the range of their values.
_DERIVED_BOUNDS = {"hour_sin": (-1.0, 1.0), "hour_cos": (-1.0, 1.0), "weekend": (0.0, 1.0),
                   "night": (0.0, 1.0), "ratio": (0.0, np.inf)}
# Behaviour features shown as they are, with the range of their values by
# aggregate kind (gendetect.aggregates).
_BEHAVIOUR_BOUNDS = {"count": (0.0, np.inf), "distinct": (0.0, np.inf), "std": (0.0, np.inf),
                     "since_previous": (0.0, np.inf), "label_rate": (0.0, 1.0),
                     "first_seen": (0.0, 1.0),
                     "zscore": (-ZSCORE_CLIP, ZSCORE_CLIP)}
# exp/expm1 beyond this overflow float64; no real input gets near it.
_MAX_EXPONENT = 700.0


@dataclass(frozen=True)
class FeatureUnits:
    """Per model input column: how it is shown (AS_IS, EXPM1, EXP, HIDDEN),
    the range of its shown values, and which columns are withheld from the
    model to ask what it expects of it (`group`: a row of `withheld`, -1
    for hidden columns)."""

    mode: np.ndarray  # (d,) int
    low: np.ndarray  # (d,) shown-unit lower bounds
    high: np.ndarray  # (d,) shown-unit upper bounds
    group: np.ndarray  # (d,) int: the column's row of `withheld`, -1 if hidden
    withheld: np.ndarray  # (n_groups, d) bool

    @classmethod
    def of(cls, pipeline: FeaturePipeline) -> FeatureUnits:
        """The units of `pipeline`'s columns, in `feature_names` order."""
        schema = pipeline.schema
        columns: list[tuple[int, tuple[float, float]]] = []
        for f in schema.feature_fields:
            if f.kind == "categorical":
                n = len(pipeline.encoder(f.name).feature_names)
                columns.extend([(HIDDEN, _UNBOUNDED)] * n)
                continue
            columns.append((AS_IS, _field_bounds(f)))
            if f.nullable:
                columns.append((HIDDEN, _UNBOUNDED))  # its gap indicator
        for d in schema.derived:
            if d.op == "log1p":
                in_schema = d.source in schema
                low, high = _field_bounds(schema[d.source]) if in_schema else _UNBOUNDED
                columns.append((EXPM1, (max(low, 0.0), high)))  # log1p clips at 0
            elif d.op == "log_ratio":
                columns.append((EXP, (0.0, np.inf)))
            else:
                columns.append((AS_IS, _DERIVED_BOUNDS.get(d.op, _UNBOUNDED)))
        columns.extend((AS_IS, b) for b in _behaviour_bounds(pipeline))
        if len(columns) != len(pipeline.feature_names):
            raise RuntimeError("feature units out of step with the pipeline's columns")
        mode = np.array([m for m, _ in columns], dtype=np.int8)
        group, withheld = _withheld_groups(pipeline, mode)
        return cls(
            mode=mode,
            low=np.array([b[0] for _, b in columns], dtype=np.float64),
            high=np.array([b[1] for _, b in columns], dtype=np.float64),
            group=group,
            withheld=withheld,
        )

    def present(
        self, observed: np.ndarray, expected: np.ndarray | None, columns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(value, expected) in shown units, NaN for null, of cells of model
        input columns `columns` (all three arrays of one shape): null for
        hidden columns, gaps (both), and every expected value when there is
        no reconstruction (`expected` None)."""
        mode = self.mode[columns]
        value = _shown(observed, mode)
        if expected is None:
            expectation = np.full(value.shape, np.nan)
        else:
            expectation = np.clip(_shown(expected, mode), self.low[columns], self.high[columns])
            expectation[np.isnan(value)] = np.nan
        hidden = mode == HIDDEN
        value[hidden] = np.nan
        expectation[hidden] = np.nan
        return value, expectation


def _shown(x: np.ndarray, mode: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float64)
    for kind, inverse in ((EXPM1, np.expm1), (EXP, np.exp)):
        cells = mode == kind
        if cells.any():
            out[cells] = inverse(np.minimum(out[cells], _MAX_EXPONENT))
    return out


def _withheld_groups(
    pipeline: FeaturePipeline, mode: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the columns that carry its value: the column itself and
    every derived column computed from the same field (amount, log_amount
    and the amount's ratios to the card's averages; the hour's sine and
    cosine, night and weekend from the timestamp). A derived column's are
    its source's. All of them are withheld together, else the model reads
    the value back from a sibling (one group per distinct set)."""
    names = pipeline.feature_names
    index = {name: j for j, name in enumerate(names)}
    derived = pipeline.schema.derived

    def carriers(name: str) -> set[int]:
        cols = {index[name]} if name in index else set()
        cols |= {index[d.name] for d in derived if name in (d.source, d.by)}
        return cols

    source = {d.name: d.source for d in derived}
    sets: list[frozenset[int]] = []
    group = np.full(len(names), -1, dtype=np.int64)
    for j, name in enumerate(names):
        if mode[j] == HIDDEN:
            continue
        cols = frozenset(carriers(source.get(name, name)) | {j})
        if cols not in sets:
            sets.append(cols)
        group[j] = sets.index(cols)
    withheld = np.zeros((len(sets), len(names)), dtype=bool)
    for g, cols in enumerate(sets):
        withheld[g, list(cols)] = True
    return group, withheld


def _behaviour_bounds(pipeline: FeaturePipeline) -> list[tuple[float, float]]:
    """The range of each behaviour feature's values, by its aggregate's kind."""
    names = pipeline.window_feature_names
    if not names or pipeline.behaviour is None:
        return []
    schema = pipeline.schema
    features = {f.name: f for g in pipeline.behaviour.declaration.groups for f in g.features}
    bounds = []
    for name in names:
        feature = features.get(name)
        kind = feature.kind if feature is not None else ""
        of = schema[feature.of] if feature is not None and feature.of in schema else None
        if kind in ("mean", "min", "max") and of is not None:
            bounds.append(_field_bounds(of))
        elif kind in _BEHAVIOUR_BOUNDS:
            bounds.append(_BEHAVIOUR_BOUNDS[kind])
        else:
            bounds.append(_UNBOUNDED)
    return bounds


def _field_bounds(f: FieldSpec) -> tuple[float, float]:
    if f.kind == "boolean":
        return 0.0, 1.0
    return (-np.inf if f.min is None else float(f.min),
            np.inf if f.max is None else float(f.max))
