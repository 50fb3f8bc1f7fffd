"""webhook deliveries: pending-only indexes for taking due deliveries in order

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 16:10:00

Taking due deliveries reads the pending ones of an endpoint by ``(next_attempt_at, id)`` and skips each
whose refund has an earlier delivery still pending. With ``id`` in the due index the order comes
straight from it (a backlog queued at one instant no longer sorts every pending row), and the earlier
pending delivery is one probe into a partial index of pending rows, instead of a walk past every
delivery the refund ever had.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_webhook_deliveries_pending_refund",
        "webhook_deliveries",
        ["refund_id", "endpoint_id", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_pending_refund", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
