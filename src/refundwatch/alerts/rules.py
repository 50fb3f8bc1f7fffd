"""The alert rules, checked by the worker on a schedule, and how their findings become alerts.

Each rule reads what the dashboard already computes (the same functions, the same thresholds) and
returns the conditions that hold now. ``evaluate`` compares them with the live alerts of the rules'
kinds: a new condition opens an alert (or starts a pending one while its hold lasts), a live alert
whose condition is gone resolves. A rule that fails this round (Redis away, say) leaves its alerts
as they are: an unanswered question is not a recovery.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from uuid import UUID

from sqlalchemy import func, select

from refundwatch.alerts import store
from refundwatch.alerts.store import Condition
from refundwatch.dashboard import panels, uptime
from refundwatch.dashboard.signals import ALERTS as ALERTS_CHANGED
from refundwatch.dashboard.signals import signals
from refundwatch.dashboard.views import Range, View
from refundwatch.db.models import ReconciliationBreak
from refundwatch.db.tables import ALERTS, ENDPOINTS, REFUNDS
from refundwatch.outgoing.notices import EndpointDisabled
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
Rule = Callable[[Runtime, dt.datetime], Awaitable[list[Condition]]]


async def gateways(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """A connection down alerts at once; degraded, once it has lasted REFUNDWATCH_ALERT_DEGRADED_MINUTES."""
    hold = dt.timedelta(minutes=rt.settings.alert_degraded_minutes)
    found = []
    for name, (state, why) in sorted((await uptime.gateway_states(rt)).items()):
        if state == "down":
            found.append(Condition("gateway", name, f"{name} is down: {why}", "critical", name))
        elif state == "degraded":
            found.append(Condition("gateway", name, f"{name} is degraded: {why}", "warning", name, hold))
    return found


async def success_rate(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """A connection's success rate over the window, judged as the dashboard colours it (red below
    REFUNDWATCH_DASHBOARD_SUCCESS_BAD), once the window holds enough outcomes to mean something."""
    settings = rt.settings
    minutes = settings.alert_success_window_minutes
    res = "m" if minutes <= 24 * 60 else "h"  # minute rollups are kept two days
    window = Range("alert", f"{minutes} minutes", dt.timedelta(minutes=minutes), res, dt.timedelta(minutes=1))
    scope = await panels.resolve(rt, View(window, None), now)
    found = []
    for row in (await panels.success_rate(rt, scope)).by_connection:
        if row.level == "bad" and row.total >= settings.alert_success_min_refunds and row.rate is not None:
            found.append(
                Condition(
                    "success_rate",
                    row.name,
                    f"{row.name}: {row.rate:.1%} of {row.total} refunds succeeded over the last {minutes} "
                    f"minutes (below {settings.dashboard_success_bad:.1%})",
                    "critical",
                    row.name,
                )
            )
    return found


async def stuck(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """Unfinished refunds that have not moved for REFUNDWATCH_DASHBOARD_STUCK_MINUTES, per status, as
    the dashboard's work-in-progress panel finds them."""
    scope = await panels.resolve(rt, View.from_key(""), now)
    wip = await panels.work_in_progress(rt, scope)
    minutes = int(wip.stuck_after.total_seconds() // 60)
    found = []
    for row in wip.rows:
        if row.stuck and row.oldest is not None:
            age = int((now - row.oldest).total_seconds() // 60)
            found.append(
                Condition(
                    "stuck",
                    row.status,
                    f"refunds stuck in {row.status}: the oldest of {row.count} has not moved for {age} "
                    f"minutes (stuck after {minutes})",
                    "warning",
                )
            )
    return found


async def money_truth(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """Refunds waiting in manual review because a processor's report contradicted a released refund:
    raised where the report is applied (refunds.services), kept open here until a person acts."""
    query = select(
        REFUNDS.c.id, REFUNDS.c.connection_id, REFUNDS.c.amount, REFUNDS.c.currency, REFUNDS.c.alert
    ).where(REFUNDS.c.alert_at.is_not(None), REFUNDS.c.status == Status.MANUAL_REVIEW.value)
    names = {c.id: c.name for c in await rt.connections.all()}
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        money_condition(r.id, r.amount, r.currency, r.alert or "", names.get(r.connection_id)) for r in rows
    ]


def money_condition(
    refund_id: UUID, amount: int, currency: str, alert: str, connection: str | None
) -> Condition:
    return Condition(
        "money_truth",
        str(refund_id),
        f"refund {refund_id} ({amount} {currency} in minor units): {alert}; it waits in manual review",
        "critical",
        connection,
    )


async def breaks(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """Reconciliation breaks open longer than REFUNDWATCH_ALERT_BREAK_DAYS, per connection."""
    days = rt.settings.alert_break_days
    b = ReconciliationBreak.__table__.c
    query = (
        select(b.connection_id, func.count(), func.min(b.opened_at))
        .where(b.status == "open", b.opened_at <= now - dt.timedelta(days=days))
        .group_by(b.connection_id)
    )
    names = {c.id: c.name for c in await rt.connections.all()}
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found = []
    for connection_id, count, oldest in rows:
        name = names.get(connection_id) if connection_id is not None else None
        where = name or "no connection"
        found.append(
            Condition(
                "breaks",
                where,
                f"{count} reconciliation breaks on {where} open for more than {days:g} days "
                f"(the oldest since {oldest:%Y-%m-%d %H:%M} UTC)",
                "warning",
                name,
            )
        )
    return found


ENDPOINT_KIND = "webhook_endpoint"


def endpoint_condition(endpoint_id: UUID, url: str, reason: str) -> Condition:
    """An outgoing webhook endpoint the worker disabled. Its host only: a URL may carry a token."""
    host = urlsplit(url).hostname or "?"
    return Condition(
        ENDPOINT_KIND, str(endpoint_id), f"webhook endpoint on {host} disabled: {reason}", "warning"
    )


async def disabled_endpoints(rt: Runtime, now: dt.datetime) -> list[Condition]:
    """Endpoints the worker disabled after failing for hours (an admin's own disabling clears
    ``failing_since``, so it does not alert); the alert resolves when one is enabled again or deleted."""
    query = select(ENDPOINTS.c.id, ENDPOINTS.c.url, ENDPOINTS.c.disabled_reason).where(
        ENDPOINTS.c.enabled.is_(False), ENDPOINTS.c.failing_since.is_not(None)
    )
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [endpoint_condition(row.id, row.url, row.disabled_reason or "failing") for row in rows]


async def on_endpoint_disabled(rt: Runtime, notice: EndpointDisabled) -> None:
    """Raised as the worker disables the endpoint, not only at the next rule check."""
    condition = endpoint_condition(notice.endpoint_id, notice.url, notice.reason)
    await store.raise_alert(rt, condition.kind, condition.key, condition.summary, severity=condition.severity)


RULES: dict[str, Rule] = {
    "gateway": gateways,
    "success_rate": success_rate,
    "stuck": stuck,
    "money_truth": money_truth,
    "breaks": breaks,
    ENDPOINT_KIND: disabled_endpoints,
}


@dataclass(slots=True)
class Outcome:
    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.opened)} opened, {len(self.pending)} pending, {len(self.resolved)} resolved" + (
            f"; rules failed: {', '.join(self.failed_rules)}" if self.failed_rules else ""
        )


async def evaluate(rt: Runtime, now: dt.datetime | None = None) -> Outcome:
    """Check every rule once and bring the alerts in line. Safe to run on every worker at once: each
    change is atomic (alerts.store), so it is made, and told, once."""
    now = now or dt.datetime.now(dt.UTC)
    outcome = Outcome()
    wanted: dict[str, Condition] = {}
    checked: list[str] = []
    for kind, rule in RULES.items():
        try:
            conditions = await rule(rt, now)
        except Exception:
            log.warning(
                "alert rule %s could not be checked; its alerts stay as they are", kind, exc_info=True
            )
            outcome.failed_rules.append(kind)
            continue
        checked.append(kind)
        wanted.update((c.open_key, c) for c in conditions)
    live = select(ALERTS.c.id, ALERTS.c.open_key, ALERTS.c.state, ALERTS.c.since, ALERTS.c.summary).where(
        ALERTS.c.state.in_(store.LIVE), ALERTS.c.kind.in_(checked)
    )
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(live.order_by(ALERTS.c.open_key))).all()
    for row in rows:
        condition = wanted.pop(row.open_key, None)
        due = condition is not None and row.state == "pending" and now - row.since >= condition.hold
        if condition is not None and not due and condition.summary == row.summary:
            continue  # unchanged: no write transaction
        async with rt.db.session() as session:
            if condition is None:
                if await store.resolve_in(
                    session, row.id, "the condition cleared", now=now, settings=rt.settings
                ):
                    outcome.resolved.append(row.open_key)
            else:
                # Restated first: a pending alert that opens now (degraded while its hold lasted,
                # down now) is announced as it reads now, and its messages keep naming that. An open
                # one that gets worse (degraded, then down) is told again.
                if condition.summary != row.summary and await store.restate_in(
                    session, row.id, condition.summary, condition.severity, now=now, settings=rt.settings
                ):
                    outcome.escalated.append(row.open_key)
                if due and await store.promote_in(session, row.id, now=now, settings=rt.settings):
                    outcome.opened.append(row.open_key)
            await session.commit()
    for key in sorted(wanted):
        async with rt.db.session() as session:
            new = await store.open_in(session, wanted[key], now=now, settings=rt.settings)
            await session.commit()
        if new is not None:
            (outcome.pending if wanted[key].hold > dt.timedelta(0) else outcome.opened).append(key)
    if outcome.opened or outcome.escalated or outcome.resolved:
        signals.notice(ALERTS_CHANGED)
    return outcome
