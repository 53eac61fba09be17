"""API keys with scopes.

Keys come from the environment: `GENDETECT_API_KEYS`, named keys with their
scopes (JSON, see gendetect.config.Settings.api_keys), and, for
compatibility, `GENDETECT_API_KEY`, one key named `default` with every scope.
A route needs one scope (serving.api.deps.require_scope): `score` the
scoring routes, `feedback` verdicts and labels, `review` the alert queue and
decisions, `admin` the model reload; any valid key reads /v1/model (and
/metrics and the docs when those need a key). With no key configured the
service is open (every scope, said once at start).

The presented key is hashed (SHA-256) and compared with every configured
key's hash by hmac.compare_digest, all of them every time: neither the time
to answer nor the number of comparisons depends on how much of a key
matched or which key it was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from gendetect.config import ALL_SCOPES, Settings
from gendetect.errors import GendetectError

log = logging.getLogger("gendetect.serving")

DEFAULT_KEY_NAME = "default"


class ConfigurationError(GendetectError):
    """A setting that would leave the service in a half-open state."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (None when the service is open)."""

    name: str | None
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


OPEN = Principal(None, frozenset(ALL_SCOPES))


class KeyRing:
    def __init__(self, keys: dict[str, tuple[bytes, frozenset[str]]]) -> None:
        self._entries = [(hashlib.sha256(secret).digest(), Principal(name, scopes))
                         for name, (secret, scopes) in keys.items()]

    @property
    def is_open(self) -> bool:
        return not self._entries

    def identify(self, presented: str | None) -> Principal | None:
        """The key's principal, OPEN when no key is configured, None for a
        missing or wrong key."""
        if self.is_open:
            return OPEN
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys: dict[str, tuple[bytes, frozenset[str]]] = {}
        if settings.api_key is not None:
            key = settings.api_key.get_secret_value()
            if not key.strip():
                raise ConfigurationError(
                    "GENDETECT_API_KEY is set but empty: set a non-empty key, or unset the "
                    "variable to run without authentication"
                )
            if DEFAULT_KEY_NAME in settings.api_keys:
                raise ConfigurationError(
                    f"GENDETECT_API_KEYS names a key {DEFAULT_KEY_NAME!r}, the name of "
                    "GENDETECT_API_KEY: rename it or unset GENDETECT_API_KEY")
            keys[DEFAULT_KEY_NAME] = (key.encode(), frozenset(ALL_SCOPES))
        for name, spec in settings.api_keys.items():
            secret = spec.key.get_secret_value().encode()
            if any(hmac.compare_digest(secret, other) for other, _ in keys.values()):
                raise ConfigurationError(f"API key {name!r} is the same secret as another key")
            keys[name] = (secret, frozenset(spec.scopes))
        ring = cls(keys)
        if ring.is_open:
            log.warning("no API key configured (GENDETECT_API_KEY, GENDETECT_API_KEYS): the API "
                        "is open to anyone who can reach it, with every scope")
        else:
            log.info("API keys: %s", ", ".join(
                f"{name} ({'+'.join(sorted(scopes))})" for name, (_, scopes) in keys.items()))
        return ring
