"""The starter blocks of a drafted schema: behaviour aggregates for the
identifiers found, and derived features of the amount and the time.

They are a first declaration to edit, sized for card fraud: velocity per
key over an hour, a day and a week; the amount against the key's own mean;
the time since its previous event; distinct cards on a device-like key
(rings); and, with a label, a fraud rate per merchant-like key whose windows
end 7 days back (labels arrive late)."""

from __future__ import annotations

from typing import Any

from gendetect.schema_tools.draft import (
    AMOUNT_WORDS,
    CARD_WORDS,
    DEVICE_WORDS,
    MERCHANT_WORDS,
    FieldDraft,
    tokens,
)

STARTER_WINDOWS = ("1h", "1d", "7d")
RISK_WINDOWS = ("1d", "7d", "30d")
LABEL_DELAY = "7d"


def _pick(fields: list[FieldDraft], words: frozenset[str], kind: str) -> FieldDraft | None:
    return next((f for f in fields if f.kind == kind and set(tokens(f.name)) & words), None)


def starter_aggregates(fields: list[FieldDraft]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per repeated entity: count over 1h/1d/7d, mean and zscore of the
    amount-like column, since_previous (and distinct cards on a device-like
    key); label_rate with a 7-day delay on a merchant-like key."""
    notes: list[str] = []
    if not any(f.kind == "timestamp" for f in fields):
        return [], ["no timestamp column: no aggregates (they are windows in time)"]
    keys = [f for f in fields if f.kind == "entity" and f.repeated]
    if not keys:
        return [], ["no repeated identifier column: no aggregates"]
    numeric = [f for f in fields if f.kind == "numeric" and f.attrs.get("feature", True)]
    amount = (_pick(numeric, AMOUNT_WORDS, "numeric") or (numeric[0] if numeric else None))
    card = _pick(keys, CARD_WORDS, "entity")
    groups: list[dict[str, Any]] = []
    for key in keys:
        features: list[Any] = ["count"]
        if amount is not None:
            features += [{"kind": "mean", "of": amount.name}, {"kind": "zscore", "of": amount.name}]
        if card is not None and key is not card and set(tokens(key.name)) & DEVICE_WORDS:
            features.append({"kind": "distinct", "of": card.name})
        features.append("since_previous")
        groups.append({"key": key.name, "windows": list(STARTER_WINDOWS), "features": features})
    merchant = _pick(keys, MERCHANT_WORDS, "entity")
    if merchant is not None and any(f.kind == "label" for f in fields):
        groups.append({"key": merchant.name, "name": f"{merchant.name}_risk",
                       "windows": list(RISK_WINDOWS), "delay": LABEL_DELAY,
                       "features": ["label_rate"]})
    if amount is None:
        notes.append("no numeric column: the aggregates count events only")
    return groups, notes


def starter_derived(fields: list[FieldDraft], taken: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    amount = _pick(fields, AMOUNT_WORDS, "numeric")
    if amount is not None and amount.attrs.get("min", -1) >= 0:
        out.append({"name": f"log_{amount.name}", "op": "log1p", "source": amount.name})
    time = next((f for f in fields if f.kind == "timestamp"), None)
    if time is not None:
        for name, op in (("hour_sin", "hour_sin"), ("hour_cos", "hour_cos"),
                         ("is_night", "night")):
            out.append({"name": name, "op": op, "source": time.name})
    return [d for d in out if d["name"] not in taken]
