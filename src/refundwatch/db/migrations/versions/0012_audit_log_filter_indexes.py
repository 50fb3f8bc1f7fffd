"""audit_log: indexes for the audit screen's filters

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:10:00

The audit screen filters by action, actor and time range and pages by keyset (newest id first).
(action, id) and (actor_id, id) make a filtered page one index range, however common the action
or actor; (action, id) replaces the index on action alone. ``at`` gets an index for time ranges:
without it a range in the past reads the log newest first until it finds a page, the whole table
on a large log. The target id has had its index since 0001 (a target has few entries).
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action_id", ["action", "id"], unique=False)
        batch_op.create_index("ix_audit_log_actor_id_id", ["actor_id", "id"], unique=False)
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.drop_index("ix_audit_log_action")


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action", ["action"], unique=False)
        batch_op.drop_index("ix_audit_log_at")
        batch_op.drop_index("ix_audit_log_actor_id_id")
        batch_op.drop_index("ix_audit_log_action_id")
