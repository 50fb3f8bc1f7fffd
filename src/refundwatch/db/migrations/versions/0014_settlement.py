"""settlement files, lines and reconciliation breaks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:22:36

Processors' settlement reports, imported line by line (raw and normalised), and the breaks that
reconciliation opens where refundwatch and the records differ (issue 14).
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "settlement_files",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("connection_id", GUID(length=16), nullable=False),
        sa.Column("processor", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("imported_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=255), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_settlement_files_connection_id_connections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_files")),
        sa.UniqueConstraint("connection_id", "sha256", name="uq_settlement_files_content"),
    )
    op.create_table(
        "settlement_lines",
        sa.Column("id", BIGINT_ID, nullable=False),
        sa.Column("file_id", GUID(length=16), nullable=False),
        sa.Column("connection_id", GUID(length=16), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("line_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("settlement_currency", sa.String(length=3), nullable=True),
        sa.Column("gateway_refund_id", sa.String(length=255), nullable=True),
        sa.Column("gateway_payment_id", sa.String(length=255), nullable=True),
        sa.Column("merchant_reference", sa.String(length=255), nullable=True),
        sa.Column("payout_id", sa.String(length=255), nullable=True),
        sa.Column("occurred_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("source_timezone", sa.String(length=64), nullable=True),
        sa.Column("raw_type", sa.String(length=64), nullable=False),
        sa.Column("match", sa.String(length=32), nullable=True),
        sa.Column("refund_id", GUID(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_settlement_lines_connection_id_connections")
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["settlement_files.id"],
            name=op.f("fk_settlement_lines_file_id_settlement_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_settlement_lines_refund_id_refunds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_lines")),
        sa.UniqueConstraint("file_id", "row_number", name="uq_settlement_lines_row"),
    )
    op.create_index("ix_settlement_lines_key", "settlement_lines", ["connection_id", "line_key"])
    op.create_index("ix_settlement_lines_refund", "settlement_lines", ["connection_id", "gateway_refund_id"])
    op.create_table(
        "reconciliation_breaks",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("connection_id", GUID(length=16), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("refund_id", GUID(length=16), nullable=True),
        sa.Column("line_id", BIGINT_ID, nullable=True),
        sa.Column("gateway_refund_id", sa.String(length=255), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expected", sa.BigInteger(), nullable=True),
        sa.Column("actual", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("opened_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(length=255), nullable=True),
        sa.Column("resolved_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_reconciliation_breaks_connection_id_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["settlement_lines.id"],
            name=op.f("fk_reconciliation_breaks_line_id_settlement_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_reconciliation_breaks_refund_id_refunds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_breaks")),
        sa.UniqueConstraint("connection_id", "kind", "subject", name="uq_reconciliation_breaks_subject"),
    )
    op.create_index("ix_reconciliation_breaks_status", "reconciliation_breaks", ["status", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_breaks_status", table_name="reconciliation_breaks")
    op.drop_table("reconciliation_breaks")
    op.drop_index("ix_settlement_lines_refund", table_name="settlement_lines")
    op.drop_index("ix_settlement_lines_key", table_name="settlement_lines")
    op.drop_table("settlement_lines")
    op.drop_table("settlement_files")
