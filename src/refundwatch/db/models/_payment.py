from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class Payment(UUIDv7AuditBase):
    """An original captured transaction that refunds are checked against.

    ``reserved_amount`` is the sum of every refund that is not failed, canceled, rejected or reversed.
    It only changes through one guarded UPDATE, which is what makes over-refunding impossible even
    under concurrency (see payments.services.reserve).
    """

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("connection_id", "payment_reference", name="uq_payments_connection_reference"),
        # Intake's guarded reservation keeps reserved <= amount; only a processor's report that money
        # moved may push it past (refunds.states: money truth first), so the database allows that.
        CheckConstraint("reserved_amount >= 0", name="ck_payments_reserved_nonnegative"),
        CheckConstraint("amount > 0", name="ck_payments_amount_positive"),
    )

    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"))
    payment_reference: Mapped[str] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    captured_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    order_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    reserved_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
