"""What a dashboard shows: a time range and an optional connection, both in the URL so a view can be
shared, and the time windows and chart steps that follow from them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from refundwatch.dashboard.rollups import bucket_of


@dataclass(frozen=True, slots=True)
class Range:
    key: str
    label: str
    length: dt.timedelta
    res: str  # which rollup rows serve it: "m" minute, "h" hour, "d" day (+ hours: rollups.span)
    step: dt.timedelta  # one point of a sparkline


_M, _H = dt.timedelta(minutes=1), dt.timedelta(hours=1)
RANGES: dict[str, Range] = {
    r.key: r
    for r in (
        Range("15m", "15 minutes", 15 * _M, "m", _M),
        Range("1h", "1 hour", _H, "m", 2 * _M),
        Range("24h", "24 hours", 24 * _H, "h", _H),
        Range("7d", "7 days", 7 * 24 * _H, "d", 24 * _H),
        Range("30d", "30 days", 30 * 24 * _H, "d", 24 * _H),
    )
}
DEFAULT_RANGE = "1h"


@dataclass(frozen=True, slots=True)
class View:
    range: Range
    connection: str | None  # a connection name, or None for all

    @classmethod
    def parse(cls, range_key: str | None, connection: str | None, known: set[str]) -> View:
        """Lenient on purpose: a stale shared link (unknown range or a removed connection) still opens
        the dashboard, with the defaults, rather than an error page."""
        chosen = RANGES.get(range_key or "", RANGES[DEFAULT_RANGE])
        return cls(chosen, connection if connection in known else None)

    @property
    def key(self) -> str:
        """Names the live channel: every viewer of the same view shares one rendering."""
        return f"{self.range.key}.{self.connection or '*'}"

    @classmethod
    def from_key(cls, key: str) -> View:
        range_key, _, connection = key.partition(".")
        return cls(
            RANGES.get(range_key, RANGES[DEFAULT_RANGE]), None if connection in ("", "*") else connection
        )

    def with_range(self, range_key: str) -> View:
        return View(RANGES[range_key], self.connection)

    def with_connection(self, connection: str | None) -> View:
        return View(self.range, connection)

    def query(self, **extra: str) -> str:
        params = {"range": self.range.key}
        if self.connection:
            params["connection"] = self.connection
        params.update(extra)
        return urlencode(params)

    def window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """Start (aligned to the rollup buckets, so a partial bucket is never half counted) and end.
        Day windows start on the hour: their first, partial day is read from hour rows."""
        res = "h" if self.range.res == "d" else self.range.res
        return bucket_of(now - self.range.length, res), now
