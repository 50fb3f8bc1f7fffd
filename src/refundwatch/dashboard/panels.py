"""Context builders for the dashboard panels: one function per panel, shared by the page, the panel
fragments and the live broadcaster. The rate and time panels read only the rollups; the work-in-progress,
outflow and feed panels read the few unfinished or newest refunds through indexes, never a scan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import and_, case, func, or_, select

from refundwatch.dashboard import svg
from refundwatch.dashboard.rollups import OUTCOMES, quantile, span
from refundwatch.dashboard.views import View
from refundwatch.db.models._stats import ACCEPT_COLUMNS, BUCKETS, FINAL_COLUMNS, LATENCY_BOUNDS_MS
from refundwatch.db.tables import ALERTS, REFUNDS, STATS
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Scope:
    """A view resolved against the connections: ids for the queries, names for the page."""

    view: View
    now: dt.datetime
    names: dict[UUID, str]
    connection_id: UUID | None

    @property
    def start(self) -> dt.datetime:
        return self.view.window(self.now)[0]

    @property
    def previous_start(self) -> dt.datetime:
        return self.start - self.view.range.length


async def resolve(rt: Runtime, view: View, now: dt.datetime | None = None) -> Scope:
    connections = await rt.connections.all()
    names = {c.id: c.name for c in connections}
    chosen = next((c.id for c in connections if c.name == view.connection), None)
    return Scope(view, now or dt.datetime.now(dt.UTC), names, chosen)


def _stats_where(scope: Scope, since: dt.datetime, until: dt.datetime | None = None) -> list[Any]:
    where = [span(STATS, scope.view.range.res, since, until)]
    if scope.connection_id is not None:
        where.append(STATS.c.connection_id == scope.connection_id)
    return where


def _rate(ok: int, total: int) -> float | None:
    return ok / total if total else None


@dataclass(slots=True)
class SuccessRow:
    name: str
    succeeded: int = 0
    failed: int = 0
    reversed: int = 0
    level: str = "none"

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.reversed

    @property
    def rate(self) -> float | None:
        return _rate(self.succeeded, self.total)


@dataclass(slots=True)
class SuccessPanel:
    overall: SuccessRow
    previous: SuccessRow
    by_connection: list[SuccessRow]
    spark: svg.Chart
    level: str  # ok | warn | bad | none, from the configured thresholds

    @property
    def change(self) -> float | None:
        """Percentage points against the previous window of the same length."""
        now, before = self.overall.rate, self.previous.rate
        return None if now is None or before is None else (now - before) * 100


def level_of(rate: float | None, warn_below: float, bad_below: float) -> str:
    """The colour of a rate, judged as it is shown (to 0.1%): 97.97% reads "98.0%" and is not amber."""
    if rate is None:
        return "none"
    shown = round(rate, 3)
    return "bad" if shown < bad_below else "warn" if shown < warn_below else "ok"


async def success_rate(rt: Runtime, scope: Scope) -> SuccessPanel:
    """Three small aggregates, summed in the database (a 7-day window is thousands of rollup rows):
    outcomes per bucket for the sparkline, per connection for the table, and the previous window."""
    outcome, n = STATS.c.outcome, func.sum(STATS.c.n)
    current = [*_stats_where(scope, scope.start), outcome.in_(OUTCOMES)]
    per_bucket = select(STATS.c.bucket, outcome, n).where(*current).group_by(STATS.c.bucket, outcome)
    per_connection = (
        select(STATS.c.connection_id, outcome, n).where(*current).group_by(STATS.c.connection_id, outcome)
    )
    before = (
        select(outcome, n)
        .where(*_stats_where(scope, scope.previous_start, scope.start), outcome.in_(OUTCOMES))
        .group_by(outcome)
    )
    async with rt.db.read_engine.connect() as conn:
        buckets = (await conn.execute(per_bucket)).all()
        connections = (await conn.execute(per_connection)).all()
        previous_rows = (await conn.execute(before)).all()
    overall, previous = SuccessRow("all"), SuccessRow("previous")
    for name, count in previous_rows:
        _add(previous, name, int(count))
    per: dict[UUID, SuccessRow] = {}
    for connection_id, name, count in connections:
        row = per.setdefault(connection_id, SuccessRow(scope.names.get(connection_id, "?")))
        _add(row, name, int(count))
        _add(overall, name, int(count))
    steps = svg.Steps(scope.start, scope.now, scope.view.range.step)
    good, total = steps.zeros(), steps.zeros()
    for bucket, name, count in buckets:
        slot = steps.slot(bucket)
        total[slot] += int(count)
        good[slot] += int(count) if name == "succeeded" else 0
    points = [_rate(g, t) for g, t in zip(good, total, strict=True)]
    if len(points) > 1:  # the step still running is half counted: it would swing the line's end
        points[-1] = None
    settings = rt.settings
    for row in per.values():
        row.level = level_of(row.rate, settings.dashboard_success_warn, settings.dashboard_success_bad)
    return SuccessPanel(
        overall=overall,
        previous=previous,
        by_connection=sorted(per.values(), key=lambda r: r.name),
        spark=svg.sparkline(
            [None if p is None else p * 100 for p in points],
            low=min([p * 100 for p in points if p is not None] + [90.0]),
            high=100,
            label=f"Success rate per {steps.describe()} over the last {scope.view.range.label}",
            interval=steps.describe(),
        ),
        level=level_of(overall.rate, settings.dashboard_success_warn, settings.dashboard_success_bad),
    )


def _add(row: SuccessRow, outcome: str, n: int) -> None:
    setattr(row, outcome, getattr(row, outcome) + n)


@dataclass(slots=True)
class Timing:
    name: str
    accept: list[int]
    final: list[int]

    def p(self, which: str, q: float) -> float | None:
        return quantile(self.accept if which == "accept" else self.final, q)

    @property
    def accepted(self) -> int:
        return sum(self.accept)

    @property
    def finished(self) -> int:
        return sum(self.final)


@dataclass(slots=True)
class TimingPanel:
    overall: Timing
    by_connection: list[Timing]
    chart: svg.Chart


async def processing_time(rt: Runtime, scope: Scope) -> TimingPanel:
    sums = [func.sum(STATS.c[name]) for name in (*ACCEPT_COLUMNS, *FINAL_COLUMNS)]
    query = (
        select(STATS.c.connection_id, *sums)
        .where(*_stats_where(scope, scope.start))
        .group_by(STATS.c.connection_id)
    )
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    overall = Timing("all", [0] * BUCKETS, [0] * BUCKETS)
    per = []
    for connection_id, *values in rows:
        counts = [int(v or 0) for v in values]
        timing = Timing(scope.names.get(connection_id, "?"), counts[:BUCKETS], counts[BUCKETS:])
        per.append(timing)
        overall.accept = [a + b for a, b in zip(overall.accept, timing.accept, strict=True)]
        overall.final = [a + b for a, b in zip(overall.final, timing.final, strict=True)]
    labels = [svg.duration(bound) for bound in LATENCY_BOUNDS_MS] + [
        f"> {svg.duration(LATENCY_BOUNDS_MS[-1])}"
    ]
    return TimingPanel(
        overall=overall,
        by_connection=sorted(per, key=lambda t: t.name),
        chart=svg.histogram(
            overall.final,
            labels,
            label=f"Distribution of request to final times over the last {scope.view.range.label}",
        ),
    )


@dataclass(slots=True)
class FailureRow:
    error_code: str
    processor_code: str
    count: int


async def failures(rt: Runtime, scope: Scope, *, limit: int = 8) -> list[FailureRow]:
    n = func.sum(STATS.c.n)
    query = (
        select(STATS.c.error_code, STATS.c.processor_code, n)
        .where(*_stats_where(scope, scope.start), STATS.c.outcome.in_(("failed", "reversed")))
        .group_by(STATS.c.error_code, STATS.c.processor_code)
        .order_by(n.desc(), STATS.c.error_code)
        .limit(limit)
    )
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [FailureRow(code or "unknown", processor_code, int(count)) for code, processor_code, count in rows]


WIP_STATUSES = ("pending_approval", "queued", "submitting", "retrying", "processing", "manual_review")
UNFINISHED = (
    Status.PENDING_APPROVAL,
    Status.QUEUED,
    Status.SUBMITTING,
    Status.PROCESSING,
    Status.MANUAL_REVIEW,
)


@dataclass(slots=True)
class WipRow:
    status: str
    count: int = 0
    oldest: dt.datetime | None = None
    stuck: bool = False


@dataclass(slots=True)
class WipPanel:
    rows: list[WipRow]
    stuck_after: dt.timedelta

    @property
    def stuck(self) -> int:
        return sum(1 for row in self.rows if row.stuck)


def _unfinished(scope: Scope, statuses: Sequence[Status] = UNFINISHED) -> list[Any]:
    where: list[Any] = [REFUNDS.c.status.in_([s.value for s in statuses])]
    if scope.connection_id is not None:
        where.append(REFUNDS.c.connection_id == scope.connection_id)
    return where


async def work_in_progress(rt: Runtime, scope: Scope) -> WipPanel:
    """Unfinished refunds by status (a submitting refund waiting to retry counts as retrying), with the
    age of the oldest: through the status index, so only unfinished refunds are read."""
    shown = case(
        (and_(REFUNDS.c.status == Status.SUBMITTING, REFUNDS.c.next_attempt_at.is_not(None)), "retrying"),
        else_=REFUNDS.c.status,
    )
    counts = (
        select(shown, func.count(), func.min(REFUNDS.c.updated_at)).where(*_unfinished(scope)).group_by(shown)
    )
    async with rt.db.read_engine.connect() as conn:
        found = {status: (int(n), oldest) for status, n, oldest in (await conn.execute(counts)).all()}
    stuck_after = dt.timedelta(minutes=rt.settings.dashboard_stuck_minutes)
    rows = []
    for status in WIP_STATUSES:
        n, oldest = found.get(status, (0, None))
        stuck = oldest is not None and scope.now - oldest > stuck_after
        rows.append(WipRow(status, n, oldest, stuck))
    return WipPanel(rows, stuck_after)


@dataclass(frozen=True, slots=True)
class Outflow:
    currency: str
    amount: int
    refunds: int


async def pending_outflow(rt: Runtime, scope: Scope) -> list[Outflow]:
    """Money still to leave, per currency: approved refunds not final yet (waiting for approval is not
    committed money; it shows in work in progress)."""
    query = (
        select(REFUNDS.c.currency, func.sum(REFUNDS.c.amount), func.count())
        .where(*_unfinished(scope, [s for s in UNFINISHED if s is not Status.PENDING_APPROVAL]))
        .group_by(REFUNDS.c.currency)
        .order_by(REFUNDS.c.currency)
    )
    async with rt.db.read_engine.connect() as conn:
        return [Outflow(c, int(a), int(n)) for c, a, n in (await conn.execute(query)).all()]


async def feed(rt: Runtime, scope: Scope, *, limit: int = 12) -> list[Any]:
    """The newest refunds (ids are time-ordered: the primary key index, read backwards)."""
    query = (
        select(
            REFUNDS.c.id,
            REFUNDS.c.created_at,
            REFUNDS.c.updated_at,
            REFUNDS.c.connection_id,
            REFUNDS.c.amount,
            REFUNDS.c.currency,
            REFUNDS.c.status,
            REFUNDS.c.error_code,
            REFUNDS.c.payment_reference,
        )
        .order_by(REFUNDS.c.id.desc())
        .limit(limit)
    )
    if scope.connection_id is not None:  # its own index, newest first
        query = (
            query.where(REFUNDS.c.connection_id == scope.connection_id)
            .order_by(None)
            .order_by(REFUNDS.c.created_at.desc(), REFUNDS.c.id.desc())
        )
    async with rt.db.read_engine.connect() as conn:
        return list((await conn.execute(query)).all())


@dataclass(frozen=True, slots=True)
class AlertRow:
    refund_id: UUID
    connection_id: UUID
    amount: int
    currency: str
    alert: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    kind: str
    severity: str
    summary: str
    opened_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AlertsPanel:
    open: list[OpenAlert]  # the alerts sent to people (refundwatch.alerts), money ones listed below
    money: list[AlertRow]

    def __bool__(self) -> bool:
        return bool(self.open or self.money)


async def alerts(rt: Runtime, scope: Scope, *, limit: int = 8) -> AlertsPanel:
    """Open alerts, whatever the time range (an alert does not age out of view): those the rules and
    the webhook deliveries raise, and the money alerts a person must act on — a processor's report
    contradicted a released refund (or an earlier attempt reports money moved), listed with their
    refunds while they wait in manual review."""
    where = [REFUNDS.c.alert_at.is_not(None), REFUNDS.c.status == Status.MANUAL_REVIEW.value]
    if scope.connection_id is not None:
        where.append(REFUNDS.c.connection_id == scope.connection_id)
    query = (
        select(
            REFUNDS.c.id,
            REFUNDS.c.connection_id,
            REFUNDS.c.amount,
            REFUNDS.c.currency,
            REFUNDS.c.alert,
            REFUNDS.c.alert_at,
        )
        .where(*where)
        .order_by(REFUNDS.c.alert_at.desc())
        .limit(limit)
    )
    a = ALERTS.c
    live = [a.state == "open", a.kind != "money_truth"]
    if scope.connection_id is not None:  # that connection's, and those about no connection
        live.append(or_(a.connection.is_(None), a.connection == scope.names.get(scope.connection_id)))
    opened = (
        select(a.id, a.kind, a.severity, a.summary, a.opened_at)
        .where(*live)
        .order_by((a.severity == "critical").desc(), a.opened_at.desc())
        .limit(limit)
    )
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        found = (await conn.execute(opened)).all()
    return AlertsPanel([OpenAlert(*row) for row in found], [AlertRow(*row) for row in rows])
