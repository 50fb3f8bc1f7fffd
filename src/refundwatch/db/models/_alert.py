"""Alerts to people (refundwatch.alerts) and the messages that tell them.

An alert is one row from the moment its condition is seen until it resolves. ``open_key`` holds its
key while it is pending or open and is cleared when it resolves: the unique constraint on it keeps one
live alert per key, whichever worker or process raises it. Each message (opened, resolved) to each
Apprise target is an ``alert_deliveries`` row written in the same transaction, then claimed and sent
after commit.
"""

from __future__ import annotations

import datetime as dt

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class Alert(BigIntBase):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_state", "state", "kind"),
        Index("ix_alerts_since", "since"),
    )

    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    open_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    state: Mapped[str] = mapped_column(String(16))  # pending | open | resolved
    severity: Mapped[str] = mapped_column(String(16))  # critical | warning
    connection: Mapped[str | None] = mapped_column(String(255), default=None)
    summary: Mapped[str] = mapped_column(Text)  # the condition as it reads now (restated while live)
    # The summary as the opening message told it (set when the alert opens): the messages name this.
    announced: Mapped[str | None] = mapped_column(Text, default=None)
    announced_severity: Mapped[str | None] = mapped_column(String(16), default=None)  # as it was told
    since: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))  # condition first seen
    opened_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    resolution: Mapped[str | None] = mapped_column(Text, default=None)


class AlertDelivery(BigIntBase):
    __tablename__ = "alert_deliveries"
    __table_args__ = (
        Index("ix_alert_deliveries_due", "status", "next_at"),
        Index("ix_alert_deliveries_alert", "alert_id"),
    )

    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))  # opened | resolved
    target: Mapped[str] = mapped_column(String(64))  # the URL's keyed fingerprint (alerts.targets)
    target_label: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # queued | sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # queued: when it is due; sending: when the claim lapses (a worker that died mid-send)
    next_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    error: Mapped[str | None] = mapped_column(String(255), default=None)
