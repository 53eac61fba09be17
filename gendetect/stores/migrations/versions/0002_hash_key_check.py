"""The hash key's check value (gendetect.key_check): one row, recorded by the
API when it first uses the database, compared at every start.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty after the upgrade: the API adopts the key in use for a database
    # written before check values existed (it cannot know an older one).
    op.create_table(
        "hash_key_check",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_check", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_hash_key_check_one_row"),
        sa.PrimaryKeyConstraint("id", name="pk_hash_key_check"),
    )


def downgrade() -> None:
    op.drop_table("hash_key_check")
