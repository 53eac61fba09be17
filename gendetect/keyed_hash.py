"""Identifiers and records as digests: the one way they are hashed.

Customer and terminal ids never reach memory, disk, Redis or the database as
they are: the online state, its journal and the decision audit all store
HMAC-SHA256(key, canonical id)[:16] in hex, so that a store's keys and an
audit row's `entities` name the same customer. The canonical form makes 42,
np.int64(42), 42.0 and "42" one customer. Records get a digest of their
whole content (keys sorted) to tell a retried request from a conflicting
one: unkeyed in the online state (it lives next to the data it describes),
keyed in the audit, where it must not become a way to test guesses of the
personal fields it covers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import orjson
import pandas as pd

from gendetect.errors import InputError

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
