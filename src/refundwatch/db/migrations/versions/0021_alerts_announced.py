"""alerts: what the opening message said

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08 10:30:00

``alerts.summary`` follows the condition while the alert is live (a gateway down, then degraded: one
alert per connection), so the recovery message named a condition nobody was ever told about.
``announced`` keeps the summary the opening message carried; the messages are written from it.
Alerts opened before this revision have none: their messages fall back to ``summary``, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild on SQLite).
    op.add_column("alerts", sa.Column("announced", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("announced")
