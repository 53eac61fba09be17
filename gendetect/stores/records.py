"""What the audit writes for one decision, built from the validated record
and the decision the API returns, and the decision read back from a row.

Written: the transaction id, the record's event time, the request time, the
model, score, risk, flag, threshold, top features and reasons, the keyed
fingerprint of the record's canonical content (the identity the online
state keeps too), the key's name, the schema's entity ids
as keyed hashes (the online state's digest: HMAC-SHA256, 128 bits), the top
reasons' names (the queue's reason filter), and the context an analyst
reads: the record's non-personal fields (those an API client sends that are
neither ids, entities, timestamps nor flagged `pii` or `protected`) and the
behaviour (window) features the model was given. Not written: any other
record field; in particular nothing the schema flags `pii` or `protected`
(an entity id only as its hash).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gendetect.keyed_hash import EntityHasher, RecordFingerprint
from gendetect.schema import FieldSpec, Schema

# Kinds whose values an analyst may read as they are (ids, entities and the
# timestamp are kept in their own columns; labels arrive separately).
_CONTEXT_KINDS = ("numeric", "boolean", "categorical")


def utc_naive(value: datetime) -> datetime:
    """Times are stored in UTC without a zone (naive values are UTC)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class AuditRow:
    transaction_id: int | None
    decision: dict[str, Any]  # as returned to the client
    fingerprint: str
    entities: dict[str, str]  # field -> keyed hash
    event_time: datetime | None
    decided_at: datetime
    key_name: str | None
    request_id: str | None = None
    context: dict[str, Any] | None = None

    def values(self, decision_id: uuid.UUID) -> dict[str, Any]:
        d = self.decision
        model = d["model"]
        return {
            "id": decision_id,
            "transaction_id": self.transaction_id,
            "decided_at": self.decided_at,
            "event_time": self.event_time,
            "model_name": model["name"],
            "model_version": model["version"],
            "score": d["score"],
            "risk": d["risk"],
            "is_fraud": d["is_fraud"],
            "threshold": d["threshold"],
            "top_features": d["top_features"],
            "top_reasons": d["top_reasons"],
            "entities": self.entities,
            "fingerprint": self.fingerprint,
            "key_name": self.key_name,
            "request_id": self.request_id,
            "reason_names": reason_names(d["top_reasons"]),
            "context": self.context,
        }


def reason_names(top_reasons: Sequence[Mapping[str, Any]]) -> str | None:
    """The reasons' names as "|a|b|" (None without any): a reason matches
    with LIKE '%|a|%' on both databases. Names are the schema's reason
    names; the read side refuses a name holding the separator."""
    names = [str(r["reason"]) for r in top_reasons if r.get("reason")]
    return "|" + "|".join(names) + "|" if names else None


def context_fields(schema: Schema) -> list[str]:
    """The record fields an analyst may read in the audit: what an API client
    sends (not the file-only ones), minus ids, entities, timestamps, labels
    and anything flagged personal or protected."""
    return [f.name for f in schema.request_fields if _shown(f)]


def _shown(f: FieldSpec) -> bool:
    return f.kind in _CONTEXT_KINDS and not f.pii and not f.protected


def _plain(value: Any) -> float | str | bool | None:
    # Only JSON scalars, and no NaN/inf (JSON has none; a gap reads as null).
    if value is None or isinstance(value, (bool, str)):
        return value
    number = float(value)
    return number if math.isfinite(number) else None


class RowBuilder:
    """Audit rows for one schema and hash key."""

    def __init__(self, schema: Schema, hash_key: bytes) -> None:
        self.key = hash_key
        self._entities = EntityHasher(hash_key)
        self.fingerprint = RecordFingerprint.for_schema(schema, hash_key)
        fields = schema.fields
        self.id_field = next((f.name for f in fields if f.kind == "id" and not f.pii), None)
        self.time_field = next(
            (f.name for f in fields if f.kind == "timestamp" and not f.pii), None
        )
        self.entity_fields = [f.name for f in fields if f.kind == "entity"]
        self.context_fields = context_fields(schema)

    def context(self, record: Mapping[str, Any],
                behaviour: Mapping[str, float] | None) -> dict[str, Any]:
        return {
            "record": {f: _plain(record.get(f)) for f in self.context_fields if f in record},
            "behaviour": ({name: _plain(v) for name, v in behaviour.items()}
                          if behaviour is not None else {}),
        }

    def rows(self, records: Sequence[Mapping[str, Any]], decisions: Sequence[dict[str, Any]],
             decided_at: datetime, key_name: str | None,
             fingerprints: Sequence[str] | None = None,
             request_id: str | None = None,
             behaviour: Sequence[Mapping[str, float]] | None = None) -> list[AuditRow]:
        """One row per decision; `fingerprints` if the caller has the
        records' identities already (the API computes them once per request),
        else computed here the same way; `behaviour`: each record's window
        features, as the model got them (None: the model reads none)."""
        at = utc_naive(decided_at)
        if fingerprints is None:
            fingerprints = self.fingerprint.digests(records)
        features = behaviour if behaviour is not None else [None] * len(records)
        out = []
        for record, decision, fingerprint, windows in zip(records, decisions, fingerprints,
                                                         features, strict=True):
            when = record.get(self.time_field) if self.time_field else None
            tid = record.get(self.id_field) if self.id_field else None
            out.append(AuditRow(
                transaction_id=int(tid) if tid is not None else None,
                decision=decision,
                fingerprint=fingerprint,
                entities={f: self._entities.digest(record[f], f) for f in self.entity_fields
                          if record.get(f) is not None},
                event_time=utc_naive(when) if isinstance(when, datetime) else None,
                decided_at=at,
                key_name=key_name,
                request_id=request_id,
                context=self.context(record, windows),
            ))
        return out


def decision_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The decision as the API returned it, from a `decisions` row."""
    return {
        "score": row["score"],
        "risk": row["risk"],
        "is_fraud": bool(row["is_fraud"]),
        "threshold": row["threshold"],
        "top_features": row["top_features"],
        "top_reasons": row["top_reasons"],
        "model": {"name": row["model_name"], "version": row["model_version"]},
        "transaction_id": row["transaction_id"],
    }
