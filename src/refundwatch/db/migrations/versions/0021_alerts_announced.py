"""alerts: what the opening message said

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08 10:30:00

``alerts.summary`` follows the condition while the alert is live (a gateway down, then degraded: one
alert per connection), so the recovery message named a condition nobody was ever told about.
``announced`` keeps the summary the opening message carried, and ``announced_severity`` its severity
(a retried opening message must not go out as a warning because the alert has fallen to one since);
the messages are written from them. Alerts opened before this revision have none: their messages
fall back to ``summary`` and ``severity``, as before.
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
    op.add_column("alerts", sa.Column("announced_severity", sa.String(16), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), not a batch rebuild: dropping the rebuilt table would delete
    # every alert delivery by its ON DELETE CASCADE (foreign keys are on).
    op.drop_column("alerts", "announced_severity")
    op.drop_column("alerts", "announced")
