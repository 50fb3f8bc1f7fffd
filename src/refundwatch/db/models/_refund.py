from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from advanced_alchemy.base import BigIntBase, UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from refundwatch.db.types import EncryptedJSON


class Refund(UUIDv7AuditBase):
    __tablename__ = "refunds"
    __table_args__ = (
        # Stripe-style request idempotency, scoped to the client that sent the key.
        UniqueConstraint("client_scope", "idempotency_key", name="uq_refunds_client_idempotency"),
        Index("ix_refunds_status_updated", "status", "updated_at"),
        Index("ix_refunds_connection_created", "connection_id", "created_at"),
        Index("ix_refunds_created", "created_at"),
        # The refunds list's search box: payment (indexed below), order or invoice reference.
        Index("ix_refunds_order_id", "order_id"),
        Index("ix_refunds_invoice_id", "invoice_id"),
        Index("ix_refunds_alert_at", "alert_at"),
        # The status sync's turn order (refunds.syncing): only processing refunds are synced.
        Index(
            "ix_refunds_sync_due",
            text("coalesce(last_synced_at, updated_at)"),
            postgresql_where=text("status = 'processing'"),
            sqlite_where=text("status = 'processing'"),
        ),
    )

    payment_id: Mapped[UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"))
    payment_reference: Mapped[str] = mapped_column(String(255), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[str | None] = mapped_column(String(255), default=None)
    invoice_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # Free text from returns systems and staff (notes): personal data, encrypted at rest.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata_encrypted", EncryptedJSON, default=dict)
    status: Mapped[str] = mapped_column(String(32))
    # Written and committed before the first processor call; every retry reuses it.
    gateway_idempotency_key: Mapped[str] = mapped_column(String(255))
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    gateway_status: Mapped[str | None] = mapped_column(String(64), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(String(500), default=None)
    processor_code: Mapped[str | None] = mapped_column(String(128), default=None)
    # The client an Idempotency-Key belongs to: client:<API key name or OAuth client id>, user:<sub>.
    client_scope: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # When the current idempotency key first went out: past the processor's retention it is forgotten.
    key_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # The last send's outcome is unknown: look the refund up at the processor before any re-send.
    # Server-side default only: intake inserts through CTEs, where Python defaults are not bound.
    lookup_before_send: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # A processor report contradicted a released status (money moved): a person must look.
    alert: Mapped[str | None] = mapped_column(Text, default=None)
    alert_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    # When a status sync last took this refund (refunds.syncing), whether or not it learned anything.
    last_synced_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class RefundAttempt(BigIntBase):
    """An earlier attempt of a refund (one idempotency key), kept when a retry starts a new one, so a
    late report about it is recognised as such instead of moving the current attempt."""

    __tablename__ = "refund_attempts"
    __table_args__ = (
        UniqueConstraint("refund_id", "idempotency_key", name="uq_refund_attempts_key"),
        Index("ix_refund_attempts_gateway_refund_id", "gateway_refund_id"),
    )

    refund_id: Mapped[UUID] = mapped_column(ForeignKey("refunds.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255), default=None)
    gateway_status: Mapped[str | None] = mapped_column(String(64), default=None)
    ended_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    outcome: Mapped[str] = mapped_column(String(32))


class RefundEvent(BigIntBase):
    """One step of a refund's timeline: a transition, an attempt, or an exchange with the processor."""

    __tablename__ = "refund_events"
    __table_args__ = (Index("ix_refund_events_refund", "refund_id", "id"),)

    refund_id: Mapped[UUID] = mapped_column(ForeignKey("refunds.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    status: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32), default=None)
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    # The processor exchange behind this step, as JSON {method, path, status_code, latency_ms, excerpt};
    # the excerpt is scrubbed by the adapter before it gets here.
    exchange: Mapped[str | None] = mapped_column(Text, default=None)
