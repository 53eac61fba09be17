"""The hash key's check value, and the error for a store written with
another key.

Every store that keeps keyed digests of customer and terminal ids (the
memory store's snapshot and journal, the Redis state, the audit database)
records the check value of the key it was written with, and compares it with
the key in use when it opens. Without it a changed key (GENDETECT_HASH_KEY
edited, or <home>/secrets/hash.key lost and a new random one made) silently
orphans every history: a customer with 20,000 events starts from zero, and
exact retries of acknowledged records get 409 because their stored
fingerprints no longer match.

The check value is HMAC-SHA256(key, a fixed label), 64 bits in hex: it says
whether two keys are the same and nothing else. It is never the key, and it
adds nothing to what an attacker could test guesses of the key against: every
stored entity digest is already an HMAC under the same key (and a random
generated key, 256 bits, is beyond guessing anyway).
"""

from __future__ import annotations

import hashlib
import hmac

from gendetect.errors import GendetectError

KEY_CHECK_LABEL = b"gendetect key check"
# The setting (gendetect.config.Settings.accept_new_hash_key) that lets a
# store written with another key start over; named in every error.
ACCEPT_SETTING = "GENDETECT_ACCEPT_NEW_HASH_KEY"


def key_check(key: bytes) -> str:
    """The check value of `key`: 16 hex characters."""
    return hmac.new(key, KEY_CHECK_LABEL, hashlib.sha256).digest()[:8].hex()


class HashKeyChangedError(GendetectError):
    """A store holds digests made with another hash key than the one in use.

    `where` names the store (a file, a Redis prefix, a database); `remedy`
    says what the accept setting would do to it; `key_source`, when the
    caller knows it, says where the key in use came from."""

    def __init__(self, where: str, remedy: str, key_source: str | None = None) -> None:
        self.where = where
        self.remedy = remedy
        self.key_source = key_source
        super().__init__(str(self))

    def __str__(self) -> str:
        source = f" (the key in use comes from {self.key_source})" if self.key_source else ""
        return (
            f"{self.where} was written with another hash key: the hash key changed{source}, "
            "and every stored customer and terminal digest would be orphaned. Restore the "
            f"old key (GENDETECT_HASH_KEY, or <home>/secrets/hash.key), or set "
            f"{ACCEPT_SETTING}=true to {self.remedy}"
        )

    def with_source(self, key_source: str) -> HashKeyChangedError:
        return HashKeyChangedError(self.where, self.remedy, key_source)
