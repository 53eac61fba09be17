"""Records as the state stores' events (gendetect.features.state.TxEvent):
the checks on a request's id, time and values, the keyed digests of its keys
and `distinct` values, and the handbook's `windows:` block as a declaration.

A key is hashed with the entity key (HMAC, gendetect.keyed_hash): one
column's key is the digest of its id (the same digest the decision audit
stores), a pair's the digest of its ids joined; the store key is the
entity's name (its columns) and that digest, so that a customer 7 and a
terminal 7 never share a history and no raw id is kept. A key that is
missing (absent, None, NaN; any part of a pair) is None: its groups' features
are NaN and the event is in none of their windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

from gendetect.errors import InputError
from gendetect.features.state import AMOUNT_LIMIT, INT64_MAX, INT64_MIN, AggregatePlan, TxEvent
from gendetect.keyed_hash import UNKEYED, EntityHasher, entity_text, record_digest
from gendetect.timestamps import to_ns

_NAN = float("nan")


def transaction_id(value: Any, field: str) -> int:
    # Integer ids double as the tie-break between same-time transactions.
    if type(value) is int:  # the common case, before the slower ABC checks
        tid = value
    elif isinstance(value, Integral) and not isinstance(value, bool):
        tid = int(value)
    elif isinstance(value, str) and (text := value.strip()).lstrip("-").isdecimal():
        # int() of a huge digit string is slow (and refused past 4,300 digits)
        tid = int(text) if len(text) <= 20 else INT64_MAX + 1
    else:
        raise InputError("must be an integer transaction id", field=field)
    if not INT64_MIN <= tid <= INT64_MAX:
        raise InputError("must be an integer transaction id within 64 bits", field=field)
    return tid


def time_ns(value: Any, field: str) -> int:
    try:
        ns = to_ns(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(str(exc), field=field) from exc
    if not INT64_MIN <= ns <= INT64_MAX:
        raise InputError("timestamp out of range", field=field)
    return ns


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class EventBuilder:
    """Turns request records into events of one plan."""

    def __init__(self, plan: AggregatePlan, entity_key: bytes | None, *, id_col: str,
                 time_col: str, required: Sequence[str] = ()) -> None:
        self.plan = plan
        self.id_col, self.time_col = id_col, time_col
        self.required = tuple(dict.fromkeys((id_col, time_col, *required)))
        self.hasher = EntityHasher(entity_key)
        self._record_key = entity_key if entity_key is not None else UNKEYED
        self._entities = tuple((e.columns, f"{e.name}:") for e in plan.entities)

    def key_digest(self, values: Sequence[Any], columns: Sequence[str]) -> str:
        if len(values) == 1:
            return self.hasher.digest(values[0], columns[0])
        # A pair: its ids' canonical texts joined by a separator no id text
        # carries in practice (the unit separator), hashed once.
        return self.hasher.digest(
            "\x1f".join(entity_text(v, c) for v, c in zip(values, columns, strict=True)))

    def event(self, record: Mapping[str, Any], fingerprint: str | None) -> TxEvent:
        for name in self.required:
            if name not in record or _missing(record[name]):
                raise InputError("required for behaviour features", field=name)
        keys: list[str | None] = []
        digest = self.hasher.digest
        for columns, prefix in self._entities:
            if len(columns) == 1:  # the common case, without the pair's lists
                v = record.get(columns[0])
                keys.append(None if _missing(v) else prefix + digest(v, columns[0]))
                continue
            parts = [record.get(c) for c in columns]
            if any(_missing(v) for v in parts):
                keys.append(None)
            else:
                keys.append(prefix + self.key_digest(parts, columns))
        values = tuple(self._value(record, c) for c in self.plan.value_columns)
        distinct = tuple(
            None if _missing(v := record.get(c)) else self.hasher.digest(v, c)
            for c in self.plan.distinct_columns
        )
        return TxEvent(
            transaction_id=transaction_id(record[self.id_col], self.id_col),
            time_ns=time_ns(record[self.time_col], self.time_col),
            keys=tuple(keys),
            values=values,
            distinct=distinct,
            # Keyed: an unkeyed digest next to the record's time and amount
            # gives its ids back to a brute-force search.
            fingerprint=(fingerprint if fingerprint is not None
                         else record_digest(record, self._record_key)),
        )

    def _value(self, record: Mapping[str, Any], name: str) -> float:
        raw = record.get(name)
        if type(raw) is float and abs(raw) <= AMOUNT_LIMIT:  # finite, in range
            return raw
        if raw is None:
            return _NAN
        try:
            value = float(raw)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InputError("must be a number", field=name) from exc
        if math.isnan(value):
            if name in self.required:
                raise InputError("must be finite", field=name)
            return _NAN
        if not math.isfinite(value):
            raise InputError("must be finite", field=name)
        if abs(value) > AMOUNT_LIMIT:
            raise InputError(f"must be at most {AMOUNT_LIMIT:g} in magnitude", field=name)
        return value
