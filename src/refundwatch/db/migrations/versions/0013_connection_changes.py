"""connection credential changes that wait for a second admin

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 06:30:00

A change to a connection's credentials, asked for in the admin screens, is kept (encrypted) as
``pending`` until another admin approves or rejects it.
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connection_changes",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("connection_id", GUID(length=16), nullable=False),
        sa.Column("fields", sa.String(length=500), nullable=False),
        sa.Column("values_encrypted", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_by_name", sa.String(length=255), nullable=False),
        sa.Column("requested_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("decided_by_name", sa.String(length=255), nullable=True),
        sa.Column("decided_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_connection_changes_connection_id_connections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_changes")),
    )
    op.create_index(
        op.f("ix_connection_changes_connection_id"), "connection_changes", ["connection_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_connection_changes_connection_id"), table_name="connection_changes")
    op.drop_table("connection_changes")
