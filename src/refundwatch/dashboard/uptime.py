"""The gateway uptime panel: each connection's current state from its health checks *and* the live calls
the worker made in the last minute, uptime over 24 h / 7 d / 30 d and a latency line from the health
rollups, and the last failure of either kind."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import or_, select, union_all

from refundwatch.dashboard import svg
from refundwatch.dashboard.panels import Scope
from refundwatch.dashboard.rollups import bucket_of, span
from refundwatch.dashboard.signals import CALL_SLOT_SECONDS, CALLS_KEY, LAST_CALL_FAILURE_KEY
from refundwatch.db.models import HealthCheck
from refundwatch.db.tables import HEALTH_STATS
from refundwatch.runtime import Runtime

LIVE_WINDOW_SECONDS = 60
UPTIME_WINDOWS = (
    ("24h", dt.timedelta(hours=24)),
    ("7d", dt.timedelta(days=7)),
    ("30d", dt.timedelta(days=30)),
)


@dataclass(slots=True)
class Failure:
    at: dt.datetime
    message: str
    kind: str  # "health check" or "live call"


@dataclass(frozen=True, slots=True)
class Uptime:
    """One uptime figure: over a whole window (``key``), or ``since`` the first check when the
    connection is younger than the window (larger windows would only repeat it, so they are left out)."""

    key: str
    value: float | None
    since: dt.datetime | None = None
    label: str = ""  # what the panel shows: the window, or "since 10:42 UTC"
    since_part: str = "hm"  # how the page shows ``since`` (web.labels.when): the clock, or with the date


def _since(first: dt.datetime, now: dt.datetime) -> str:
    fmt = "%H:%M" if now - first < dt.timedelta(days=1) else "%Y-%m-%d %H:%M"
    return f"since {first.astimezone(dt.UTC).strftime(fmt)} UTC"


def honest_uptimes(
    figures: dict[str, float | None], first_check: dt.datetime | None, now: dt.datetime
) -> list[Uptime]:
    shown: list[Uptime] = []
    for key, length in UPTIME_WINDOWS:
        value = figures.get(key)
        if first_check is not None and first_check > now - length:
            part = "hm" if now - first_check < dt.timedelta(days=1) else "date-hm"
            shown.append(Uptime(key, value, first_check, _since(first_check, now), part))
            break
        shown.append(Uptime(key, value, label=key))
    return shown


@dataclass(slots=True)
class GatewayRow:
    name: str
    state: str  # up | degraded | down | unknown
    why: str
    last_check: dt.datetime | None
    last_latency_ms: int | None
    uptime: list[Uptime]
    live_calls: int
    live_failed: int
    last_failure: Failure | None
    spark: svg.Chart


def decide_state(
    last_ok: bool | None,
    last_latency_ms: int | None,
    calls: int,
    failed: int,
    slow_ms: int,
    *,
    recovered: bool = False,
) -> tuple[str, str]:
    """Down when the last check failed or most live calls of the last minute could not get through;
    degraded when slow, or when more than an occasional live call failed; up otherwise.

    ``recovered``: a health check succeeded after the last failed live call, so the failures of the
    minute are history: the processor answers again (it shows as degraded until the minute is over).
    """
    live_failing = calls >= 3 and failed / calls >= 0.5 and not recovered
    some_failing = failed >= 2 and failed / max(calls, 1) >= 0.05
    if last_ok is False and (calls == 0 or failed > 0):
        return "down", "the last health check failed"
    if live_failing:
        return "down", f"{failed} of {calls} live calls failed in the last minute"
    if last_ok is None and calls == 0:
        return "unknown", "no health check yet"
    if last_ok is False:
        return "degraded", "the last health check failed, but live calls get through"
    if some_failing:
        return "degraded", f"{failed} of {calls} live calls failed in the last minute"
    if last_latency_ms is not None and last_latency_ms > slow_ms:
        return "degraded", f"slow: the last health check took {last_latency_ms} ms"
    if failed:
        return "up", f"health checks succeed; {failed} of {calls} live calls failed in the last minute"
    return "up", "health checks and live calls succeed"


def state_of(check: Any, live: tuple[int, int, Failure | None], slow_ms: int) -> tuple[str, str]:
    """A connection's state from its newest health check and its live calls of the last minute."""
    calls, failed, call_failure = live
    recovered = check is not None and check.ok and call_failure is not None and check.at > call_failure.at
    return decide_state(
        None if check is None else check.ok,
        None if check is None else check.latency_ms,
        calls,
        failed,
        slow_ms,
        recovered=recovered,
    )


async def gateway_states(rt: Runtime) -> dict[str, tuple[str, str]]:
    """Each enabled connection's state and why, as the uptime panel shows it (for alerts.rules)."""
    connections = [c for c in await rt.connections.all() if c.enabled]
    if not connections:
        return {}
    last, live = await asyncio.gather(
        _last_checks(rt, [c.id for c in connections]), live_calls(rt, [c.name for c in connections])
    )
    slow_ms = rt.settings.dashboard_slow_check_ms
    return {c.name: state_of(last[c.id][0], live.get(c.name, (0, 0, None)), slow_ms) for c in connections}


async def gateway_uptime(rt: Runtime, scope: Scope) -> list[GatewayRow]:
    connections = [c for c in await rt.connections.all() if c.enabled]
    if scope.connection_id is not None:
        connections = [c for c in connections if c.id == scope.connection_id]
    if not connections:
        return []
    ids = [c.id for c in connections]
    uptime, first, latency, last, live = await asyncio.gather(  # independent reads, side by side
        _uptime(rt, ids, scope.now),
        _first_checks(rt, ids),
        _latency(rt, ids, scope),
        _last_checks(rt, ids),
        live_calls(rt, [c.name for c in connections]),
    )
    rows = []
    steps = svg.Steps(scope.start, scope.now, scope.view.range.step)
    for conn in connections:
        check, failure = last.get(conn.id, (None, None))
        calls, failed, call_failure = live.get(conn.name, (0, 0, None))
        state, why = state_of(check, (calls, failed, call_failure), rt.settings.dashboard_slow_check_ms)
        latest = max((f for f in (failure, call_failure) if f is not None), key=lambda f: f.at, default=None)
        rows.append(
            GatewayRow(
                name=conn.name,
                state=state,
                why=why,
                last_check=None if check is None else check.at,
                last_latency_ms=None if check is None else check.latency_ms,
                uptime=honest_uptimes(uptime.get(conn.id, {}), first.get(conn.id), scope.now),
                live_calls=calls,
                live_failed=failed,
                last_failure=latest,
                spark=_latency_chart(steps, latency.get(conn.id, []), conn.name, scope),
            )
        )
    return rows


def _latency_chart(
    steps: svg.Steps, points: list[tuple[dt.datetime, int, int]], name: str, scope: Scope
) -> svg.Chart:
    sums, counts = steps.zeros(), steps.zeros()
    for bucket, total_ms, checks in points:
        slot = steps.slot(bucket)
        sums[slot] += total_ms
        counts[slot] += checks
    values = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
    return svg.sparkline(
        values,
        low=0,
        high=max([v for v in values if v is not None] + [1.0]),
        label=f"{name}: mean health-check latency per {steps.describe()} "
        f"over the last {scope.view.range.label}",
        interval=steps.describe(),
    )


async def _uptime(rt: Runtime, ids: list[UUID], now: dt.datetime) -> dict[UUID, dict[str, float | None]]:
    """Ok checks over all checks per window, each window stitched from hour and day rows (rollups.span):
    about a hundred rows per connection, whatever the window."""
    h = HEALTH_STATS.c
    windows = {key: span(HEALTH_STATS, "d", bucket_of(now - length, "h")) for key, length in UPTIME_WINDOWS}
    query = select(
        h.connection_id, h.checks, h.ok_checks, *[w.label(key) for key, w in windows.items()]
    ).where(h.connection_id.in_(ids), or_(*windows.values()))
    sums: dict[UUID, dict[str, list[int]]] = {}
    async with rt.db.read_engine.connect() as conn:
        for row in (await conn.execute(query)).all():
            per = sums.setdefault(row.connection_id, {key: [0, 0] for key in windows})
            for key in windows:
                if row._mapping[key]:
                    per[key][0] += int(row.ok_checks)
                    per[key][1] += int(row.checks)
    return {
        connection_id: {key: (ok / checks if checks else None) for key, (ok, checks) in per.items()}
        for connection_id, per in sums.items()
    }


async def _latency(
    rt: Runtime, ids: list[UUID], scope: Scope
) -> dict[UUID, list[tuple[dt.datetime, int, int]]]:
    h = HEALTH_STATS.c
    query = select(h.connection_id, h.bucket, h.latency_ms_sum, h.checks).where(
        span(HEALTH_STATS, scope.view.range.res, scope.start), h.connection_id.in_(ids)
    )
    found: dict[UUID, list[tuple[dt.datetime, int, int]]] = {}
    async with rt.db.read_engine.connect() as conn:
        for connection_id, bucket, total, checks in (await conn.execute(query)).all():
            found.setdefault(connection_id, []).append((bucket, int(total), int(checks)))
    return found


async def _first_checks(rt: Runtime, ids: list[UUID]) -> dict[UUID, dt.datetime]:
    """When each connection was first checked: one probe each of the (connection_id, at) index."""
    t = HealthCheck.__table__.c
    oldest = [
        select(t.connection_id, t.at).where(t.connection_id == cid).order_by(t.at).limit(1).subquery(f"f{i}")
        for i, cid in enumerate(ids)
    ]
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(union_all(*(select(sub) for sub in oldest)))).all()
    return {row.connection_id: row.at for row in rows}


def last_checks_query(ids: Sequence[UUID], *, failed: bool = False) -> Any:
    """The newest check (or the newest failed one, through its partial index) of each connection: one
    index probe each, in one statement."""
    t = HealthCheck.__table__.c
    newest = []
    for i, connection_id in enumerate(ids):
        probe = select(t.connection_id, t.at, t.ok, t.latency_ms, t.error).where(
            t.connection_id == connection_id
        )
        if failed:  # "NOT ok", as the partial index says: PostgreSQL does not match "ok IS false" to it
            probe = probe.where(~t.ok)
        newest.append(probe.order_by(t.at.desc()).limit(1).subquery(f"c{i}"))
    return union_all(*(select(sub) for sub in newest))


async def _last_checks(rt: Runtime, ids: list[UUID]) -> dict[UUID, tuple[Any, Failure | None]]:
    """Per connection: the newest check, and the newest failed one."""
    async with rt.db.read_engine.connect() as conn:
        newest = {row.connection_id: row for row in (await conn.execute(last_checks_query(ids))).all()}
        failed = {
            row.connection_id: row for row in (await conn.execute(last_checks_query(ids, failed=True))).all()
        }
    return {
        connection_id: (
            newest.get(connection_id),
            None
            if connection_id not in failed
            else Failure(failed[connection_id].at, failed[connection_id].error or "failed", "health check"),
        )
        for connection_id in ids
    }


async def live_calls(rt: Runtime, names: list[str]) -> dict[str, tuple[int, int, Failure | None]]:
    redis = rt.require_redis()
    now_slot = int(time.time()) // CALL_SLOT_SECONDS
    slots = range(now_slot - LIVE_WINDOW_SECONDS // CALL_SLOT_SECONDS + 1, now_slot + 1)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        for slot in slots:
            pipe.hmget(CALLS_KEY.format(connection=name, slot=slot), ["ok", "failed"])
        pipe.get(LAST_CALL_FAILURE_KEY.format(connection=name))
    replies = await pipe.execute()
    result = {}
    per = len(slots) + 1
    for i, name in enumerate(names):
        chunk = replies[i * per : (i + 1) * per]
        ok = sum(int(pair[0] or 0) for pair in chunk[:-1])
        failed = sum(int(pair[1] or 0) for pair in chunk[:-1])
        failure = None
        if chunk[-1]:
            raw = json.loads(chunk[-1])
            message = f"{raw.get('code', '')}: {raw.get('message', '')}".strip(": ")
            failure = Failure(dt.datetime.fromtimestamp(raw["at"], dt.UTC), message, "live call")
        result[name] = (ok + failed, failed, failure)
    return result
