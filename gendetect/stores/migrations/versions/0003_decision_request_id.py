"""The request id (X-Request-ID) of each decision: a decision found in the
audit leads to the request's log lines and trace, and back.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: decisions stored before, and those of jobs outside the API, have none.
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("request_id")
