"""Outgoing webhooks: the endpoints people register, one delivery per change and endpoint, its attempts.

A delivery row is the outbox: it is written in the same transaction as the change it reports
(``outgoing.outbox``), one per endpoint that wants that change, and the worker sends it after commit.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import BigIntBase, UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column


class WebhookEndpoint(UUIDv7AuditBase):
    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2048))
    # One bit per event type (outgoing.events.EVENT_TYPES, append-only): the hot path matches with one AND.
    event_mask: Mapped[int] = mapped_column(BigInteger)
    connection_id: Mapped[UUID | None] = mapped_column(ForeignKey("connections.id"), default=None)
    description: Mapped[str | None] = mapped_column(String(500), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # ``whsec_…`` signing secrets, encrypted at rest; during a rotation the previous one signs too
    # until ``previous_secret_expires_at``.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    # The first failed attempt since the last success: an endpoint failing since long enough is disabled.
    failing_since: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    created_by: Mapped[str] = mapped_column(String(255))


PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class WebhookDelivery(BigIntBase):
    """One change for one endpoint. Its id is the message's ``webhook-id`` (``msg_{id}``) and the
    refund's ``sequence`` in the payload: for one refund and endpoint, later changes have larger ids (a
    refund's changes are serialised by its row). Ids are never reused, so neither is ever seen twice
    by a receiver: on SQLite the table is AUTOINCREMENT (a plain INTEGER key would hand out the ids of
    the highest rows again once they are deleted, with their endpoint or by the retention prune)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The worker's claim: what is due for one endpoint, oldest first, in the index's own order.
        Index(
            "ix_webhook_deliveries_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_refund", "refund_id", "endpoint_id", "id"),
        # Per refund and endpoint in order: an earlier delivery still pending holds the later ones
        # (one probe here, however many deliveries the refund had before).
        Index(
            "ix_webhook_deliveries_pending_refund",
            "refund_id",
            "endpoint_id",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        {"sqlite_autoincrement": True},
    )

    endpoint_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[UUID | None] = mapped_column(default=None)
    # The refund's timeline entry of this change: the payload shows the refund as of it.
    event_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The payload's ``data`` for changes other than a refund's, written with the change.
    data: Mapped[str | None] = mapped_column(Text, default=None)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    # The body as first sent; every later attempt (and a re-send) sends these bytes again.
    body: Mapped[str | None] = mapped_column(Text, default=None)
    # Server-side defaults: the hot paths insert through CTEs, where Python defaults are not bound.
    status: Mapped[str] = mapped_column(String(16), server_default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    # A worker sending it holds it until then; a worker killed mid-send lets it go when this passes.
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class WebhookAttempt(BigIntBase):
    """One try at sending a delivery: kept for operators (per endpoint, per refund)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    delivery_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
    )
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    # Why it failed without an answer (timeout, connect_error, address_not_allowed…).
    error: Mapped[str | None] = mapped_column(String(255), default=None)
    latency_ms: Mapped[int] = mapped_column(Integer)
    # The first bytes of the answer, scrubbed of secrets.
    excerpt: Mapped[str | None] = mapped_column(Text, default=None)
