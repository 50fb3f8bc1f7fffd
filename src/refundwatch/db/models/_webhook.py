from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import UUIDv7Base
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class WebhookEvent(UUIDv7Base):
    """A verified processor notification, stored raw before anything is applied (unique per event)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("connection_id", "event_id", name="uq_webhook_events_connection_event"),
    )

    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    processed_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    outcome: Mapped[str | None] = mapped_column(String(255), default=None)
