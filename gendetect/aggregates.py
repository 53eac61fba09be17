"""Declared behaviour features: the schema's `aggregates:` block.

A fraud table's strongest signals are aggregates of a key's recent events:
velocity per card over minutes, distinct cards per device in an hour, the
amount against the card's own mean, a merchant this card never used. The
schema declares them; one engine computes them offline, in both online
stores and in Spark (gendetect.features.aggregate_engine and the state
stores), with the semantics below. This module is the declaration only:
parsing, validation against the schema, feature names and horizons.

YAML (one group per key; every group lists its windows and aggregates)::

    aggregates:
      - key: customer_id                 # an entity column, or a list: [card_id, merchant_id]
        windows: [1d, 7d, 30d]           # s, m, h or d
        features:
          - {kind: count, name: "customer_nb_tx_{window}"}
          - {kind: mean, of: amount, name: "customer_avg_amount_{window}"}
      - key: terminal_id
        windows: [1d, 7d, 30d]
        delay: 7d                        # windows end `delay` before the event
        features:
          - {kind: count, name: "terminal_nb_tx_{window}"}
          - {kind: label_rate, name: "terminal_risk_{window}"}
      - key: device_id
        windows: [1h]
        features: [{kind: distinct, of: card_id}]
      - key: card_id
        features: [since_previous]       # a bare kind is {kind: <kind>}

Semantics (normative: every engine and store implements exactly this).
Events are ordered by (time, transaction id). For an event e at time t and a
group with delay d, the window of width w holds the group's events with the
same key and
- d == 0: time in (t - w, t] and (time, id) <= (t, id of e): e itself and
  every earlier event (ties at t broken by id), as pandas' rolling('<w>')
  ending at the current row of the sorted frame;
- d > 0: time in (t - d - w, t - d] (labels arrive d late; e is not in it).
Aggregates per window:
- count: the number of events in the window.
- sum, mean, std, min, max (`of` a numeric column): over the window's events
  whose `of` is not missing; std is the population one (ddof 0); 0 when no
  such event.
- distinct (`of` any column): the number of distinct non-missing values of
  `of` among the window's events.
- label_rate: frauds / count over the window, 0 when empty; an event is a
  fraud when its label is 1 and (online) the label had arrived by t.
- zscore (`of` a numeric column): (x - m) / s, where x is e's value and m, s
  the mean and population std of `of` over the window's events *before* e
  (e excluded), s floored at max(0.01 * |m|, 1e-6) so that a key with a
  constant history gives a large but finite value, clipped to +-ZSCORE_CLIP;
  0 when x is missing or fewer than 2 such earlier events.
- first_seen: 1.0 when the window holds no event of the key before e
  (e excluded), else 0.0 ("a merchant this card never used" is first_seen
  over a pair key).
Per group, without a window:
- since_previous: seconds from the key's latest event before e (in (time, id)
  order, within the group's horizon) to e; the horizon in seconds when there
  is none.
An event whose key is missing (any part of a pair) is in no window of that
group and gets NaN for the group's features (a gap: gendetect treats it as a
missing value, neither normal nor fraud); an event with a key is in the
windows of later events of that key.

A group's horizon (how much history any of its features needs) is
delay + its longest window, or `horizon:` when it has no window
(since_previous only; default 30d).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from gendetect.errors import InputError
from gendetect.timestamps import NS_PER_SECOND

WINDOWED_KINDS = frozenset(
    {"count", "sum", "mean", "std", "min", "max", "distinct", "label_rate", "zscore", "first_seen"}
)
UNWINDOWED_KINDS = frozenset({"since_previous"})
KINDS = WINDOWED_KINDS | UNWINDOWED_KINDS
# Kinds that need `of`: a numeric column, or any column for distinct.
NUMERIC_OF = frozenset({"sum", "mean", "std", "min", "max", "zscore"})
NEEDS_OF = NUMERIC_OF | {"distinct"}
NEEDS_LABEL = frozenset({"label_rate"})
ZSCORE_CLIP = 1000.0
DEFAULT_HORIZON = "30d"

_UNIT_NS = {"s": NS_PER_SECOND, "m": 60 * NS_PER_SECOND, "h": 3600 * NS_PER_SECOND,
            "d": 86400 * NS_PER_SECOND}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_GROUP_KEYS = frozenset({"key", "windows", "features", "delay", "name", "reason", "horizon"})
_FEATURE_KEYS = frozenset({"kind", "of", "name"})


def parse_duration(value: Any, where: str) -> int:
    """'15m', '1h', '7d', '30s' as int nanoseconds (> 0)."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise InputError(f"expected a duration such as 15m, 1h or 7d, got {value!r}", field=where)
    ns = round(float(match.group(1)) * _UNIT_NS[match.group(2)])
    if ns <= 0:
        raise InputError(f"a duration must be positive, got {value!r}", field=where)
    return ns


def format_duration(ns: int) -> str:
    """The shortest exact spelling: 86400 s -> '1d', 5400 s -> '90m'."""
    for unit in ("d", "h", "m", "s"):
        if ns % _UNIT_NS[unit] == 0:
            return f"{ns // _UNIT_NS[unit]}{unit}"
    return f"{ns / NS_PER_SECOND:g}s".replace(".", "p")


@dataclass(frozen=True)
class AggregateFeature:
    """One output column: a kind over one window (None for since_previous)."""

    name: str
    kind: str
    of: str | None
    window_ns: int | None


@dataclass(frozen=True)
class AggregateGroup:
    key: tuple[str, ...]
    windows_ns: tuple[int, ...]
    features: tuple[AggregateFeature, ...]
    delay_ns: int = 0
    name: str = ""
    reason: str = ""
    horizon_ns: int = 0

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Numeric columns the group's features read (sum, mean, ...)."""
        return tuple(dict.fromkeys(f.of for f in self.features if f.kind in NUMERIC_OF and f.of))

    @property
    def distinct_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.of for f in self.features if f.kind == "distinct" and f.of))

    @property
    def needs_label(self) -> bool:
        return any(f.kind in NEEDS_LABEL for f in self.features)


@dataclass(frozen=True)
class AggregateDeclaration:
    groups: tuple[AggregateGroup, ...]

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n for g in self.groups for n in g.feature_names)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for g in self.groups for c in g.key))

    @property
    def needs_label(self) -> bool:
        return any(g.needs_label for g in self.groups)

    @property
    def horizon_ns(self) -> int:
        return max((g.horizon_ns for g in self.groups), default=0)

    def reason_groups(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Default explanation reasons: one per group (its `reason`, else its
        name), for features the schema's `reasons:` do not claim."""
        merged: dict[str, list[str]] = {}
        for g in self.groups:
            merged.setdefault(g.reason, []).extend(g.feature_names)
        return tuple((r, tuple(names)) for r, names in merged.items())

    @classmethod
    def from_list(
        cls,
        raw: Any,
        *,
        entity_columns: Sequence[str],
        numeric_columns: Sequence[str],
        all_columns: Sequence[str],
        has_label: bool,
    ) -> AggregateDeclaration:
        """Parse and check the `aggregates:` list against the schema's columns.
        Errors are InputError naming the offending key (`aggregates[2].key`)."""
        if not isinstance(raw, list) or not raw:
            raise InputError("expected a non-empty list of groups", field="aggregates")
        groups = [
            _parse_group(item, f"aggregates[{i}]", entity_columns, numeric_columns, all_columns,
                         has_label)
            for i, item in enumerate(raw)
        ]
        names = [n for g in groups for n in g.feature_names]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise InputError(f"feature name {n!r} declared twice", field="aggregates")
            seen.add(n)
        return cls(groups=tuple(groups))

    @classmethod
    def from_schema(
        cls, raw: Mapping[str, Any], kinds: Mapping[str, str]
    ) -> AggregateDeclaration | None:
        """A schema's `aggregates:` (None when absent), checked against its
        fields (name -> kind): it needs a timestamp field and replaces the
        legacy `windows:`."""
        if raw.get("aggregates") is None:
            return None
        if raw.get("windows"):
            raise InputError("declare behaviour features in `aggregates:` or `windows:`, "
                             "not both", field="windows")
        if "timestamp" not in kinds.values():
            raise InputError("behaviour features need a timestamp field", field="aggregates")
        return cls.from_list(
            raw["aggregates"],
            entity_columns=[n for n, k in kinds.items() if k == "entity"],
            numeric_columns=[n for n, k in kinds.items() if k in ("numeric", "boolean")],
            all_columns=list(kinds),
            has_label="label" in kinds.values(),
        )

    def to_list(self) -> list[dict[str, Any]]:
        out = []
        for g in self.groups:
            item: dict[str, Any] = {"key": g.key[0] if len(g.key) == 1 else list(g.key)}
            if g.windows_ns:
                item["windows"] = [format_duration(w) for w in g.windows_ns]
            if g.delay_ns:
                item["delay"] = format_duration(g.delay_ns)
            if not g.windows_ns:
                item["horizon"] = format_duration(g.horizon_ns)
            item["name"] = g.name
            if g.reason != g.name:
                item["reason"] = g.reason
            feats: dict[tuple[str, str | None], dict[str, Any]] = {}
            for f in g.features:
                entry = feats.setdefault((f.kind, f.of), {"kind": f.kind})
                if f.of:
                    entry["of"] = f.of
                entry.setdefault("_names", []).append(f.name)
            item["features"] = []
            for (kind, of), entry in feats.items():
                names = entry.pop("_names")
                default = [_default_name(g.name, kind, of, w) for w in _windows_for(kind, g)]
                if names != default:
                    entry["name"] = _template_of(names, g, kind)
                item["features"].append(entry)
            out.append(item)
        return out


def _windows_for(kind: str, group: AggregateGroup) -> tuple[int | None, ...]:
    return (None,) if kind in UNWINDOWED_KINDS else group.windows_ns


def _default_name(prefix: str, kind: str, of: str | None, window: int | None) -> str:
    parts = [prefix, kind] + ([of] if of else []) + ([format_duration(window)] if window else [])
    return "_".join(parts)


def _template_of(names: list[str], group: AggregateGroup, kind: str) -> str:
    # Names were built from a template with {window}: recover it from the first.
    windows = _windows_for(kind, group)
    first = names[0]
    if windows[0] is None:
        return first
    return first.replace(format_duration(windows[0]), "{window}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_group(
    raw: Any,
    where: str,
    entity_columns: Sequence[str],
    numeric_columns: Sequence[str],
    all_columns: Sequence[str],
    has_label: bool,
) -> AggregateGroup:
    if not isinstance(raw, Mapping):
        raise InputError("expected a mapping with key, windows and features", field=where)
    unknown = sorted(set(raw) - _GROUP_KEYS)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r}; known: {sorted(_GROUP_KEYS)}",
                         field=f"{where}.{unknown[0]}")
    if "key" not in raw:
        raise InputError("missing", field=f"{where}.key")
    key = tuple(str(k) for k in _as_list(raw["key"]))
    if not key or len(set(key)) != len(key):
        raise InputError("expected one entity column or a list of distinct ones",
                         field=f"{where}.key")
    for k in key:
        if k not in entity_columns:
            raise InputError(f"{k!r} is not an entity column of the schema "
                             f"(entity columns: {list(entity_columns)})", field=f"{where}.key")
    windows = tuple(parse_duration(w, f"{where}.windows") for w in _as_list(raw.get("windows", [])))
    if len(set(windows)) != len(windows):
        raise InputError("duplicate windows", field=f"{where}.windows")
    delay = parse_duration(raw["delay"], f"{where}.delay") if raw.get("delay") else 0
    name = str(raw.get("name") or "_".join(key))
    reason = str(raw.get("reason") or name)
    items = raw.get("features")
    if not isinstance(items, list) or not items:
        raise InputError("expected a non-empty list of features", field=f"{where}.features")
    features: list[AggregateFeature] = []
    for j, item in enumerate(items):
        fwhere = f"{where}.features[{j}]"
        spec = {"kind": item} if isinstance(item, str) else item
        if not isinstance(spec, Mapping):
            raise InputError("expected a kind or a mapping with kind, of, name", field=fwhere)
        bad = sorted(set(spec) - _FEATURE_KEYS)
        if bad:
            raise InputError(f"unknown key {bad[0]!r}; known: {sorted(_FEATURE_KEYS)}",
                             field=f"{fwhere}.{bad[0]}")
        kind = str(spec.get("kind"))
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}; known: {sorted(KINDS)}",
                             field=f"{fwhere}.kind")
        of = spec.get("of")
        if kind in NEEDS_OF:
            if of is None:
                raise InputError(f"{kind} needs 'of' (a column)", field=f"{fwhere}.of")
            of = str(of)
            allowed = numeric_columns if kind in NUMERIC_OF else all_columns
            if of not in allowed:
                what = "a numeric column" if kind in NUMERIC_OF else "a column"
                raise InputError(f"{of!r} is not {what} of the schema", field=f"{fwhere}.of")
        elif of is not None:
            raise InputError(f"{kind} takes no 'of'", field=f"{fwhere}.of")
        if kind in NEEDS_LABEL and not has_label:
            raise InputError(f"{kind} needs a label field in the schema", field=f"{fwhere}.kind")
        if kind in WINDOWED_KINDS and not windows:
            raise InputError(f"{kind} needs windows", field=f"{where}.windows")
        template = spec.get("name")
        for w in ((None,) if kind in UNWINDOWED_KINDS else windows):
            if template is None:
                fname = _default_name(name, kind, of, w)
            else:
                text = str(template)
                if w is not None and len(windows) > 1 and "{window}" not in text:
                    raise InputError("a name over several windows needs '{window}'",
                                     field=f"{fwhere}.name")
                fname = text.replace("{window}", format_duration(w) if w else "")
            features.append(AggregateFeature(fname, kind, of, w))
    if windows:
        horizon = delay + max(windows)
        if raw.get("horizon"):
            raise InputError("horizon is only for groups without windows", field=f"{where}.horizon")
    else:
        horizon = parse_duration(raw.get("horizon") or DEFAULT_HORIZON, f"{where}.horizon")
    return AggregateGroup(key=key, windows_ns=windows, features=tuple(features), delay_ns=delay,
                          name=name, reason=reason, horizon_ns=horizon)
