"""A schema draft: its fields (kind, keys, notes) and blocks, and the words
column names are read by (gendetect.schema_tools.infer, .starter)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

OUTCOME_WORDS = frozenset({"fraud", "label", "target", "chargeback", "cbk", "outcome", "scenario",
                           "anomaly"})
CATEGORY_WORDS = frozenset({"mcc", "code", "category", "cat", "type", "kind", "channel", "domain",
                            "country", "currency", "method", "mode", "status", "brand", "segment",
                            "region", "state", "city", "entry", "group", "band", "tier", "level"})
ENTITY_WORDS = frozenset({"id", "card", "pan", "device", "account", "acct", "user", "customer",
                          "client", "merchant", "terminal", "shop", "store", "seller", "email",
                          "mail", "ip", "phone", "iban", "wallet", "cookie", "session",
                          "fingerprint", "payee", "beneficiary", "addr", "address"})
# A number is an identifier only when its name ends like one (card_id,
# merchant, device_no), not when it merely mentions one (account_age_days).
ID_ENDINGS = ENTITY_WORDS | {"no", "nr", "num", "number", "key", "hash", "ref"}
AMOUNT_WORDS = frozenset({"amount", "amt", "value", "price", "total", "sum"})
CARD_WORDS = frozenset({"card", "pan", "account", "acct", "customer", "client", "user"})
MERCHANT_WORDS = frozenset({"merchant", "terminal", "shop", "store", "seller", "payee"})
DEVICE_WORDS = frozenset({"device", "ip", "fingerprint", "cookie", "email", "mail", "phone",
                          "session"})


def tokens(name: str) -> list[str]:
    """`cardID`, `card-id`, `card_id` -> ['card', 'id']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


@dataclass
class FieldDraft:
    name: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)  # in the order they are written
    notes: list[str] = field(default_factory=list)
    check: bool = False  # a guess the user should look at (marked CHECK)
    repeated: bool = True  # entity values occur more than once (an aggregate key)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **self.attrs}


@dataclass
class SchemaDraft:
    name: str
    source: str
    n_rows: int
    fields: list[FieldDraft]
    derived: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The schema the YAML says (comments aside)."""
        out: dict[str, Any] = {"name": self.name, "version": 1,
                               "fields": [f.as_dict() for f in self.fields]}
        if self.derived:
            out["derived"] = self.derived
        if self.aggregates:
            out["aggregates"] = self.aggregates
        return out
