"""Alerts' lives, each change atomic in the database whatever runs it, and the messages they owe.

Every change is one conditional statement, so when several workers (or a worker and the web) see the
same thing at once exactly one of them makes the change and queues its messages:

- opening inserts with ``ON CONFLICT (open_key) DO NOTHING``: one live alert per key;
- a pending alert (its condition must last a while first) is promoted with ``WHERE state = 'pending'``;
- resolving updates ``WHERE state = 'open'`` (and clears ``open_key``, so the key may open again).

The messages (one per Apprise target) are rows written in the same transaction; alerts.sending claims
and sends them after commit, so a rolled-back change never tells anyone anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.alerts.targets import targets
from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.config import Settings, get_settings
from refundwatch.dashboard.signals import ALERTS as ALERTS_CHANGED
from refundwatch.dashboard.signals import signals
from refundwatch.db.tables import ALERT_DELIVERIES, ALERTS
from refundwatch.runtime import Runtime

SYSTEM = Actor("system", "alerts")
OPENED, ESCALATED, RESOLVED = "opened", "escalated", "resolved"
_RANK = {"warning": 1, "critical": 2}  # a rise in this order is told (escalated); a fall is not
LIVE = ("pending", "open")
# Raised where a report says an earlier attempt moved money too; resolved by a person, never by a rule.
DOUBLE_REFUND = "double_refund"
MANUAL_KINDS = (DOUBLE_REFUND,)


@dataclass(frozen=True, slots=True)
class Condition:
    """Something a person must hear about, as a rule (or the code that saw it) describes it."""

    kind: str
    key: str  # what it is about, unique within the kind: a connection's name, a refund id…
    summary: str
    severity: str = "critical"  # critical | warning
    connection: str | None = None
    hold: dt.timedelta = field(default=dt.timedelta(0))  # how long it must last before it alerts

    @property
    def open_key(self) -> str:
        return open_key(self.kind, self.key)


def open_key(kind: str, key: str) -> str:
    return f"{kind}:{key}"[:255]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def open_in(
    session: AsyncSession,
    condition: Condition,
    *,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> int | None:
    """In the caller's transaction: a new alert for ``condition`` (pending while its hold lasts), with
    its messages queued when it opens. ``None`` when one is already live for the key."""
    now = now or _now()
    state = "pending" if condition.hold > dt.timedelta(0) else "open"
    statement = (
        _insert(session)(ALERTS)
        .values(
            kind=condition.kind,
            key=condition.key[:255],
            open_key=condition.open_key,
            state=state,
            severity=condition.severity,
            connection=condition.connection,
            summary=condition.summary,
            announced=condition.summary if state == "open" else None,
            announced_severity=condition.severity if state == "open" else None,
            since=now,
            opened_at=now if state == "open" else None,
        )
        .on_conflict_do_nothing(index_elements=["open_key"])
        .returning(ALERTS.c.id)
    )
    alert_id: int | None = (await session.execute(statement)).scalar_one_or_none()
    if alert_id is not None and state == "open":
        await _announce(
            session, alert_id, OPENED, condition.kind, condition.key, condition.summary, now, settings
        )
    return alert_id


async def promote_in(
    session: AsyncSession, alert_id: int, *, now: dt.datetime, settings: Settings | None = None
) -> bool:
    """A pending alert whose condition lasted its hold opens: True for the one caller that opened it."""
    row = (
        await session.execute(
            update(ALERTS)
            .where(ALERTS.c.id == alert_id, ALERTS.c.state == "pending")
            .values(
                state="open", opened_at=now, announced=ALERTS.c.summary, announced_severity=ALERTS.c.severity
            )
            .returning(ALERTS.c.kind, ALERTS.c.key, ALERTS.c.summary)
        )
    ).first()
    if row is None:
        return False
    await _announce(session, alert_id, OPENED, row.kind, row.key, row.summary, now, settings)
    return True


async def resolve_in(
    session: AsyncSession,
    alert_id: int,
    resolution: str,
    *,
    now: dt.datetime,
    settings: Settings | None = None,
    actor: Actor = SYSTEM,
) -> bool:
    """The condition is gone. A pending alert is dropped (nobody was told); an open one resolves and
    its recovery messages are queued. True for the one caller that resolved an open alert."""
    dropped = await session.execute(
        delete(ALERTS).where(ALERTS.c.id == alert_id, ALERTS.c.state == "pending")
    )
    if dropped.rowcount:  # type: ignore[attr-defined]
        return False
    row = (
        await session.execute(
            update(ALERTS)
            .where(ALERTS.c.id == alert_id, ALERTS.c.state == "open")
            .values(state="resolved", open_key=None, resolved_at=now, resolution=resolution[:500])
            .returning(ALERTS.c.kind, ALERTS.c.key, ALERTS.c.summary)
        )
    ).first()
    if row is None:
        return False
    await _announce(
        session, alert_id, RESOLVED, row.kind, row.key, f"resolved: {resolution}", now, settings, actor=actor
    )
    return True


async def restate_in(
    session: AsyncSession,
    alert_id: int,
    summary: str,
    severity: str,
    *,
    now: dt.datetime,
    settings: Settings | None = None,
) -> bool:
    """A live alert's condition reads differently now (more stuck refunds, down after degraded): the
    dashboard shows it. An open alert whose severity rises (degraded, then down) is told again, as an
    escalation, and from then on its messages name that; otherwise no message is sent, and they keep
    naming what was announced. True for the one caller that escalated it."""
    escalating = [
        ALERTS.c.state == "open",
        ALERTS.c.severity.in_([name for name, rank in _RANK.items() if rank < _RANK.get(severity, 0)]),
    ]
    row = (
        await session.execute(
            update(ALERTS)
            .where(ALERTS.c.id == alert_id, *escalating)
            .values(summary=summary, severity=severity, announced=summary, announced_severity=severity)
            .returning(ALERTS.c.kind, ALERTS.c.key)
        )
    ).first()
    if row is not None:
        await _announce(session, alert_id, ESCALATED, row.kind, row.key, summary, now, settings)
        return True
    await session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id, ALERTS.c.state.in_(LIVE))
        .values(summary=summary, severity=severity)
    )
    return False


async def _announce(
    session: AsyncSession,
    alert_id: int,
    event: str,
    kind: str,
    key: str,
    summary: str,
    now: dt.datetime,
    settings: Settings | None,
    *,
    actor: Actor = SYSTEM,
) -> None:
    """Queue the event's message to every target and audit it, in the change's transaction."""
    settings = settings or get_settings()
    found = targets(settings.alert_url_list, settings.effective_secret_key)
    if found:
        await session.execute(
            insert(ALERT_DELIVERIES),
            [
                {
                    "alert_id": alert_id,
                    "event": event,
                    "target": target.fingerprint,
                    "target_label": target.label,
                    "status": "queued",
                    "attempts": 0,
                    "next_at": _now(),  # due at once, even when ``now`` is a rule's clock
                }
                for target in found
            ],
        )
    record(
        session,
        actor,
        {OPENED: actions.ALERT_OPENED, ESCALATED: actions.ALERT_ESCALATED}.get(event, actions.ALERT_RESOLVED),
        target_type="alert",
        target_id=str(alert_id),
        details={"kind": kind, "key": key, "summary": summary},
        at=now,
    )


# --- the public surface: raise or resolve an alert from anywhere ------------------------------------
async def raise_alert(
    rt: Runtime,
    kind: str,
    key: str,
    summary: str,
    *,
    severity: str = "critical",
    connection: str | None = None,
) -> bool:
    """Open an alert now, in its own transaction (for code that has none open, such as a webhook
    endpoint disabled after failing for hours). True if this call opened it; False while one is open
    for (kind, key) already: it is never told twice."""
    async with rt.db.session() as session:
        opened = await open_in(
            session, Condition(kind, key, summary, severity, connection), settings=rt.settings
        )
        await session.commit()
    if opened is not None:
        signals.notice(ALERTS_CHANGED)
    return opened is not None


async def resolve_alert(rt: Runtime, kind: str, key: str, resolution: str, *, actor: Actor = SYSTEM) -> bool:
    """Resolve the live alert for (kind, key), with a recovery message; False when none is open."""
    async with rt.db.session() as session:
        alert_id = await session.scalar(select(ALERTS.c.id).where(ALERTS.c.open_key == open_key(kind, key)))
        done = alert_id is not None and await resolve_in(
            session, alert_id, resolution, now=_now(), settings=rt.settings, actor=actor
        )
        await session.commit()
    if done:
        signals.notice(ALERTS_CHANGED)
    return done
