"""``GET /metrics`` (CONTRACT §5): Prometheus text format, computed at scrape time from what every process
shares (the database rollups, the health checks, Redis), so any web process answers the same and the
counters only ever grow, whichever process Prometheus happens to reach.

One scrape costs seven small SQL queries and two Redis round trips (plus, at most every 10 s, the
connection cache's reload):

1. ``refund_stats`` day rows summed per connection, outcome and error code: the refund counters and the
   processing-time histograms. Day rows are kept for ever (minute rows are pruned), so the sums are
   all-time totals; the cost grows with the days, connections and error codes, never with refunds.
2. ``health_stats`` day rows summed per connection: health checks by result, time spent in them.
3. The newest health check of each enabled connection: one ``UNION ALL`` of index probes on
   ``(connection_id, at)``.
4. Unfinished refunds by status and currency, through ``ix_refunds_status_updated``: only the
   unfinished refunds are read, never the finished ones.
5. Stored webhook events since a watermark kept in Redis (below), through the primary key.
6. Refund lines of settlement data by connection and match, from ``ix_settlement_lines_match`` alone.
7. Open reconciliation breaks by kind and connection, through ``ix_reconciliation_breaks_status``.

Redis: one pipeline (rejected and rate-limited webhooks, the accepted-webhook totals, the job queue, web
requests) and the live call counts behind the gateway state; a third call moves the webhook watermark forward.

Accepted webhooks are counted without reading every stored event on every scrape. Event ids are UUIDv7,
so they sort by creation time. Redis holds per-connection totals of the events with ids below a
watermark ``upto``; a scrape counts the events at or above it (a primary-key range) and reports
``total + that count``. It then moves the watermark to one minute ago, adding the events it passed
to the totals, with a compare-and-set script so two processes never add the same events twice. An
event is missed only if it commits more than a minute after its id was made (one short transaction,
in practice never). If the Redis key is lost, the next scrape counts every event once, through
the index, and goes on from there.

Label values are bounded: connection names, the refund statuses, the standard error vocabulary
(``gateways.base.ErrorCode``, anything else reported as ``other``) and ISO currency codes. The
processor's own failure code is processor-defined text, so it is not a label; the dashboard's
failures panel and ``/refunds?error=…`` show it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Select, Table, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from refundwatch.dashboard.panels import UNFINISHED
from refundwatch.dashboard.signals import HTTP_KEY
from refundwatch.dashboard.uptime import decide_state, last_checks_query, live_calls
from refundwatch.db.models import WebhookEvent
from refundwatch.db.models._stats import ACCEPT_COLUMNS, FINAL_COLUMNS, LATENCY_BOUNDS_MS
from refundwatch.db.tables import HEALTH_STATS, REFUNDS, STATS
from refundwatch.gateways.base import ErrorCode
from refundwatch.health.httpmetrics import cumulative_buckets, http_families
from refundwatch.health.reconmetrics import reconciliation_families
from refundwatch.reconciliation import figures as reconciliation
from refundwatch.refunds.states import Status
from refundwatch.runtime import QUEUE_NAME, Runtime
from refundwatch.webhooks.rejections import RATE_LIMITED_COUNTER, REJECTED_COUNTER

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
STATES = ("up", "degraded", "down", "unknown")
ERROR_CODES = frozenset(code.value for code in ErrorCode)
UNKNOWN = "unknown"  # a connection id no longer among the connections

WEBHOOKS = cast(Table, WebhookEvent.__table__)
ACCEPTED_WEBHOOKS_KEY = "refundwatch:metrics:webhooks:accepted"  # hash: upto → hex id, <uuid> → count
WATERMARK_FIELD = "upto"
WATERMARK_LAG = dt.timedelta(minutes=1)

# Move the watermark from ARGV[1] to ARGV[2] and add the counts (ARGV[3..] id, n pairs) only if no one
# else moved it first: the events between the two watermarks are added exactly once.
_ADVANCE = """
local current = redis.call('HGET', KEYS[1], 'upto') or ''
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'upto', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass(slots=True)
class RefundTotals:
    n: int = 0
    accept_ms_sum: int = 0
    final_ms_sum: int = 0
    accept: list[int] = field(default_factory=list)
    final: list[int] = field(default_factory=list)


@dataclass(slots=True)
class HealthTotals:
    checks: int = 0
    ok: int = 0
    latency_ms_sum: int = 0


@dataclass(frozen=True, slots=True)
class LastCheck:
    at: dt.datetime
    ok: bool
    latency_ms: int


@dataclass(frozen=True, slots=True)
class Unfinished:
    status: str
    currency: str
    count: int
    oldest: dt.datetime | None
    amount: int


@dataclass(slots=True)
class Snapshot:
    """Everything one scrape read, before it becomes metric families (``families``)."""

    now: dt.datetime
    names: dict[UUID, str]  # every connection, for the counters
    enabled: list[str]  # enabled connections, for the gateway gauges
    ids: dict[str, UUID]
    refunds: dict[tuple[UUID, str, str], RefundTotals] = field(default_factory=dict)
    health: dict[UUID, HealthTotals] = field(default_factory=dict)
    last_checks: dict[UUID, LastCheck] = field(default_factory=dict)
    unfinished: list[Unfinished] = field(default_factory=list)
    redis_up: bool = True
    # name → (calls, failed, when the last one failed) over the last minute
    live_calls: dict[str, tuple[int, int, dt.datetime | None]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # connection name → count
    rate_limited: dict[str, int] = field(default_factory=dict)  # connection name → 429s
    accepted: dict[UUID, int] | None = None  # connection id → count; None without Redis
    queue_due: int | None = None
    queue_deferred: int | None = None
    slow_check_ms: int = 2000
    http: dict[bytes, bytes] = field(default_factory=dict)  # web requests (health.httpmetrics)
    reconciliation: reconciliation.Figures = field(default_factory=reconciliation.Figures)


# --------------------------------------------------------------------------------------------- queries


def refund_totals_query() -> Select[Any]:
    sums = [func.sum(STATS.c[name]) for name in ("n", "accept_ms_sum", "final_ms_sum")]
    histograms = [func.sum(STATS.c[name]) for name in (*ACCEPT_COLUMNS, *FINAL_COLUMNS)]
    return (
        select(STATS.c.connection_id, STATS.c.outcome, STATS.c.error_code, *sums, *histograms)
        .where(STATS.c.res == "d")
        .group_by(STATS.c.connection_id, STATS.c.outcome, STATS.c.error_code)
    )


def health_totals_query() -> Select[Any]:
    h = HEALTH_STATS.c
    return (
        select(h.connection_id, func.sum(h.checks), func.sum(h.ok_checks), func.sum(h.latency_ms_sum))
        .where(h.res == "d")
        .group_by(h.connection_id)
    )


def unfinished_query() -> Select[Any]:
    r = REFUNDS.c
    return (
        select(r.status, r.currency, func.count(), func.min(r.updated_at), func.sum(r.amount))
        .where(r.status.in_([s.value for s in UNFINISHED]))
        .group_by(r.status, r.currency)
    )


def accepted_webhooks_query(since: UUID | None, upto: UUID) -> Select[Any]:
    """Stored events per connection at or above the watermark ``since``: how many, and how many of
    them fall below the next watermark ``upto``."""
    w = WEBHOOKS.c
    recent = select(w.id, w.connection_id)
    if since is not None:
        recent = recent.where(w.id >= since)
    # Materialised first, so the range on the primary key is read on its own: left to itself, SQLite
    # would rather walk the whole (connection_id, event_id) index to save sorting for the GROUP BY.
    tail = recent.cte("recent").prefix_with("MATERIALIZED")
    return select(
        tail.c.connection_id, func.sum(case((tail.c.id < upto, 1), else_=0)), func.count()
    ).group_by(tail.c.connection_id)


def id_floor(moment: dt.datetime) -> UUID:
    """The smallest UUIDv7 made at ``moment``'s millisecond: ids below it were made before it."""
    return UUID(int=int(moment.timestamp() * 1000) << 80)


# ---------------------------------------------------------------------------------------------- gather


async def gather(rt: Runtime, now: dt.datetime | None = None) -> Snapshot:
    now = now or dt.datetime.now(dt.UTC)
    connections = await rt.connections.all()
    snap = Snapshot(
        now=now,
        names={c.id: c.name for c in connections},
        enabled=sorted(c.name for c in connections if c.enabled),
        ids={c.name: c.id for c in connections},
        slow_check_ms=rt.settings.dashboard_slow_check_ms,
    )
    enabled_ids = [c.id for c in connections if c.enabled]
    watermark, totals = await _read_redis(rt, snap)
    upto = id_floor(now - WATERMARK_LAG)
    webhooks: Sequence[Any] = ()
    async with rt.db.read_engine.connect() as conn:
        await _read_database(conn, snap, enabled_ids)
        if totals is not None:
            webhooks = (await conn.execute(accepted_webhooks_query(watermark, upto))).all()
    if totals is not None:
        # totals count the events below the watermark, the query those at or above it: together,
        # every stored event, whatever another process did to the watermark meanwhile.
        accepted = dict(totals)
        passed: dict[UUID, int] = {}
        for connection_id, below, count in webhooks:
            accepted[connection_id] = accepted.get(connection_id, 0) + int(count)
            if below:
                passed[connection_id] = int(below)
        snap.accepted = accepted
        if watermark is None or upto > watermark:  # not when the clock went back
            await _advance(rt, watermark, upto, passed)
    return snap


async def _read_database(conn: AsyncConnection, snap: Snapshot, enabled_ids: list[UUID]) -> None:
    buckets = len(ACCEPT_COLUMNS)
    for connection_id, outcome, error_code, n, accept_sum, final_sum, *hist in (
        await conn.execute(refund_totals_query())
    ).all():
        counts = [int(v or 0) for v in hist]
        snap.refunds[(connection_id, outcome, error_code or "")] = RefundTotals(
            int(n or 0), int(accept_sum or 0), int(final_sum or 0), counts[:buckets], counts[buckets:]
        )
    for connection_id, checks, ok, latency in (await conn.execute(health_totals_query())).all():
        snap.health[connection_id] = HealthTotals(int(checks or 0), int(ok or 0), int(latency or 0))
    if enabled_ids:
        for connection_id, at, ok, latency_ms, _error in (
            await conn.execute(last_checks_query(enabled_ids))
        ).all():
            snap.last_checks[connection_id] = LastCheck(at, bool(ok), int(latency_ms))
    snap.unfinished = [
        Unfinished(status, currency, int(n), oldest, int(amount or 0))
        for status, currency, n, oldest, amount in (await conn.execute(unfinished_query())).all()
    ]
    snap.reconciliation = reconciliation.read(
        (await conn.execute(reconciliation.lines_query())).all(),
        (await conn.execute(reconciliation.open_breaks_query())).all(),
    )


async def _read_redis(rt: Runtime, snap: Snapshot) -> tuple[UUID | None, dict[UUID, int] | None]:
    """Rejected webhooks, accepted-webhook totals and watermark, queue depth, live calls. Redis being
    away costs only the metrics that live there (``refundwatch_redis_up`` says so)."""
    try:
        redis = rt.require_redis()
        now_ms = int(snap.now.timestamp() * 1000)
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(REJECTED_COUNTER)
        pipe.hgetall(ACCEPTED_WEBHOOKS_KEY)
        pipe.zcount(QUEUE_NAME, "-inf", now_ms)
        pipe.zcard(QUEUE_NAME)
        pipe.hgetall(HTTP_KEY)
        pipe.hgetall(RATE_LIMITED_COUNTER)
        rejected, accepted, due, total, snap.http, rate_limited = await pipe.execute()
        live = await live_calls(rt, snap.enabled) if snap.enabled else {}
    except Exception:  # the database half of the metrics still answers
        log.warning("metrics: Redis unavailable", exc_info=True)
        snap.redis_up = False
        return None, None
    snap.rejected = {name.decode(): int(count) for name, count in rejected.items()}
    snap.rate_limited = {name.decode(): int(count) for name, count in rate_limited.items()}
    snap.queue_due, snap.queue_deferred = int(due), int(total) - int(due)
    snap.live_calls = {
        name: (calls, failed, None if failure is None else failure.at)
        for name, (calls, failed, failure) in live.items()
    }
    watermark = None
    totals: dict[UUID, int] = {}
    for key, value in accepted.items():
        name = key.decode()
        if name == WATERMARK_FIELD:
            watermark = UUID(value.decode())
        else:
            totals[UUID(name)] = int(value)
    if watermark is None:
        totals = {}  # counted from the start this time
    return watermark, totals


async def _advance(rt: Runtime, since: UUID | None, upto: UUID, passed: dict[UUID, int]) -> None:
    args: list[str] = ["" if since is None else since.hex, upto.hex]
    for connection_id, n in sorted(passed.items(), key=lambda item: str(item[0])):
        args += [str(connection_id), str(n)]
    try:
        await rt.require_redis().eval(_ADVANCE, 1, ACCEPTED_WEBHOOKS_KEY, *args)  # type: ignore[misc]
    except Exception:  # the next scrape tries again from the same watermark
        log.warning("metrics: could not move the webhook watermark", exc_info=True)


# -------------------------------------------------------------------------------------------- families


def _seconds(ms: float) -> float:
    return ms / 1000


def _error_label(outcome: str, error_code: str) -> str:
    if outcome in ("accepted", "succeeded") or not error_code:
        return ""
    return error_code if error_code in ERROR_CODES else "other"


def families(snap: Snapshot) -> list[Metric]:
    names = snap.names
    redis_up = GaugeMetricFamily(
        "refundwatch_redis_up",
        "1 when this scrape could read Redis; 0 means the Redis-backed metrics are missing from it.",
        value=1 if snap.redis_up else 0,
    )
    return [
        *_refund_families(snap, names),
        *_gateway_families(snap),
        *_work_families(snap),
        *_webhook_families(snap, names),
        *reconciliation_families(snap.reconciliation, names, snap.now),
        *(http_families(snap.http) if snap.redis_up else ()),
        redis_up,
    ]


def _refund_families(snap: Snapshot, names: dict[UUID, str]) -> Iterable[Metric]:
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for name in names.values():  # every connection has its accepted and succeeded series from the start
        for outcome in ("accepted", "succeeded"):
            counts[(name, outcome, "")] += 0
    slots = len(LATENCY_BOUNDS_MS) + 1
    hist: dict[tuple[str, str], list[int]] = {}
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for name in names.values():
        for interval in ("accepted", "final"):
            hist[(name, interval)] = [0] * slots
    for (connection_id, outcome, error_code), totals in snap.refunds.items():
        name = names.get(connection_id, UNKNOWN)
        counts[(name, outcome, _error_label(outcome, error_code))] += totals.n
        for interval, values, total_ms in (
            ("accepted", totals.accept, totals.accept_ms_sum),
            ("final", totals.final, totals.final_ms_sum),
        ):
            slot = hist.setdefault((name, interval), [0] * slots)
            for i, v in enumerate(values):
                slot[i] += v
            sums[(name, interval)] += total_ms

    refunds = CounterMetricFamily(
        "refundwatch_refunds",
        "Refund outcomes: accepted by the processor, then succeeded, failed or reversed "
        "(error_code from the standard vocabulary, empty unless failed or reversed).",
        labels=["connection", "outcome", "error_code"],
    )
    for (name, outcome, error_code), n in sorted(counts.items()):
        refunds.add_metric([name, outcome, error_code], n)
    yield refunds

    seconds = HistogramMetricFamily(
        "refundwatch_refund_processing_seconds",
        "Time from the refund request to the processor accepting it (interval=accepted) "
        "or to its final outcome (interval=final).",
        labels=["connection", "interval"],
    )
    les = [str(_seconds(bound)) for bound in LATENCY_BOUNDS_MS] + ["+Inf"]  # 0.025 … 7200.0
    for (name, interval), values in sorted(hist.items()):
        seconds.add_metric(
            [name, interval], cumulative_buckets(les, values), _seconds(sums[(name, interval)])
        )
    yield seconds


def _gateway_families(snap: Snapshot) -> Iterable[Metric]:
    up = GaugeMetricFamily(
        "refundwatch_gateway_up",
        "1 while the gateway is up or degraded, 0 when down (last health check and the last "
        "minute's live calls, as on the dashboard); absent until its first health check or call.",
        labels=["connection"],
    )
    state = GaugeMetricFamily(
        "refundwatch_gateway_state",
        "The gateway's current state: 1 for the state it is in, 0 for the others.",
        labels=["connection", "state"],
    )
    latency = GaugeMetricFamily(
        "refundwatch_health_check_latency_seconds",
        "How long the connection's last health check took.",
        labels=["connection"],
    )
    last_at = GaugeMetricFamily(
        "refundwatch_health_check_timestamp_seconds",
        "When the connection's last health check ran (Unix time).",
        labels=["connection"],
    )
    for name in snap.enabled:
        check = snap.last_checks.get(snap.ids[name])
        calls, failed, failed_at = snap.live_calls.get(name, (0, 0, None))
        # as gateway_uptime: a good check after the last failed call means the processor answers again
        recovered = check is not None and check.ok and failed_at is not None and check.at > failed_at
        current, _why = decide_state(
            None if check is None else check.ok,
            None if check is None else check.latency_ms,
            calls,
            failed,
            snap.slow_check_ms,
            recovered=recovered,
        )
        if current != "unknown":
            up.add_metric([name], 0 if current == "down" else 1)
        for candidate in STATES:
            state.add_metric([name, candidate], 1 if candidate == current else 0)
        if check is not None:
            latency.add_metric([name], _seconds(check.latency_ms))
            last_at.add_metric([name], check.at.timestamp())
    yield from (up, state, latency, last_at)

    checks = CounterMetricFamily(
        "refundwatch_health_checks",
        "Gateway health checks by result (ok or failed).",
        labels=["connection", "result"],
    )
    spent = CounterMetricFamily(
        "refundwatch_health_check_seconds",
        "Time spent in health checks: divide its rate by that of refundwatch_health_checks_total "
        "for the mean latency.",
        labels=["connection"],
    )
    per: dict[str, HealthTotals] = defaultdict(HealthTotals)
    for name in snap.enabled:
        per[name] = HealthTotals()
    for connection_id, totals in snap.health.items():
        row = per[snap.names.get(connection_id, UNKNOWN)]
        row.checks += totals.checks
        row.ok += totals.ok
        row.latency_ms_sum += totals.latency_ms_sum
    for name, row in sorted(per.items()):
        checks.add_metric([name, "ok"], row.ok)
        checks.add_metric([name, "failed"], row.checks - row.ok)
        spent.add_metric([name], _seconds(row.latency_ms_sum))
    yield from (checks, spent)


def _work_families(snap: Snapshot) -> Iterable[Metric]:
    counts: dict[str, int] = {s.value: 0 for s in UNFINISHED}
    oldest: dict[str, dt.datetime] = {}
    outflow: dict[str, tuple[int, int]] = {}
    for row in snap.unfinished:
        counts[row.status] = counts.get(row.status, 0) + row.count
        if row.oldest is not None and (row.status not in oldest or row.oldest < oldest[row.status]):
            oldest[row.status] = row.oldest
        if row.status != Status.PENDING_APPROVAL:  # waiting for approval is not committed money
            amount, n = outflow.get(row.currency, (0, 0))
            outflow[row.currency] = (amount + row.amount, n + row.count)
    wip = GaugeMetricFamily(
        "refundwatch_refunds_in_progress", "Unfinished refunds by status.", labels=["status"]
    )
    age = GaugeMetricFamily(
        "refundwatch_refunds_in_progress_oldest_seconds",
        "Time since the oldest unfinished refund in this status last changed (0 when there is none).",
        labels=["status"],
    )
    for status, n in counts.items():
        wip.add_metric([status], n)
        since = oldest.get(status)
        age.add_metric([status], max(0.0, (snap.now - since).total_seconds()) if since else 0.0)
    yield from (wip, age)

    pending = GaugeMetricFamily(
        "refundwatch_pending_outflow_minor_units",
        "Money approved to leave and not final yet (queued, submitting, processing, manual review), "
        "in the currency's minor units.",
        labels=["currency"],
    )
    pending_n = GaugeMetricFamily(
        "refundwatch_pending_outflow_refunds",
        "Refunds behind refundwatch_pending_outflow_minor_units.",
        labels=["currency"],
    )
    for currency, (amount, n) in sorted(outflow.items()):
        pending.add_metric([currency], amount)
        pending_n.add_metric([currency], n)
    yield from (pending, pending_n)

    if snap.queue_due is not None and snap.queue_deferred is not None:
        queue = GaugeMetricFamily(
            "refundwatch_job_queue_depth",
            "Jobs in the worker queue: due now, or deferred to a later time (retries, syncs).",
            labels=["state"],
        )
        queue.add_metric(["due"], snap.queue_due)
        queue.add_metric(["deferred"], snap.queue_deferred)
        yield queue


def _per_connection(name: str, doc: str, counted: dict[str, int], names: dict[UUID, str]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=["connection"])
    counts: dict[str, int] = dict.fromkeys(names.values(), 0)
    for connection, n in counted.items():
        if connection in counts:  # only known connections are ever counted; keep it that way
            counts[connection] += n
    for connection, n in sorted(counts.items()):
        family.add_metric([connection], n)
    return family


def _webhook_families(snap: Snapshot, names: dict[UUID, str]) -> Iterable[Metric]:
    if not snap.redis_up:
        return
    yield _per_connection(
        "refundwatch_webhooks_rejected",
        "Webhook deliveries rejected (bad signature or malformed body).",
        snap.rejected,
        names,
    )
    yield _per_connection(
        "refundwatch_webhooks_rate_limited",
        "Webhook requests refused unchecked (429): their address had too many rejections on that connection.",
        snap.rate_limited,
        names,
    )
    if snap.accepted is None:
        return
    accepted = CounterMetricFamily(
        "refundwatch_webhooks_accepted",
        "Webhook events verified and stored (a duplicate delivery of a stored event is not counted again).",
        labels=["connection"],
    )
    per: dict[str, int] = dict.fromkeys(names.values(), 0)
    for connection_id, n in snap.accepted.items():
        name = names.get(connection_id, UNKNOWN)
        per[name] = per.get(name, 0) + n
    for name, n in sorted(per.items()):
        accepted.add_metric([name], n)
    yield accepted


# ---------------------------------------------------------------------------------------------- render


class _Prepared(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def render(metrics: list[Metric]) -> bytes:
    """The Prometheus text format, written by the official client on a private registry (no process or
    platform collectors, nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Prepared(metrics))
    return generate_latest(registry)


async def scrape(rt: Runtime) -> bytes:
    return render(families(await gather(rt)))
