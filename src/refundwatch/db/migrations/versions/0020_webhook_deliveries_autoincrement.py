"""webhook deliveries: ids never reused on SQLite (AUTOINCREMENT)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 10:00:00

A delivery's id is its ``webhook-id`` (``msg_{id}``) and, for a refund, the payload's ``sequence``.
On SQLite the table had a plain INTEGER primary key, which hands out ``max(id) + 1``: once the highest
deliveries were deleted (an endpoint deleted, the retention prune), their ids went out again, and a
receiver that deduplicates on ``webhook-id`` and drops what is older than its last ``sequence``
silently dropped the new events. The table is rebuilt with AUTOINCREMENT, keeping every row, index,
foreign key and attempt; from now on SQLite's ``sqlite_sequence`` remembers the highest id ever given.
It starts at the highest id there now: ids handed out to rows already deleted before this revision
cannot be known. PostgreSQL's identity sequence never reuses an id: nothing changes there.
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

WHEN = DateTimeUTC(timezone=True)
PENDING = sa.text("status = 'pending'")
KEPT = "_webhook_attempts_kept"


def _deliveries() -> sa.Table:
    """The table as 0017 and 0019 left it, for the rebuild (reflection would lose the GUID types)."""
    return sa.Table(
        "webhook_deliveries",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("endpoint_id", GUID(length=16), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("refund_id", GUID(length=16), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name="fk_webhook_deliveries_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            sqlite_where=PENDING,
        ),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        sa.Index("ix_webhook_deliveries_refund", "refund_id", "endpoint_id", "id"),
        sa.Index(
            "ix_webhook_deliveries_pending_refund", "refund_id", "endpoint_id", "id", sqlite_where=PENDING
        ),
    )


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The rebuild drops the old table, and with foreign keys on (as refundwatch's connections have
    # them, and PRAGMA foreign_keys cannot change inside the migration's transaction) that deletes
    # every attempt by cascade: they are kept aside and put back, under the same delivery ids.
    op.execute(f"CREATE TEMP TABLE {KEPT} AS SELECT * FROM webhook_attempts")
    with op.batch_alter_table(
        "webhook_deliveries",
        recreate="always",
        copy_from=_deliveries(),
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass
    op.execute(f"INSERT INTO webhook_attempts SELECT * FROM {KEPT}")
    op.execute(f"DROP TABLE {KEPT}")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
