"""A naive model of what an online store holds for a declaration, answered
by the offline engine (gendetect.features.aggregate_engine.group_features),
for the stores' parity tests (test_state_aggregates).

Per key (the raw values of a group's key columns) a plain dict of the events
held: an event is kept by each of its keys' histories that can still hold it
(time after that key's newest time minus its entity's horizon, the longest
of the groups over those columns) and pruned by that key's own newest time;
the id index holds an id while some history does. Each request is answered
by one offline computation per group over the events its key holds (plus
itself when not held), with each label counted only if it had arrived
(`labelled_at <= t`, the engine's label_known_ns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gendetect.aggregates import AggregateDeclaration
from gendetect.features.aggregate_engine import code_values, group_features

Key = tuple[tuple[str, ...], tuple[Any, ...]]  # (key columns, their values)


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass
class Reference:
    declaration: AggregateDeclaration
    id_col: str = "transaction_id"
    time_col: str = "timestamp"
    held: dict[Key, dict[tuple[int, int], dict[str, Any]]] = field(default_factory=dict)
    index: dict[int, tuple[list[Key], dict[str, Any]]] = field(default_factory=dict)
    labels: dict[int, tuple[bool, int]] = field(default_factory=dict)

    def horizon(self, columns: tuple[str, ...]) -> int:
        return max(g.horizon_ns for g in self.declaration.groups if g.key == columns)

    def keys_of(self, rec: dict[str, Any]) -> list[Key]:
        out = []
        for columns in dict.fromkeys(g.key for g in self.declaration.groups):
            values = tuple(rec.get(c) for c in columns)
            if not any(missing(v) for v in values):
                out.append((columns, tuple(str(v) for v in values)))
        return out

    def record(self, rec: dict[str, Any], *, store: bool = True) -> list[float] | None:
        """Expected features (declaration order), None for a conflict."""
        tid, t = rec[self.id_col], rec[self.time_col]
        if store and tid in self.index:
            if self.index[tid][1] != rec:
                return None
        elif store:
            holders = []
            for key in self.keys_of(rec):
                events = self.held.setdefault(key, {})
                horizon = self.horizon(key[0])
                newest = max((k[0] for k in events), default=None)
                if newest is None or t > newest - horizon:
                    events[(t, tid)] = rec
                    holders.append(key)
                    cut = max(t, newest if newest is not None else t) - horizon
                    for k in [k for k in events if k[0] <= cut]:
                        del events[k]
                        self._release(k[1], key)
            if holders:
                self.index[tid] = (holders, rec)
        return self.features(rec)

    def _release(self, tid: int, key: Key) -> None:
        holders = self.index[tid][0]
        holders.remove(key)
        if not holders:
            del self.index[tid]
            self.labels.pop(tid, None)

    def label(self, tid: int, is_fraud: bool, at: int) -> bool:
        if tid not in self.index:
            return False
        self.labels[tid] = (is_fraud, at)
        return True

    def features(self, rec: dict[str, Any]) -> list[float]:
        tid, t = rec[self.id_col], rec[self.time_col]
        out: dict[str, float] = {}
        keys = dict(self.keys_of(rec))
        for group in self.declaration.groups:
            if group.key not in keys:
                out |= {name: math.nan for name in group.feature_names}
                continue
            events = dict(self.held.get((group.key, keys[group.key]), {}))
            known = [self.labels.get(r[self.id_col]) for r in events.values()]
            if (t, tid) not in events:  # not held: the request itself, unlabelled
                events[(t, tid)] = rec  # (a label is a held transaction's)
                known.append(None)
            rows = list(events.values())
            values = {c: np.array([math.nan if missing(r.get(c)) else float(r[c]) for r in rows])
                      for c in group.value_columns}
            distinct = {c: code_values(np.array([None if missing(r.get(c)) else str(r[c])
                                                 for r in rows], dtype=object))
                        for c in group.distinct_columns}
            got = group_features(
                group,
                np.zeros(len(rows), dtype=np.int64),
                np.array([r[self.time_col] for r in rows], dtype=np.int64),
                np.array([r[self.id_col] for r in rows], dtype=np.int64),
                values, distinct,
                label=np.array([1.0 if k is not None and k[0] else 0.0 for k in known]),
                label_known_ns=np.array([k[1] if k is not None else 2**62 for k in known],
                                        dtype=np.int64),
                queries=np.array([list(events).index((t, tid))]),
            )
            out |= {name: float(col[0]) for name, col in got.items()}
        return [out[name] for name in self.declaration.feature_names]
