"""A declaration (gendetect.features.aggregates) as the state stores answer it.

The stores keep one history per *entity*: the distinct key column tuples of
the declaration's groups (two groups over `customer_id` with other windows
share the customer's history, which holds what the longer of them needs).
An entity's horizon is the longest of its groups'; it keeps the numeric
columns (`of` of sum, mean, std, min, max, zscore) and the `distinct`
columns its groups read. A group's features are answered from its entity's
history; the plan lays out where each feature goes in the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gendetect.aggregates import (
    NUMERIC_OF,
    AggregateDeclaration,
    AggregateGroup,
)


@dataclass(frozen=True)
class EntityPlan:
    columns: tuple[str, ...]  # the key columns (one, or a pair...)
    horizon_ns: int  # the longest horizon of its groups
    value_columns: tuple[str, ...]  # numeric columns its groups read
    distinct_columns: tuple[str, ...]
    needs_label: bool = False  # whether a group of it reads labels

    @property
    def name(self) -> str:
        """The entity's name in store keys: its key columns joined by '+'
        (column names, never values)."""
        return "+".join(self.columns)


@dataclass(frozen=True)
class FeaturePlan:
    kind: str
    window: int  # index into the group's windows; -1 for since_previous
    of: str | None
    slot: int  # its index in the answer


@dataclass(frozen=True)
class GroupPlan:
    entity: int  # index into AggregatePlan.entities
    windows_ns: tuple[int, ...]
    delay_ns: int
    horizon_ns: int
    features: tuple[FeaturePlan, ...]

    @cached_property
    def ops(self) -> GroupOps:
        return GroupOps.of(self.features)


@dataclass(frozen=True)
class GroupOps:
    """A group's features sorted by what answering them needs, so that a
    request dispatches on kinds once per group, not once per feature, and
    sum, mean and std of one column over one window share one read of the
    prefix sums. Slots and window indices as in FeaturePlan."""

    count: tuple[tuple[int, int], ...]  # (slot, window)
    first_seen: tuple[tuple[int, int], ...]
    label_rate: tuple[tuple[int, int], ...]
    since_previous: tuple[int, ...]  # slots
    # (window, column, whether std needs the squares, ((slot, kind), ...))
    moments: tuple[tuple[int, str, bool, tuple[tuple[int, str], ...]], ...]
    zscore: tuple[tuple[int, int, str], ...]  # (slot, window, column)
    walks: tuple[FeaturePlan, ...]  # min, max, distinct: O(window)

    @classmethod
    def of(cls, features: tuple[FeaturePlan, ...]) -> GroupOps:
        def pairs(kind: str) -> tuple[tuple[int, int], ...]:
            return tuple((f.slot, f.window) for f in features if f.kind == kind)

        moments: dict[tuple[int, str], list[tuple[int, str]]] = {}
        for f in features:
            if f.kind in ("sum", "mean", "std") and f.of is not None:
                moments.setdefault((f.window, f.of), []).append((f.slot, f.kind))
        return cls(
            count=pairs("count"),
            first_seen=pairs("first_seen"),
            label_rate=pairs("label_rate"),
            since_previous=tuple(f.slot for f in features if f.kind == "since_previous"),
            moments=tuple((w, of, any(k == "std" for _, k in items), tuple(items))
                          for (w, of), items in moments.items()),
            zscore=tuple((f.slot, f.window, f.of) for f in features
                         if f.kind == "zscore" and f.of is not None),
            walks=tuple(f for f in features if f.kind in ("min", "max", "distinct")),
        )


@dataclass(frozen=True)
class AggregatePlan:
    declaration: AggregateDeclaration
    entities: tuple[EntityPlan, ...]
    groups: tuple[GroupPlan, ...]
    value_columns: tuple[str, ...]  # what TxEvent.values holds, in order
    distinct_columns: tuple[str, ...]  # what TxEvent.distinct holds

    @classmethod
    def of(cls, declaration: AggregateDeclaration) -> AggregatePlan:
        keys = list(dict.fromkeys(g.key for g in declaration.groups))
        entities = tuple(_entity(k, [g for g in declaration.groups if g.key == k]) for k in keys)
        groups: list[GroupPlan] = []
        slot = 0
        for g in declaration.groups:
            features = []
            for f in g.features:
                window = -1 if f.window_ns is None else g.windows_ns.index(f.window_ns)
                features.append(FeaturePlan(f.kind, window, f.of, slot))
                slot += 1
            groups.append(GroupPlan(keys.index(g.key), g.windows_ns, g.delay_ns, g.horizon_ns,
                                    tuple(features)))
        return cls(
            declaration=declaration,
            entities=entities,
            groups=tuple(groups),
            value_columns=tuple(dict.fromkeys(c for e in entities for c in e.value_columns)),
            distinct_columns=tuple(dict.fromkeys(c for e in entities for c in e.distinct_columns)),
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.declaration.feature_names

    @cached_property
    def horizons(self) -> tuple[int, ...]:
        return tuple(e.horizon_ns for e in self.entities)

    @cached_property
    def entity_values(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        """Per entity: (column, index into TxEvent.values) of what it keeps."""
        index = {c: i for i, c in enumerate(self.value_columns)}
        return tuple(tuple((c, index[c]) for c in e.value_columns) for e in self.entities)

    @cached_property
    def entity_distinct(self) -> tuple[tuple[tuple[str, int], ...], ...]:
        index = {c: i for i, c in enumerate(self.distinct_columns)}
        return tuple(tuple((c, index[c]) for c in e.distinct_columns) for e in self.entities)


def _entity(key: tuple[str, ...], groups: list[AggregateGroup]) -> EntityPlan:
    values = dict.fromkeys(f.of for g in groups for f in g.features
                           if f.kind in NUMERIC_OF and f.of)
    distinct = dict.fromkeys(f.of for g in groups for f in g.features
                             if f.kind == "distinct" and f.of)
    return EntityPlan(
        columns=key,
        horizon_ns=max(g.horizon_ns for g in groups),
        value_columns=tuple(v for v in values if v is not None),
        distinct_columns=tuple(d for d in distinct if d is not None),
        needs_label=any(g.needs_label for g in groups),
    )
