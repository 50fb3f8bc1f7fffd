"""refund_stats: a covering index for the panels' window reads (PostgreSQL)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 06:40:00

The panels read refund_stats by resolution and bucket range. Minute rows are all recent, so PostgreSQL
overestimates such ranges and sometimes prefers a sequential scan; with the columns the panels need
included, an index-only scan wins every time. SQLite has no INCLUDE and plans these well already.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_refund_stats_window ON refund_stats (res, bucket) "
            "INCLUDE (connection_id, outcome, error_code, processor_code, n)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_refund_stats_window")
