"""Taking due deliveries, sending them, and recording what happened.

Claiming is a lease: ``lease_until`` set by one UPDATE that picks what is due for an endpoint and
re-checks each row is still pending, due and not leased, so two workers never both take a delivery
(on PostgreSQL the pick locks its rows and skips those another worker is claiming, and a row claimed
meanwhile fails the re-check; SQLite's one writer takes turns). A worker that dies mid-send (even
SIGKILLed) leaves the lease to expire, and another worker sends the delivery again: at least once.
The lease value is also the claim's token: the outcome is written only while it still holds.

Per refund and endpoint the deliveries go strictly in order: one is due only when no earlier delivery
of that refund to that endpoint is still pending (sent or given up first), so one claim holds at most
one delivery per refund and its deliveries may be sent side by side. A failed delivery pushes its
pending successors' times to its own next attempt, so they are not looked at again until then.

The batch is the unit of the database work: one statement claims it, two reads render the bodies of
its first sends (``payload.render_many``), and the successes of many sends are recorded in one
transaction (:func:`record`). A failure is recorded on its own: it moves the refund's successors
and may disable the endpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx2
from sqlalchemy import (
    ColumnElement,
    and_,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from refundwatch.audit import actions
from refundwatch.audit.services import record as record_audit
from refundwatch.db.models import WebhookDelivery, WebhookEndpoint
from refundwatch.db.models._outgoing import FAILED, SUCCEEDED
from refundwatch.db.tables import DELIVERIES, DELIVERY_ATTEMPTS, ENDPOINTS
from refundwatch.lib.egress import AllowList
from refundwatch.outgoing import payload, signing
from refundwatch.outgoing.notices import EndpointDisabled
from refundwatch.outgoing.schedule import next_delay
from refundwatch.outgoing.sending import Attempt, post
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
# A literal, not a parameter: the partial indexes' predicate must match the query's on PostgreSQL.
PENDING: ColumnElement[str] = literal_column("'pending'")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    endpoint_id: UUID
    event_type: str
    refund_id: UUID | None
    event_id: int | None
    data: str | None
    occurred_at: dt.datetime
    body: str | None
    attempts: int
    lease: dt.datetime

    @property
    def message_id(self) -> str:
        return f"msg_{self.id}"

    def change(self) -> payload.Change:
        return payload.Change(
            self.id, self.event_type, self.occurred_at, self.refund_id, self.event_id, self.data
        )


@dataclass(frozen=True, slots=True)
class Signer:
    """An endpoint as a send needs it: where, and the secrets that sign (current first)."""

    id: UUID
    url: str
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sent:
    """One attempt made, not recorded yet."""

    claimed: Claimed
    attempt: Attempt
    body: str
    at: dt.datetime


def _claim(*, lock: bool) -> Any:
    # Parameter names other than the columns': an UPDATE reserves those for its SET clause.
    now = bindparam("c_now", type_=DELIVERIES.c.next_attempt_at.type)
    endpoint_id = bindparam("c_endpoint_id", type_=DELIVERIES.c.endpoint_id.type)
    free = (
        DELIVERIES.c.status == PENDING,
        DELIVERIES.c.next_attempt_at <= now,
        or_(DELIVERIES.c.lease_until.is_(None), DELIVERIES.c.lease_until < now),
    )
    earlier = aliased(WebhookDelivery)
    held = exists(
        select(earlier.id).where(
            earlier.refund_id == DELIVERIES.c.refund_id,
            earlier.endpoint_id == DELIVERIES.c.endpoint_id,
            earlier.id < DELIVERIES.c.id,
            earlier.status == PENDING,
        )
    )
    enabled = exists(select(ENDPOINTS.c.id).where(ENDPOINTS.c.id == endpoint_id, ENDPOINTS.c.enabled))
    picked = (
        select(DELIVERIES.c.id)
        .where(DELIVERIES.c.endpoint_id == endpoint_id, *free, ~held, enabled)
        .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
        .limit(bindparam("c_limit"))
    )
    claim = update(DELIVERIES).where(DELIVERIES.c.id.in_(picked), *free)
    if lock:
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for; those
        # picked are locked and re-checked against the pick's conditions when locked, so the UPDATE
        # needs no re-check of its own. The pick becomes an array, computed once, and the rows are
        # found by primary key alone: as ``IN (…)`` a locking subquery may be planned as a subplan
        # run again for every row the UPDATE scans, and with the conditions repeated (or joined to
        # a CTE) the worker's cached generic plan read the whole due index or table (50-150 ms per
        # claim at 100,000 pending deliveries).
        locked = func.array(picked.with_for_update(skip_locked=True, of=DELIVERIES).scalar_subquery())
        claim = update(DELIVERIES).where(DELIVERIES.c.id == any_(locked))
    return claim.values(lease_until=bindparam("c_lease", type_=DELIVERIES.c.lease_until.type)).returning(
        DELIVERIES.c.id,
        DELIVERIES.c.endpoint_id,
        DELIVERIES.c.event_type,
        DELIVERIES.c.refund_id,
        DELIVERIES.c.event_id,
        DELIVERIES.c.data,
        DELIVERIES.c.occurred_at,
        DELIVERIES.c.body,
        DELIVERIES.c.attempts,
        DELIVERIES.c.lease_until,
    )


_CLAIM_LOCKING, _CLAIM = _claim(lock=True), _claim(lock=False)
_CUSTOM_PLAN = text("SET LOCAL plan_cache_mode = force_custom_plan")
_ENABLED = select(ENDPOINTS.c.id).where(ENDPOINTS.c.enabled)


async def enabled_endpoints(rt: Runtime) -> list[UUID]:
    return [row.id for row in await rt.db.fetch_all(_ENABLED)]


async def claim_due(rt: Runtime, endpoint_id: UUID, limit: int, lease_seconds: float) -> list[Claimed]:
    """Lease up to ``limit`` deliveries to ``endpoint_id`` that may go now, oldest first, in one
    statement; they are this worker's until the lease ends. None while the endpoint is disabled."""
    now = utcnow()
    params = {
        "c_endpoint_id": endpoint_id,
        "c_now": now,
        "c_limit": limit,
        "c_lease": now + dt.timedelta(seconds=lease_seconds),
    }
    if rt.db.is_sqlite:
        rows = await rt.db.run_sqlite_write(lambda conn: conn.execute(_CLAIM, params).all())
    else:
        async with rt.db.write_connection() as conn:
            # Planned afresh each time: the generic plan a worker's connection caches after a few
            # claims, made while the table was small (a fresh database, a quiet endpoint), went on
            # scanning all of it once a backlog had filled it (100 ms per claim at 100,000 rows).
            await conn.execute(_CUSTOM_PLAN)
            rows = (await conn.execute(_CLAIM_LOCKING, params)).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


async def signers(rt: Runtime, ids: set[UUID]) -> dict[UUID, Signer]:
    """The endpoints' URLs and signing secrets (the previous one too while its overlap lasts)."""
    now = utcnow()
    async with rt.db.read_session() as session:
        rows = await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(ids)))
        found: dict[UUID, Signer] = {}
        for row in rows:
            keys = [rt.cipher.decrypt(row.secret_encrypted)]
            expires = row.previous_secret_expires_at
            if row.previous_secret_encrypted and expires is not None and expires > now:
                keys.append(rt.cipher.decrypt(row.previous_secret_encrypted))
            found[row.id] = Signer(row.id, row.url, tuple(keys))
    return found


async def bodies(rt: Runtime, claimed: Sequence[Claimed]) -> dict[int, bytes]:
    """What each claimed delivery sends, by id: the kept body, or the first send's, rendered now."""
    kept = {c.id: c.body.encode() for c in claimed if c.body is not None}
    return kept | await payload.render_many(rt, [c.change() for c in claimed if c.body is None])


async def send(
    rt: Runtime,
    client: httpx2.AsyncClient,
    claimed: Claimed,
    signer: Signer,
    body: bytes,
    allow: AllowList,
) -> Sent:
    """One attempt at a claimed delivery, signed now; nothing is written."""
    settings = rt.settings
    now = utcnow()
    attempt = await post(
        client,
        signer.url,
        body,
        signing.headers(claimed.message_id, body, signer.secrets, now),
        allow=allow,
        allow_http=settings.is_dev,
        timeout_seconds=settings.webhook_timeout_seconds,
        secrets=signer.secrets,
    )
    return Sent(claimed, attempt, body.decode(), now)


def _attempt_row(sent: Sent) -> dict[str, Any]:
    attempt = sent.attempt
    return {
        "delivery_id": sent.claimed.id,
        "at": sent.at,
        "ok": attempt.ok,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "latency_ms": attempt.latency_ms,
        "excerpt": attempt.excerpt,
    }


def _succeeded() -> Any:
    return (
        update(DELIVERIES)
        .where(
            DELIVERIES.c.id == bindparam("s_id", type_=DELIVERIES.c.id.type),
            DELIVERIES.c.lease_until == bindparam("s_lease", type_=DELIVERIES.c.lease_until.type),
        )
        .values(
            status=SUCCEEDED,
            finished_at=bindparam("s_now", type_=DELIVERIES.c.finished_at.type),
            attempts=bindparam("s_attempts", type_=DELIVERIES.c.attempts.type),
            lease_until=None,
            body=bindparam("s_body", type_=DELIVERIES.c.body.type),
        )
    )


_SUCCEEDED = _succeeded()
_RECOVERED = (
    update(ENDPOINTS)
    .where(ENDPOINTS.c.id.in_(bindparam("ids", expanding=True)), ENDPOINTS.c.failing_since.is_not(None))
    .values(failing_since=None)
)


async def record(rt: Runtime, sent: Sequence[Sent]) -> list[EndpointDisabled]:
    """Record attempts: every success in one transaction (attempts, deliveries, their endpoints no
    longer failing), each failure in its own (:func:`record_failure`); the endpoints that disabled."""
    ok = [s for s in sent if s.attempt.ok]
    if ok:
        now = utcnow()
        attempts = [_attempt_row(s) for s in ok]
        done = [
            {
                "s_id": s.claimed.id,
                "s_lease": s.claimed.lease,
                "s_now": now,
                "s_attempts": s.claimed.attempts + 1,
                "s_body": s.body,
            }
            for s in ok
        ]
        recovered = {"ids": sorted({s.claimed.endpoint_id for s in ok})}

        def write(conn: Connection) -> None:
            conn.execute(insert(DELIVERY_ATTEMPTS), attempts)
            conn.execute(_SUCCEEDED, done)
            conn.execute(_RECOVERED, recovered)

        if rt.db.is_sqlite:
            await rt.db.run_sqlite_write(write)
        else:
            async with rt.db.write_connection() as conn:
                await conn.execute(insert(DELIVERY_ATTEMPTS), attempts)
                await conn.execute(_SUCCEEDED, done)
                await conn.execute(_RECOVERED, recovered)
    notices = []
    for failed in (s for s in sent if not s.attempt.ok):
        notice = await record_failure(rt, failed)
        if notice is not None:
            notices.append(notice)
    return notices


async def record_failure(rt: Runtime, sent: Sent) -> EndpointDisabled | None:
    """A failed attempt, the delivery's next attempt (or its end) and the endpoint's state, in one
    transaction; a notice when that disabled the endpoint."""
    settings, now, claimed = rt.settings, utcnow(), sent.claimed
    attempts = claimed.attempts + 1
    mine = and_(DELIVERIES.c.id == claimed.id, DELIVERIES.c.lease_until == claimed.lease)
    values: dict[str, Any] = {"attempts": attempts, "lease_until": None, "body": sent.body}
    delay = next_delay(
        attempts,
        base=settings.webhook_retry_base_seconds,
        cap=settings.webhook_retry_max_seconds,
        max_attempts=settings.webhook_max_attempts,
    )
    if delay is None:
        values.update(status=FAILED, finished_at=now)
    else:
        values["next_attempt_at"] = now + dt.timedelta(seconds=delay)
    async with rt.db.session() as session:
        await session.execute(insert(DELIVERY_ATTEMPTS).values(**_attempt_row(sent)))
        await session.execute(update(DELIVERIES).where(mine).values(**values))
        if delay is not None and claimed.refund_id is not None:
            await _hold_successors(session, claimed, values["next_attempt_at"])
        notice = await _failed(rt, session, claimed.endpoint_id, now)
        await session.commit()
    return notice


async def _hold_successors(session: Any, claimed: Claimed, until: dt.datetime) -> None:
    await session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.refund_id == claimed.refund_id,
            DELIVERIES.c.endpoint_id == claimed.endpoint_id,
            DELIVERIES.c.id > claimed.id,
            DELIVERIES.c.status == PENDING,
            DELIVERIES.c.next_attempt_at < until,
        )
        .values(next_attempt_at=until)
    )


async def _failed(rt: Runtime, session: Any, endpoint_id: UUID, now: dt.datetime) -> EndpointDisabled | None:
    """Mark the endpoint failing since now (unless it already was); disable it once every attempt has
    failed for ``REFUNDWATCH_WEBHOOK_DISABLE_AFTER_HOURS``."""
    await session.execute(
        update(ENDPOINTS)
        .where(ENDPOINTS.c.id == endpoint_id)
        .values(failing_since=func.coalesce(ENDPOINTS.c.failing_since, now))
    )
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    hours = rt.settings.webhook_disable_after_hours
    if endpoint is None or not endpoint.enabled or endpoint.failing_since is None:
        return None
    if now - endpoint.failing_since < dt.timedelta(hours=hours):
        return None
    since = f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
    reason = f"every delivery attempt failed for {hours:g} hours (since {since})"
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
    record_audit(
        session,
        actions.WORKER,
        actions.WEBHOOK_ENDPOINT.format(source="worker", verb="disable"),
        target_type="webhook_endpoint",
        target_id=str(endpoint.id),
        details={"url": endpoint.url, "reason": reason},
        at=now,
    )
    return EndpointDisabled(endpoint.id, endpoint.url, reason, endpoint.failing_since, now)
