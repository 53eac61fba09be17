"""`gendetect db ...` and `gendetect labels export` (declared in
gendetect.commands)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from gendetect.config import get_settings
from gendetect.errors import CliError


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from gendetect.stores.database import make_engine

    settings = get_settings()
    given = getattr(args, "database_url", None)
    url = given or settings.resolved_database_url
    where = "--database-url" if given else "GENDETECT_DATABASE_URL"
    try:
        return make_engine(url, timeout=settings.database_timeout_seconds)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        # The URL may carry a password: say what is wrong, never echo it.
        reason = ("no driver for its dialect" if isinstance(exc, NoSuchModuleError)
                  else "not a SQLAlchemy URL (dialect://user@host/database)")
        raise CliError(f"{where}: {reason}") from None


def db_main(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from gendetect.stores import migrate

    engine = _engine(args)
    try:
        if args.action == "upgrade":
            before = migrate.upgrade(engine)
            head = migrate.head_revision()
            print(f"database at revision {head}" + ("" if before == head else
                                                     f" (was {before or 'empty'})"))
        else:
            current = migrate.current_revision(engine)
            head = migrate.head_revision()
            state = "up to date" if current == head else f"this version uses {head}"
            print(f"{current or 'empty'} ({state})")
            return 0 if current == head else 1
    except SQLAlchemyError as exc:
        # The URL may carry a password: name the error, not the URL.
        raise CliError(f"database error: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    return 0


def labels_main(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from gendetect.data.io import prepare_output
    from gendetect.errors import InputError
    from gendetect.stores import migrate
    from gendetect.stores.export import export_labels

    since, until = _when(args.since, "--since"), _when(args.until, "--until")
    if since is not None and until is not None and until <= since:
        raise CliError("--until must be after --since")
    # Arguments first: a typo should not wait for (or depend on) the database.
    try:
        prepare_output(args.out)
    except InputError as exc:
        raise CliError(f"--out: {exc.message}") from None
    if not args.label_column.strip():
        raise CliError("--label-column: must not be empty")
    engine = _engine(args)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            raise CliError(f"the database is at schema revision {current or 'empty'}, this "
                           f"version uses {head}: run `gendetect db upgrade` first")
        n = export_labels(engine, args.out, since, until, label_column=args.label_column)
    except SQLAlchemyError as exc:
        raise CliError(f"database error: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        engine.dispose()
    print(f"{n} labels written to {args.out}", file=sys.stderr)
    return 0


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise CliError(f"{option}: not an ISO date or time: {value!r}") from None


def _first_line(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else ""
