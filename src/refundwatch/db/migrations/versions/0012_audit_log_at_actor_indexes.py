"""audit_log: indexes on at and actor_id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:10:00

The audit screen filters by time range and by actor (and exports the same filters). Without these,
a range in the past or a rare actor reads the log newest first until it finds a page: the whole
table on a large log. Action and target id have had their indexes since 0001.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_actor_id", ["actor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_actor_id")
        batch_op.drop_index("ix_audit_log_at")
