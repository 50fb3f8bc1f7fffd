"""settlement lines: an index for the matched share

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 09:55:00

The dashboard's reconciliation panel and /metrics count refund lines by how matching left them, per
connection: a covering index on (kind, match, connection_id) answers that without reading the lines.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_settlement_lines_match", "settlement_lines", ["kind", "match", "connection_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_settlement_lines_match", table_name="settlement_lines")
