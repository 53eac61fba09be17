"""API keys with scopes.

Keys come from the environment: `GENDETECT_API_KEYS`, named keys with their
scopes (JSON, see serving.settings.ServingSettings.api_keys), and, for
compatibility, `GENDETECT_API_KEY`, one key named `default` with every scope.
A route needs one scope (serving.api.deps.require_scope): `score` the
scoring routes, `feedback` verdicts and labels, `review` the alert queue and
decisions, `admin` the model reload; any valid key reads /v1/model (and
/metrics and the docs when those need a key).

Auth fails closed: with `GENDETECT_AUTH=required` (the default) and no key
configured the API refuses to start; it is open (every caller has every
scope) only with an explicit `GENDETECT_AUTH=disabled`, said at start. An
empty, null or malformed key setting, or a key that no client could
present, is refused when the settings are read (serving.settings).

The presented key is hashed (SHA-256) and compared with every configured
key's hash by hmac.compare_digest, all of them every time: neither the time
to answer nor the number of comparisons depends on how much of a key
matched or which key it was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from gendetect.config import misspelt_variables
from gendetect.errors import GendetectError
from serving.settings import ALL_SCOPES, ServingSettings, key_problem

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

# Settings whose near misses (GENDETECT_APIKEY) explain a missing key.
_AUTH_VARIABLES = ("GENDETECT_API_KEY", "GENDETECT_API_KEYS", "GENDETECT_AUTH")


class KeyRing:
    def __init__(self, keys: dict[str, tuple[bytes, frozenset[str]]], *,
                 open_access: bool = False) -> None:
        if open_access and keys:
            raise ValueError("an open key ring has no keys")
        self._open = open_access
        self._entries = [(hashlib.sha256(secret).digest(), Principal(name, scopes))
                         for name, (secret, scopes) in keys.items()]

    @property
    def is_open(self) -> bool:
        """Only when made open on purpose: a ring without keys lets nobody in."""
        return self._open

    def identify(self, presented: str | None) -> Principal | None:
        """The key's principal, OPEN when auth is disabled, None for a
        missing or wrong key."""
        if self._open:
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
    def from_settings(cls, settings: ServingSettings,
                      environ: Mapping[str, str] | None = None) -> KeyRing:
        keys: dict[str, tuple[bytes, frozenset[str]]] = {}
        if settings.api_key is not None:
            keys[DEFAULT_KEY_NAME] = (_secret("GENDETECT_API_KEY", settings.api_key),
                                      frozenset(ALL_SCOPES))
            if DEFAULT_KEY_NAME in settings.api_keys:
                raise ConfigurationError(
                    f"GENDETECT_API_KEYS names a key {DEFAULT_KEY_NAME!r}, the name of "
                    "GENDETECT_API_KEY: rename it or unset GENDETECT_API_KEY")
        for name, spec in settings.api_keys.items():
            secret = _secret(f"GENDETECT_API_KEYS key {name!r}", spec.key)
            if any(hmac.compare_digest(secret, other) for other, _ in keys.values()):
                raise ConfigurationError(f"API key {name!r} is the same secret as another key")
            keys[name] = (secret, frozenset(spec.scopes))
        if settings.auth == "disabled":
            if keys:
                # Which one was meant? Refused rather than guessed either way.
                raise ConfigurationError(
                    "GENDETECT_AUTH=disabled, but API keys are configured (" + ", ".join(keys)
                    + "): unset the keys to run open, or GENDETECT_AUTH to require them")
            log.warning("GENDETECT_AUTH=disabled: the API is open to anyone who can reach it, "
                        "with every scope (admin included); set GENDETECT_API_KEYS and unset "
                        "GENDETECT_AUTH for anything but a local run")
            return cls({}, open_access=True)
        if not keys:
            raise ConfigurationError(
                "no API key configured: set GENDETECT_API_KEYS (or GENDETECT_API_KEY), or "
                "GENDETECT_AUTH=disabled to run without authentication"
                + _near_misses(os.environ if environ is None else environ))
        log.info("API keys: %s", ", ".join(
            f"{name} ({'+'.join(sorted(scopes))})" for name, (_, scopes) in keys.items()))
        return cls(keys)


def _secret(what: str, value: SecretStr) -> bytes:
    # Settings validate keys when read; this check also covers settings
    # made without validation (model_copy), so such a key never loads.
    problem = key_problem(value.get_secret_value())
    if problem:
        raise ConfigurationError(f"{what}: {problem}")
    return value.get_secret_value().encode()


def _near_misses(environ: Mapping[str, str]) -> str:
    """The misspelt key variables that would explain why no key is set."""
    return "".join(f". {name} is not a setting: did you mean {close}?"
                   for name, close in misspelt_variables(environ) if close in _AUTH_VARIABLES)
