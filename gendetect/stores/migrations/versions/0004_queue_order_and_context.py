"""The review queue riskiest first and by reason, and the record's context:
the top reasons' names (backfilled from the stored top reasons), a JSON
column for the record's non-personal fields and behaviour features (null for
decisions stored before: the record was not kept), and a partial index on
flagged decisions in risk order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("reason_names", sa.String(512), nullable=True))
        batch.add_column(sa.Column("context", sa.JSON(none_as_null=True), nullable=True))
    op.create_index("ix_decisions_flagged_risk", "decisions", ["risk", "decided_at", "id"],
                    postgresql_where=sa.text("is_fraud"), sqlite_where=sa.text("is_fraud"))
    _backfill_reason_names()


def _backfill_reason_names() -> None:
    """In Python, in batches by id: JSON functions differ between the two
    databases, and the names are the ones the writer makes
    (gendetect.stores.records.reason_names, repeated here: a migration must
    not change when that module does)."""
    conn = op.get_bind()
    table = sa.table("decisions", sa.column("id", sa.Uuid()),
                     sa.column("top_reasons", sa.JSON()),
                     sa.column("reason_names", sa.String(512)))
    update = (sa.update(table).where(table.c.id == sa.bindparam("row_id"))
              .values(reason_names=sa.bindparam("names")))
    last = None
    while True:
        query = sa.select(table.c.id, table.c.top_reasons).order_by(table.c.id).limit(_BATCH)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = conn.execute(query).all()
        if not rows:
            return
        changes = []
        for row_id, reasons in rows:
            if isinstance(reasons, str):  # a driver that hands JSON back as text
                reasons = json.loads(reasons)
            names = [str(r["reason"]) for r in reasons or () if r.get("reason")]
            if names:
                changes.append({"row_id": row_id, "names": "|" + "|".join(names) + "|"})
        if changes:
            conn.execute(update, changes)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_decisions_flagged_risk", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("context")
        batch.drop_column("reason_names")
