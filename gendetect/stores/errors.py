"""The stores' user-facing errors."""

from __future__ import annotations

from gendetect.errors import GendetectError


class StoreUnavailableError(GendetectError):
    """The database did not answer in time, or failed: nothing was stored.
    The API answers 503 (`audit_unavailable` when scoring)."""


class SchemaVersionError(GendetectError):
    """The database's schema is not the one this version uses (it is older:
    run `gendetect db upgrade`; or newer: upgrade gendetect)."""
