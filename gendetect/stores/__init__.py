"""Stores: the decision audit and the analysts' verdicts, in a relational
database through SQLAlchemy 2 (SQLite by default, PostgreSQL in production;
the same code, the psycopg driver as the `postgres` extra).

- `tables`: the schema as SQLAlchemy models. It is created and upgraded only
  by the Alembic migrations shipped in `migrations/` (`gendetect db upgrade`,
  also run by the API at start when the database is empty), never by
  `create_all` outside tests.
- `database`: one engine per URL, with bounded waits (connect, lock, pool)
  and pre-ping, so that a database that went away and came back is used
  again without a restart.
- `audit`: the decision audit, written by one group-commit thread: rows of
  concurrent requests are inserted in one transaction and each request waits
  for its commit, so that a 2xx means the decision is on disk (`records`:
  what a row holds; `bulk`: the driver-level insert; `retries`: retried and
  conflicting transaction ids).
- `verdicts`: analyst verdicts (append-only history, latest wins) and the
  review queue; `export`: verdicts as a labels file for training.
- `hash_key`: the check value of the hash key the rows were written with,
  compared when the API starts (a changed key is refused, never wiped).

Entity ids (the schema's `entity` fields) are written only as keyed hashes
(HMAC-SHA256 with `Settings.resolved_hash_key()`, the digest the online
state uses); no field the schema flags as `pii` is ever written.
"""
