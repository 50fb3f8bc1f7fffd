"""refunds: indexes on order_id and invoice_id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 11:30:00

The refunds list searches the payment, order and invoice reference with one box; without these the
order and invoice searches read the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index("ix_refunds_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_refunds_invoice_id", ["invoice_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_invoice_id")
        batch_op.drop_index("ix_refunds_order_id")
