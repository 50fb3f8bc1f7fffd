"""refunds: earlier attempts, contradiction alerts, look-up-before-send

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 03:00:00

- ``refund_attempts`` keeps every earlier attempt's idempotency key and processor refund id, so a
  report about an earlier attempt is recognised and never applied to the current one.
- ``refunds.alert`` / ``alert_at``: a processor report that contradicted a released status (money
  moved where refundwatch thought it had not), shown on the dashboard until a person acts.
- ``refunds.lookup_before_send``: the last send's outcome is unknown; before any re-send the refund is
  looked up at the processor. ``key_sent_at``: when the current idempotency key first went out, to
  know when the processor has forgotten it.
"""

from __future__ import annotations

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


WHEN = advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)


def _payments(reserved_check: str, name: str) -> sa.Table:
    """The payments table as 0001 made it, for SQLite's table rebuild (reflection would lose the GUID
    types, the primary key's name and the foreign key); only the reservation CHECK differs."""
    guid = advanced_alchemy.types.guid.GUID(length=16)
    when = advanced_alchemy.types.datetime.DateTimeUTC(timezone=True)
    return sa.Table(
        "payments",
        sa.MetaData(),
        sa.Column("id", guid, nullable=False),
        sa.Column("connection_id", guid, nullable=False),
        sa.Column("payment_reference", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("captured_at", when, nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column("invoice_id", sa.String(length=255), nullable=True),
        sa.Column("reserved_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_ck_payments_amount_positive")),
        sa.CheckConstraint(reserved_check, name=op.f(name)),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_payments_connection_id_connections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("connection_id", "payment_reference", name="uq_payments_connection_reference"),
        sa.Index("ix_payments_invoice_id", "invoice_id"),
        sa.Index("ix_payments_order_id", "order_id"),
        sa.Index("ix_payments_payment_reference", "payment_reference"),
    )


OLD_CHECK = ("reserved_amount >= 0 AND reserved_amount <= amount", "ck_payments_ck_payments_reserved")
NEW_CHECK = ("reserved_amount >= 0", "ck_payments_ck_payments_reserved_nonnegative")


def _swap_check(old: tuple[str, str], new: tuple[str, str]) -> None:
    with op.batch_alter_table("payments", schema=None, copy_from=_payments(*old)) as batch_op:
        batch_op.drop_constraint(op.f(old[1]), type_="check")
        batch_op.create_check_constraint(op.f(new[1]), new[0])


def upgrade() -> None:
    # A processor's report that money moved after refundwatch released the amount is booked even when
    # it takes the payment past its captured amount; intake's guarded reservation still never does.
    _swap_check(OLD_CHECK, NEW_CHECK)
    # Plain ADD COLUMN (no table rebuild on SQLite): a big refunds table is not copied.
    op.add_column("refunds", sa.Column("alert", sa.Text(), nullable=True))
    op.add_column("refunds", sa.Column("alert_at", WHEN, nullable=True))
    op.add_column(
        "refunds", sa.Column("lookup_before_send", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("refunds", sa.Column("key_sent_at", WHEN, nullable=True))
    op.create_index("ix_refunds_alert_at", "refunds", ["alert_at"], unique=False)
    # Refunds sent before this revision: their key went out when they were first submitted.
    op.execute("UPDATE refunds SET key_sent_at = submitted_at WHERE submitted_at IS NOT NULL")
    op.create_table(
        "refund_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("refund_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("gateway_refund_id", sa.String(length=255), nullable=True),
        sa.Column("gateway_status", sa.String(length=64), nullable=True),
        sa.Column("ended_at", WHEN, nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["refund_id"],
            ["refunds.id"],
            name=op.f("fk_refund_attempts_refund_id_refunds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_attempts")),
        sa.UniqueConstraint("refund_id", "idempotency_key", name="uq_refund_attempts_key"),
    )
    with op.batch_alter_table("refund_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_refund_attempts_gateway_refund_id", ["gateway_refund_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("refund_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_refund_attempts_gateway_refund_id")
    op.drop_table("refund_attempts")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_refunds_alert_at")
        batch_op.drop_column("key_sent_at")
        batch_op.drop_column("lookup_before_send")
        batch_op.drop_column("alert_at")
        batch_op.drop_column("alert")
    _swap_check(NEW_CHECK, OLD_CHECK)
