from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import BigIntBase, UUIDv7AuditBase, UUIDv7Base
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column


class Connection(UUIDv7AuditBase):
    """A configured account at one processor. Credentials are one encrypted JSON blob."""

    __tablename__ = "connections"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    processor: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    credentials_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer, default=None)
    health_check_interval_seconds: Mapped[int] = mapped_column(Integer, default=60)
    timeout_seconds: Mapped[int] = mapped_column(Integer, default=30)


class HealthCheck(BigIntBase):
    """One gateway health probe run by the worker: the data behind "gateway uptime"."""

    __tablename__ = "health_checks"
    __table_args__ = (
        Index("ix_health_checks_connection_at", "connection_id", "at"),
        # "Last failure" per connection without walking 30 days of good checks.
        Index(
            "ix_health_checks_failures",
            "connection_id",
            "at",
            postgresql_where=text("NOT ok"),
            sqlite_where=text("NOT ok"),
        ),
    )

    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500), default=None)


class ConnectionChange(UUIDv7Base):
    """A requested change to a connection's credentials: applied only once a second admin approves.

    The new secret values are encrypted like the connection's own credentials; only their field names
    are ever shown or audited.
    """

    __tablename__ = "connection_changes"

    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"), index=True)
    fields: Mapped[str] = mapped_column(String(500))  # comma-separated field names
    values_encrypted: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | rejected
    requested_by: Mapped[str] = mapped_column(String(255))  # the person's stable key
    requested_by_name: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    decided_by_name: Mapped[str | None] = mapped_column(String(255), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    reason: Mapped[str | None] = mapped_column(String(500), default=None)
