"""refund metadata encrypted at rest

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 03:10:00

Refund metadata (free text from returns systems and staff notes) may hold personal data: it moves to
``metadata_encrypted`` (``<key id>$<Fernet token>`` of the JSON), encrypted with the first key of
REFUNDWATCH_ENCRYPTION_KEYS, and the plaintext column is dropped.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from refundwatch.lib.crypto import FieldCipher

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _cipher() -> FieldCipher:
    from refundwatch.config import get_settings

    return FieldCipher(get_settings().encryption_key_list)


def upgrade() -> None:
    op.add_column("refunds", sa.Column("metadata_encrypted", sa.Text(), nullable=True))
    bind = op.get_bind()
    cipher = _cipher()
    refunds = sa.table(
        "refunds",
        sa.column("id"),
        sa.column("metadata", sa.JSON()),
        sa.column("metadata_encrypted", sa.Text()),
    )
    for row_id, metadata in bind.execute(sa.select(refunds.c.id, refunds.c.metadata)).all():
        value = metadata if isinstance(metadata, dict) else json.loads(metadata or "{}")
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        bind.execute(
            refunds.update().where(refunds.c.id == row_id).values(metadata_encrypted=cipher.encrypt(text))
        )
    # SQLite 3.35+ drops a plain column in place (a batch copy would cascade-delete the events).
    op.execute("ALTER TABLE refunds DROP COLUMN metadata")


def downgrade() -> None:
    raise NotImplementedError("refund metadata is not decrypted back into a plaintext column")
