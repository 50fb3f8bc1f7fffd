"""Sending the queued alert messages through Apprise, after commit, each exactly once per target.

A worker claims due messages in one conditional UPDATE (``status`` and ``next_at`` rechecked on each
row), so however many workers run, each message has one sender at a time. The claim is a lease: a
worker that dies mid-send leaves the message to be claimed again once the lease lapses. Failures are
retried with backoff, ``REFUNDWATCH_ALERT_SEND_ATTEMPTS`` times in all; every outcome is recorded on
the message. Apprise runs its blocking transports (SMTP, requests) on its own threads and each send
is bounded by ``REFUNDWATCH_ALERT_SEND_TIMEOUT_SECONDS``: a dead target never holds the event loop,
and this job is separate from refund execution.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import apprise
from sqlalchemy import exists, select, update

from refundwatch.alerts.store import ESCALATED, OPENED
from refundwatch.alerts.targets import Target, targets
from refundwatch.db.tables import ALERT_DELIVERIES, ALERTS
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
D = ALERT_DELIVERIES.c
BUSY = ("queued", "sending")
BATCH = 50


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    alert_id: int
    event: str
    target: str
    target_label: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    notify_type: str


def retry_delay(attempts: int) -> dt.timedelta:
    """15 s, 1 min, 4 min, then every 15 min."""
    return dt.timedelta(seconds=min(900, 15 * 4 ** max(attempts - 1, 0)))


async def deliver_due(rt: Runtime, *, now: dt.datetime | None = None) -> int:
    """Claim, send and record the due messages; returns how many were sent."""
    now = now or dt.datetime.now(dt.UTC)
    claimed = await _claim(rt, now)
    if not claimed:
        return 0
    messages = await _messages(rt, {c.alert_id for c in claimed})
    known = {t.fingerprint: t for t in targets(rt.settings.alert_url_list, rt.settings.effective_secret_key)}
    results = await asyncio.gather(
        *(_send(rt, known.get(c.target), messages[c.alert_id, c.event]) for c in claimed)
    )
    await _record(rt, claimed, results, dt.datetime.now(dt.UTC))
    return sum(1 for error in results if error is None)


async def _claim(rt: Runtime, now: dt.datetime) -> list[Claimed]:
    earlier = ALERT_DELIVERIES.alias("earlier")
    # A message waits for the earlier ones of its alert to the same target: "resolved" never arrives
    # before "opened".
    due = (
        select(D.id)
        .where(
            D.status.in_(BUSY),
            D.next_at <= now,
            ~exists().where(
                earlier.c.alert_id == D.alert_id,
                earlier.c.target == D.target,
                earlier.c.id < D.id,
                earlier.c.status.in_(BUSY),
            ),
        )
        .order_by(D.id)
        .limit(BATCH)
    )
    lease = dt.timedelta(seconds=rt.settings.alert_send_timeout_seconds * 2 + 30)
    claim = (
        update(ALERT_DELIVERIES)
        .where(D.id.in_(due.scalar_subquery()), D.status.in_(BUSY), D.next_at <= now)
        .values(status="sending", attempts=D.attempts + 1, next_at=now + lease)
        .returning(D.id, D.alert_id, D.event, D.target, D.target_label, D.attempts)
    )
    async with rt.db.session() as session:
        rows = (await session.execute(claim)).all()
        await session.commit()  # claimed before anything is sent
    return [Claimed(*row) for row in rows]


async def _messages(rt: Runtime, alert_ids: set[int]) -> dict[tuple[int, str], Message]:
    query = select(
        ALERTS.c.id,
        ALERTS.c.kind,
        ALERTS.c.severity,
        ALERTS.c.summary,
        ALERTS.c.announced,
        ALERTS.c.announced_severity,
        ALERTS.c.opened_at,
        ALERTS.c.resolved_at,
        ALERTS.c.resolution,
    ).where(ALERTS.c.id.in_(alert_ids))
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    link = f"{rt.settings.base_url.rstrip('/')}/admin/alerts"
    found = {}
    for row in rows:
        # Both messages name what was announced: the summary follows the condition while the alert is
        # live (a gateway down, then degraded), and a recovery must match the message people got.
        told = row.announced or row.summary  # alerts opened before 0021 have none
        severity = row.announced_severity or row.severity  # as told, not as it reads now
        opened = f"[refundwatch] {severity.upper()}: {told}"[:250]
        found[row.id, OPENED] = Message(
            opened,
            f"{told}\n\nOpened {row.opened_at:%Y-%m-%d %H:%M:%S} UTC ({row.kind}).\nAlert history: {link}",
            apprise.NotifyType.FAILURE if severity == "critical" else apprise.NotifyType.WARNING,
        )
        found[row.id, ESCALATED] = Message(
            f"[refundwatch] ESCALATED to {severity.upper()}: {told}"[:250],
            f"{told}\n\nIt got worse after it opened at {row.opened_at:%Y-%m-%d %H:%M:%S} UTC ({row.kind})."
            f"\nAlert history: {link}",
            apprise.NotifyType.FAILURE if severity == "critical" else apprise.NotifyType.WARNING,
        )
        later = "" if row.summary == told else f"\nLast seen before it cleared: {row.summary}"
        found[row.id, "resolved"] = Message(
            f"[refundwatch] RESOLVED: {told}"[:250],
            f"Resolved at {row.resolved_at or row.opened_at:%Y-%m-%d %H:%M:%S} UTC: {row.resolution or ''}.\n"
            f"It was: {told}{later}\n\nAlert history: {link}",
            apprise.NotifyType.SUCCESS,
        )
    return found


async def _send(rt: Runtime, target: Target | None, message: Message) -> str | None:
    """None when the target took the message, otherwise why not (never the URL: it holds tokens)."""
    if target is None:
        return "the target is no longer in REFUNDWATCH_ALERT_URLS"
    timeout = rt.settings.alert_send_timeout_seconds
    sender = apprise.Apprise()
    if not sender.add(target.url):
        return "the target's URL is not a valid Apprise URL"
    try:
        async with asyncio.timeout(timeout + 5):  # Apprise's own deadline first; this one if it hangs
            result = await sender.async_notify(
                body=message.body, title=message.title, notify_type=message.notify_type, timeout=timeout
            )
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - a transport's failure is this message's outcome
        return f"could not send: {exc.__class__.__name__}"
    return None if result else f"the target did not accept it ({result.status.name.lower()})"


async def _record(rt: Runtime, claimed: list[Claimed], results: list[str | None], now: dt.datetime) -> None:
    """Each outcome, only on the claim it belongs to (a lapsed claim taken by another worker is theirs)."""
    limit = rt.settings.alert_send_attempts
    async with rt.db.session() as session:
        for item, error in zip(claimed, results, strict=True):
            if error is None:
                values: dict[str, object] = {"status": "sent", "sent_at": now, "error": None}
            elif item.attempts >= limit:
                values = {"status": "failed", "error": error[:255]}
            else:
                values = {
                    "status": "queued",
                    "next_at": now + retry_delay(item.attempts),
                    "error": error[:255],
                }
            if error is not None:
                log.warning(
                    "alert %s: the %s message to target %s failed (attempt %d of %d): %s",
                    item.alert_id,
                    item.event,
                    item.target_label,
                    item.attempts,
                    limit,
                    error,
                )
            await session.execute(
                update(ALERT_DELIVERIES)
                .where(D.id == item.id, D.status == "sending", D.attempts == item.attempts)
                .values(**values)
            )
        await session.commit()
