"""Errors that reach users: each names what was wrong and where."""

from __future__ import annotations


class GendetectError(Exception):
    """Base class for errors gendetect reports to users without a traceback."""


class InputError(GendetectError, ValueError):
    """Bad input data: names the field (column) and, for files, the source.

    The API turns it into HTTP 422 with `field`; the CLI prints
    `<source>: column '<field>': <message>`.
    """

    def __init__(
        self, message: str, *, field: str | None = None, source: str | None = None
    ) -> None:
        self.message = message
        self.field = field
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source))
        if self.field:
            where.append(f"column '{self.field}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class CliError(GendetectError):
    """A user-facing command-line error: printed without a traceback, exit 2."""


class ModelNotReadyError(GendetectError):
    """No model could be loaded from the configured registry."""


class UnavailableError(GendetectError):
    """A backing service did not answer in time, or failed: nothing was
    changed, and the same request may be sent again. The API answers 503;
    each subclass names which service (its own error code)."""


class StateUnavailableError(UnavailableError):
    """The online feature state (Redis, or the memory store's journal) did
    not answer within its timeout or could not be written.

    The API answers 503 with code `state_unavailable`; nothing was recorded."""


class StoreUnavailableError(UnavailableError):
    """The database (the audit, reviews, verdicts) did not answer in time, or
    failed: nothing was stored. The API answers 503 (`audit_unavailable`
    when scoring)."""


class DuplicateTransactionError(GendetectError):
    """A transaction id that is already recorded, sent again with different
    content. The API answers 409 with code `duplicate_transaction`."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)
