"""Decision audit (with entity hashes) and analyst verdicts.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("event_time", sa.DateTime(), nullable=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("risk", sa.Double(), nullable=False),
        sa.Column("is_fraud", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("top_features", sa.JSON(), nullable=False),
        sa.Column("top_reasons", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.UniqueConstraint("transaction_id", name="uq_decisions_transaction_id"),
    )
    op.create_index("ix_decisions_decided_at_id", "decisions", ["decided_at", "id"])
    op.create_index("ix_decisions_flagged", "decisions", ["decided_at", "id"],
                    postgresql_where=sa.text("is_fraud"), sqlite_where=sa.text("is_fraud"))
    op.create_table(
        "verdicts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labelled_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("key_name", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.CheckConstraint("label IN ('fraud', 'genuine')", name="ck_verdicts_label"),
        sa.PrimaryKeyConstraint("id", name="pk_verdicts"),
    )
    op.create_index("ix_verdicts_transaction", "verdicts",
                    ["transaction_id", "labelled_at", "id"])
    op.create_index("ix_verdicts_labelled_at", "verdicts", ["labelled_at"])


def downgrade() -> None:
    op.drop_table("verdicts")
    op.drop_table("decisions")
