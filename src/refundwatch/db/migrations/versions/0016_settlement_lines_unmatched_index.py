"""settlement lines: an index of the lines not matched yet

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:40:00

Matching takes the unmatched lines in id order, a batch at a time. A partial index on ``id`` where
``match IS NULL`` holds only those lines, so taking a batch costs the same however many lines were
matched before (without it, each run starts by walking past every matched line).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_settlement_lines_unmatched",
        "settlement_lines",
        ["id"],
        unique=False,
        postgresql_where=sa.text("match IS NULL"),
        sqlite_where=sa.text("match IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_settlement_lines_unmatched", table_name="settlement_lines")
