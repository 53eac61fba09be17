"""The stores' own user-facing errors (their unavailability is
gendetect.errors.StoreUnavailableError, one family with the state's)."""

from __future__ import annotations

from gendetect.errors import GendetectError


class SchemaVersionError(GendetectError):
    """The database's schema is not the one this version uses (it is older:
    run `gendetect db upgrade`; or newer: upgrade gendetect)."""
