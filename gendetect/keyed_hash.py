"""Identifiers and records as digests: the one way they are hashed.

Customer and terminal ids never reach memory, disk, Redis or the database as
they are: the online state, its journal and the decision audit all store
HMAC-SHA256(key, canonical id)[:16] in hex, so that a store's keys and an
audit row's `entities` name the same customer. The canonical form makes 42,
np.int64(42), 42.0 and "42" one customer. Records get a keyed digest of
their canonical content (`RecordFingerprint`) to tell a retried request from
a conflicting one, computed once per request and stored by the online state
and the audit alike. Keyed everywhere: an unkeyed digest of a record kept
next to its time and amount gives its ids back to a brute-force search over
the few unknown fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from gendetect.errors import InputError
from gendetect.timestamps import to_ns

if TYPE_CHECKING:
    from gendetect.schema import Schema

# Without a configured secret ids are still not stored as they are, but
# anyone can recompute these digests: pass a secret (the API does).
UNKEYED = b"gendetect-unkeyed-entity-digest"
_RECORD_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def entity_text(value: Any, field: str = "entity") -> str:
    """The canonical text of an entity id (what is hashed)."""
    if type(value) is int or type(value) is str:  # the common case first
        return str(value)
    if value is None or isinstance(value, bool):
        raise InputError("must be an id", field=field)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real) and float(value).is_integer():
        return str(int(value))
    return str(value)


class EntityHasher:
    """Keyed digests of entity ids (HMAC-SHA256, 128 bits in hex)."""

    def __init__(self, key: bytes | None = None) -> None:
        # HMAC's keyed inner and outer states, computed once; each digest
        # starts from a copy (the same digest as hmac.digest, faster).
        self._hmac = hmac.new(key if key is not None else UNKEYED, digestmod=hashlib.sha256)

    def digest(self, value: Any, field: str = "entity") -> str:
        mac = self._hmac.copy()
        mac.update(entity_text(value, field).encode())
        return mac.digest()[:16].hex()


def _record_default(value: Any) -> Any:
    # Types orjson does not serialise itself; deterministic for equal values,
    # nanoseconds included (orjson's own numpy support drops them).
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return f"{type(value).__name__}:{value}"


def _record_bytes(record: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=_record_default, option=_RECORD_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        # Values orjson refuses even through `default` (e.g. ints beyond 64
        # bits in a field nothing else uses): their repr, key-sorted.
        return repr(sorted((str(k), repr(v)) for k, v in record.items())).encode()


def record_digest(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """A digest of the whole record (keys sorted, values as given), 128 bits
    in hex: keyed (HMAC-SHA256) with `key`, else BLAKE2b."""
    blob = _record_bytes(record)
    if key is None:
        return hashlib.blake2b(blob, digest_size=16).hexdigest()
    return hmac.digest(key, blob, "sha256")[:16].hex()


class RecordFingerprint:
    """The keyed digest of a record's canonical content: one value per
    transaction, whatever spelling the client used. Entity ids by their
    canonical text (42 and "42" are one customer), times as UTC nanoseconds
    (`Z`, `+00:00`, another offset of the same instant, or no offset, which
    means UTC), numbers as floats (1250 and 1250.0); other fields as given.
    A retry in another spelling is the same transaction, not a conflict."""

    def __init__(self, key: bytes, *, entity_fields: tuple[str, ...] = (),
                 time_fields: tuple[str, ...] = (), numeric_fields: tuple[str, ...] = ()) -> None:
        self.key = key
        self._entities = entity_fields
        self._times = time_fields
        self._numbers = numeric_fields

    @classmethod
    def for_schema(cls, schema: Schema, key: bytes) -> RecordFingerprint:
        fields = schema.input_fields
        return cls(key,
                   entity_fields=tuple(f.name for f in fields if f.kind == "entity"),
                   time_fields=tuple(f.name for f in fields if f.kind == "timestamp"),
                   numeric_fields=tuple(f.name for f in fields if f.kind == "numeric"))

    def canonical(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(record)
        for name in self._entities:
            value = out.get(name)
            if value is not None:
                out[name] = entity_text(value, name)
        for name in self._times:
            value = out.get(name)
            if value is not None:
                # A time nothing can read is refused by whoever reads it; the
                # digest takes it as given.
                with contextlib.suppress(ValueError, TypeError, OverflowError):
                    out[name] = to_ns(value)
        for name in self._numbers:
            value = out.get(name)
            if isinstance(value, Real) and not isinstance(value, bool):
                out[name] = float(value)
        return out

    def digest(self, record: Mapping[str, Any]) -> str:
        return record_digest(self.canonical(record), self.key)

    def digests(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        return [self.digest(r) for r in records]
