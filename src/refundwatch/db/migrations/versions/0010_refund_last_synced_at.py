"""refunds.last_synced_at: status syncs take turns, oldest first

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-06 02:20:00

A sync that learns nothing new does not touch the refund, so ordering the due syncs by ``updated_at``
polled the same oldest batch forever and starved the rest. Each sync claim now stamps
``last_synced_at``, and the due query orders by ``coalesce(last_synced_at, updated_at)``; the partial
expression index serves exactly that query on both databases (only ``processing`` refunds are synced).
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

DUE = "coalesce(last_synced_at, updated_at)"
PROCESSING = "status = 'processing'"


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_synced_at", DateTimeUTC(timezone=True), nullable=True))
    op.create_index(
        "ix_refunds_sync_due",
        "refunds",
        [sa.text(DUE)],
        postgresql_where=sa.text(PROCESSING),
        sqlite_where=sa.text(PROCESSING),
    )


def downgrade() -> None:
    op.drop_index("ix_refunds_sync_due", table_name="refunds")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("last_synced_at")
