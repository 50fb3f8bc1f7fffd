"""Keeping the rollups: the outbox fold (worker), health-check buckets, retention, histogram maths.

A transition that counts (``counted``) writes a ``rollup_outbox`` row in the same transaction as the
status change (refunds.cas, refunds.services). ``fold`` moves a batch of those rows into
``refund_stats`` and deletes them in one transaction, so every transition is counted exactly once
whichever worker folds it, and a crash in between leaves the rows to fold again. On PostgreSQL, ``SKIP
LOCKED`` lets several workers fold side by side; on SQLite the write lock takes turns.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from refundwatch.db.engine import Database
from refundwatch.db.models._stats import ACCEPT_COLUMNS, BUCKETS, FINAL_COLUMNS, LATENCY_BOUNDS_MS
from refundwatch.db.tables import HEALTH_STATS, OUTBOX, REFUNDS, STATS
from refundwatch.refunds.outcome_log import FinalOutcome
from refundwatch.refunds.states import Status, Transition

COUNTED = frozenset({Status.PROCESSING, Status.SUCCEEDED, Status.FAILED, Status.REVERSED})
OUTCOMES = ("succeeded", "failed", "reversed")  # the denominator of the success rate
# Minute rows serve the 15 m and 1 h windows, hour rows 24 h and 7 d, day rows 30 d and the all-time
# totals of /metrics: a window never reads more than a few hundred buckets per connection.
RESOLUTIONS = {"m": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1), "d": dt.timedelta(days=1)}
MINUTE_ROWS_KEPT = dt.timedelta(days=2)


def counted(move: Transition) -> bool:
    """Whether this transition goes into the rollups (it needs an outbox row)."""
    return move.changed and move.after in COUNTED


def bucket_of(at: dt.datetime, res: str) -> dt.datetime:
    at = at.astimezone(dt.UTC)
    if res == "d":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    if res == "h":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(second=0, microsecond=0)


def span(table: Table, res: str, since: dt.datetime, until: dt.datetime | None = None) -> Any:
    """Rollup rows covering [since, until) at resolution ``res``. Day windows are stitched: hour rows
    up to the first midnight, day rows after it, so a 7-day window reads about 31 rows per series,
    exactly from the hour it starts."""
    if res != "d":
        where = and_(table.c.res == res, table.c.bucket >= since)
        return where if until is None else and_(where, table.c.bucket < until)
    midnight = bucket_of(since, "d")
    if midnight < since:
        midnight += RESOLUTIONS["d"]
    hours = and_(table.c.res == "h", table.c.bucket >= since, table.c.bucket < midnight)
    days = and_(table.c.res == "d", table.c.bucket >= midnight)
    if until is not None:
        hours = and_(hours, table.c.bucket < until)
        days = and_(days, table.c.bucket < until)
    return or_(hours, days)


def histogram_slot(ms: float) -> int:
    for slot, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return slot
    return BUCKETS - 1


def quantile(hist: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, interpolated inside its bucket (as Prometheus does)."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for slot, count in enumerate(hist):
        if count and seen + count >= rank:
            low = 0 if slot == 0 else LATENCY_BOUNDS_MS[slot - 1]
            if slot >= len(LATENCY_BOUNDS_MS):  # open-ended: all we know is "more than"
                return float(low)
            high = LATENCY_BOUNDS_MS[slot]
            return low + (high - low) * (rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass(slots=True)
class _Tally:
    n: int = 0
    accept_ms_sum: int = 0
    final_ms_sum: int = 0
    accept: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    final: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def row(self) -> dict[str, int]:
        values = {"n": self.n, "accept_ms_sum": self.accept_ms_sum, "final_ms_sum": self.final_ms_sum}
        values.update(zip(ACCEPT_COLUMNS, self.accept, strict=True))
        values.update(zip(FINAL_COLUMNS, self.final, strict=True))
        return values


def _ms(later: dt.datetime | None, earlier: dt.datetime) -> int | None:
    if later is None:
        return None
    return max(0, int((later - earlier).total_seconds() * 1000))


def tally(outbox: Iterable[Any], refunds: dict[UUID, Any]) -> dict[tuple[Any, ...], _Tally]:
    """Outbox rows (refund_id, from_status, status, at) → increments per rollup key, both resolutions.

    A refund counts as accepted when it reaches ``processing``, or ``succeeded`` straight from
    submission; its request → accepted time goes into the accept histogram then. Outcomes count with
    their request → final time.
    """
    tallies: dict[tuple[Any, ...], _Tally] = defaultdict(_Tally)
    for item in outbox:
        refund = refunds.get(item.refund_id)
        if refund is None:
            continue
        accepted = item.status == Status.PROCESSING or (
            item.status == Status.SUCCEEDED and item.from_status != Status.PROCESSING
        )
        outcome = "accepted" if item.status == Status.PROCESSING else item.status
        failed = outcome in ("failed", "reversed")
        error_code = (refund.error_code or "") if failed else ""
        processor_code = (refund.processor_code or "") if failed else ""
        for res in RESOLUTIONS:
            key = (res, bucket_of(item.at, res), refund.connection_id, outcome, error_code, processor_code)
            t = tallies[key]
            t.n += 1
            accept_ms = _ms(refund.accepted_at, refund.created_at) if accepted else None
            if accept_ms is not None:
                t.accept_ms_sum += accept_ms
                t.accept[histogram_slot(accept_ms)] += 1
            if outcome != "accepted":
                final_ms = _ms(item.at, refund.created_at) or 0
                t.final_ms_sum += final_ms
                t.final[histogram_slot(final_ms)] += 1
    return tallies


_STAT_KEY = ("res", "bucket", "connection_id", "outcome", "error_code", "processor_code")
_STAT_SUMS = ("n", "accept_ms_sum", "final_ms_sum", *ACCEPT_COLUMNS, *FINAL_COLUMNS)
_HEALTH_KEY = ("res", "bucket", "connection_id")


def _upsert(
    dialect: str, table: Table, key: Sequence[str], sums: Sequence[str], maxes: Sequence[str] = ()
) -> Any:
    """INSERT … ON CONFLICT (key) DO UPDATE SET col = col + excluded.col: concurrent folds add up."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    set_ = {name: table.c[name] + stmt.excluded[name] for name in sums}
    for name in maxes:
        larger = func.greatest if dialect == "postgresql" else func.max  # SQLite's two-argument max
        set_[name] = larger(table.c[name], stmt.excluded[name])
    return stmt.on_conflict_do_update(index_elements=list(key), set_=set_)


_CLAIM_COLUMNS = (OUTBOX.c.id, OUTBOX.c.refund_id, OUTBOX.c.from_status, OUTBOX.c.status, OUTBOX.c.at)
_REFUND_COLUMNS = (
    REFUNDS.c.id,
    REFUNDS.c.connection_id,
    REFUNDS.c.created_at,
    REFUNDS.c.accepted_at,
    REFUNDS.c.error_code,
    REFUNDS.c.processor_code,
    # For the outcome log lines (refunds.outcome_log), not the rollups.
    REFUNDS.c.amount,
    REFUNDS.c.currency,
    REFUNDS.c.attempts,
)


async def fold(db: Database, *, limit: int = 5000, outcomes: list[FinalOutcome] | None = None) -> int:
    """Fold up to ``limit`` outbox rows into the rollups; returns how many were folded. The outcomes
    folded (not ``processing``) are appended to ``outcomes`` once committed, for the worker to log."""
    async with db.write_connection() as conn:
        claim = select(*_CLAIM_COLUMNS).order_by(OUTBOX.c.id).limit(limit)
        if not db.is_sqlite:
            claim = claim.with_for_update(skip_locked=True)
        rows = (await conn.execute(claim)).all()
        if not rows:
            return 0
        ids = list({row.refund_id for row in rows})
        refunds = {
            r.id: r for r in (await conn.execute(select(*_REFUND_COLUMNS).where(REFUNDS.c.id.in_(ids)))).all()
        }
        await _write_stats(conn, tally(rows, refunds))
        await conn.execute(
            delete(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True))),
            {"ids": [r.id for r in rows]},
        )
    if outcomes is not None:
        outcomes.extend(
            FinalOutcome(
                refund_id=row.refund_id,
                connection_id=refund.connection_id,
                status=str(row.status),
                amount=refund.amount,
                currency=refund.currency,
                attempts=refund.attempts,
                error_code=refund.error_code if row.status != Status.SUCCEEDED else None,
            )
            for row in rows
            if row.status != Status.PROCESSING and (refund := refunds.get(row.refund_id)) is not None
        )
    return len(rows)


async def _write_stats(conn: AsyncConnection, tallies: dict[tuple[Any, ...], _Tally]) -> None:
    if not tallies:
        return
    stmt = _upsert(conn.dialect.name, STATS, _STAT_KEY, _STAT_SUMS)
    params = [
        dict(zip(_STAT_KEY, key, strict=True)) | t.row() for key, t in sorted(tallies.items(), key=_order)
    ]
    await conn.execute(stmt, params)


def _order(item: tuple[tuple[Any, ...], _Tally]) -> tuple[Any, ...]:
    """A fixed order for the upserts, so two folds never lock the same rows in opposite orders."""
    res, bucket, connection_id, *rest = item[0]
    return (res, bucket, str(connection_id), *rest)


async def record_health(conn: AsyncConnection, checks: Iterable[Any]) -> None:
    """Add health checks (connection_id, at, ok, latency_ms) to the health rollups, in the caller's
    transaction (the same one that stores the checks)."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    for check in checks:
        for res in RESOLUTIONS:
            key = (res, bucket_of(check.at, res), check.connection_id)
            row = rows.setdefault(
                key,
                dict(zip(_HEALTH_KEY, key, strict=True))
                | {"checks": 0, "ok_checks": 0, "latency_ms_sum": 0, "latency_ms_max": 0},
            )
            row["checks"] += 1
            row["ok_checks"] += 1 if check.ok else 0
            row["latency_ms_sum"] += check.latency_ms
            row["latency_ms_max"] = max(row["latency_ms_max"], check.latency_ms)
    if rows:
        stmt = _upsert(
            conn.dialect.name,
            HEALTH_STATS,
            _HEALTH_KEY,
            ("checks", "ok_checks", "latency_ms_sum"),
            ("latency_ms_max",),
        )
        await conn.execute(stmt, [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], str(k[2])))])


async def prune(db: Database, *, now: dt.datetime | None = None) -> None:
    """Minute buckets are only read for the short windows: keep two days of them."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - MINUTE_ROWS_KEPT
    async with db.write_connection() as conn:
        for table in (STATS, HEALTH_STATS):
            await conn.execute(delete(table).where(table.c.res == "m", table.c.bucket < cutoff))


def backfill_health_sql(dialect: str) -> list[str]:
    """Migration 0003: fold the health checks stored so far into health_stats (both resolutions)."""
    if dialect == "postgresql":
        truncs = {"m": "date_trunc('minute', at)", "h": "date_trunc('hour', at)"}
    else:  # DateTimeUTC is stored as text on SQLite; the bucket must match what Python binds
        truncs = {
            "m": "strftime('%Y-%m-%d %H:%M:00.000000', at)",
            "h": "strftime('%Y-%m-%d %H:00:00.000000', at)",
        }
    ok = "CASE WHEN ok THEN 1 ELSE 0 END"
    return [
        f"""
        INSERT INTO health_stats
            (res, bucket, connection_id, checks, ok_checks, latency_ms_sum, latency_ms_max)
        SELECT '{res}', {trunc}, connection_id, count(*), sum({ok}), sum(latency_ms), max(latency_ms)
        FROM health_checks GROUP BY {trunc}, connection_id
        """
        for res, trunc in truncs.items()
    ]
