"""Rollups behind the dashboard panels and /metrics, so neither ever scans the refunds table.

``refund_stats`` holds, per time bucket (a minute or an hour), connection and outcome, the count and two
latency histograms: request → processor accepted, and request → final. ``rollup_outbox`` is how they
stay exact: every transition that counts writes one outbox row in its own transaction, and the worker
folds the rows into the rollups and deletes them in one transaction (dashboard.rollups).
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

# Upper bounds (ms) of the latency histogram buckets; the last bucket is open-ended.
LATENCY_BOUNDS_MS: tuple[int, ...] = (
    25, 50, 75, 100, 150, 250, 500, 1_000, 2_500, 5_000, 15_000, 60_000, 300_000, 1_800_000, 7_200_000,
)  # fmt: skip
BUCKETS = len(LATENCY_BOUNDS_MS) + 1
ACCEPT_COLUMNS = tuple(f"a{i:02d}" for i in range(BUCKETS))
FINAL_COLUMNS = tuple(f"f{i:02d}" for i in range(BUCKETS))


class RollupOutbox(BigIntBase):
    """A transition the rollups have yet to count: written with the transition, deleted when counted."""

    __tablename__ = "rollup_outbox"

    refund_id: Mapped[UUID] = mapped_column()
    from_status: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))


class RefundStat(BigIntBase):
    __tablename__ = "refund_stats"
    __table_args__ = (
        UniqueConstraint(
            "res",
            "bucket",
            "connection_id",
            "outcome",
            "error_code",
            "processor_code",
            name="uq_refund_stats_key",
        ),
    )

    res: Mapped[str] = mapped_column(String(1))  # "m" minute, "h" hour
    bucket: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    connection_id: Mapped[UUID] = mapped_column()
    # accepted (the processor took it), succeeded, failed or reversed
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(64), default="")
    processor_code: Mapped[str] = mapped_column(String(128), default="")
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    accept_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    final_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)


for _name in (*ACCEPT_COLUMNS, *FINAL_COLUMNS):
    setattr(RefundStat, _name, mapped_column(_name, BigInteger, default=0, nullable=False))


class HealthStat(BigIntBase):
    """Health checks per connection and bucket: uptime % and latency without reading every check."""

    __tablename__ = "health_stats"
    __table_args__ = (UniqueConstraint("res", "bucket", "connection_id", name="uq_health_stats_key"),)

    res: Mapped[str] = mapped_column(String(1))
    bucket: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    connection_id: Mapped[UUID] = mapped_column()
    checks: Mapped[int] = mapped_column(Integer, default=0)
    ok_checks: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_max: Mapped[int] = mapped_column(Integer, default=0)
