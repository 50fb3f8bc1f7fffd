"""dashboard rollups (refund_stats, health_stats, rollup_outbox) and processor exchanges on the timeline

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:00:00

Existing refunds and health checks are folded into the new rollups here, so a database that already
holds history shows it on the dashboard from the first start.
"""

from __future__ import annotations

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BUCKETS = 16
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_GUID = advanced_alchemy.types.guid.GUID(length=16)
_TIME = advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollup_outbox",
        sa.Column("id", _ID, nullable=False),
        sa.Column("refund_id", _GUID, nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_outbox")),
    )
    histograms = [
        sa.Column(f"{kind}{i:02d}", sa.BigInteger(), nullable=False, server_default="0")
        for kind in ("a", "f")
        for i in range(BUCKETS)
    ]
    op.create_table(
        "refund_stats",
        sa.Column("id", _ID, nullable=False),
        sa.Column("res", sa.String(length=1), nullable=False),
        sa.Column("bucket", _TIME, nullable=False),
        sa.Column("connection_id", _GUID, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("processor_code", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("n", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("accept_ms_sum", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("final_ms_sum", sa.BigInteger(), nullable=False, server_default="0"),
        *histograms,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_stats")),
        sa.UniqueConstraint(
            "res",
            "bucket",
            "connection_id",
            "outcome",
            "error_code",
            "processor_code",
            name="uq_refund_stats_key",
        ),
    )
    op.create_table(
        "health_stats",
        sa.Column("id", _ID, nullable=False),
        sa.Column("res", sa.String(length=1), nullable=False),
        sa.Column("bucket", _TIME, nullable=False),
        sa.Column("connection_id", _GUID, nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ok_checks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("latency_ms_max", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_stats")),
        sa.UniqueConstraint("res", "bucket", "connection_id", name="uq_health_stats_key"),
    )
    with op.batch_alter_table("health_checks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_checks_failures",
            ["connection_id", "at"],
            unique=False,
            postgresql_where=sa.text("NOT ok"),
            sqlite_where=sa.text("NOT ok"),
        )
    with op.batch_alter_table("refund_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exchange", sa.Text(), nullable=True))
    _backfill()


def _backfill() -> None:
    """History from before the rollups: every counted transition goes through the outbox, which the
    worker folds in; health checks are folded here."""
    op.execute(
        """
        INSERT INTO rollup_outbox (refund_id, from_status, status, at)
        SELECT refund_id, from_status, status, at FROM refund_events
        WHERE from_status IS NOT NULL AND from_status <> status
          AND status IN ('processing', 'succeeded', 'failed', 'reversed')
        ORDER BY id
        """
    )
    from refundwatch.dashboard.rollups import backfill_health_sql

    for statement in backfill_health_sql(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("refund_events", schema=None) as batch_op:
        batch_op.drop_column("exchange")
    with op.batch_alter_table("health_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_health_checks_failures")
    op.drop_table("health_stats")
    op.drop_table("refund_stats")
    op.drop_table("rollup_outbox")
