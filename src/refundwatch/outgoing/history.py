"""What operators see and do about deliveries: per endpoint or per refund, every attempt, and re-sending
one delivery or every delivery to an endpoint since a moment.

A re-send makes the delivery pending and due now, with the same ``webhook-id`` and body (signed afresh):
at least once, the receiver may see it twice. Re-sent deliveries of one refund still go in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from uuid import UUID

import msgspec
from sqlalchemy import func, select, update

from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from refundwatch.db.models._outgoing import PENDING
from refundwatch.lib.exceptions import NotFound
from refundwatch.outgoing.endpoints import audit_action
from refundwatch.runtime import Runtime

MAX_LIST = 200


class AttemptOut(msgspec.Struct):
    at: dt.datetime
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int
    excerpt: str | None


class DeliveryOut(msgspec.Struct):
    id: int
    endpoint_id: UUID
    event_type: str
    refund_id: UUID | None
    occurred_at: dt.datetime
    status: str  # pending | succeeded | failed (given up)
    attempts: int
    next_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None


def _out(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_type=row.event_type,
        refund_id=row.refund_id,
        occurred_at=row.occurred_at,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == PENDING else None,
        finished_at=row.finished_at,
    )


async def list_deliveries(
    rt: Runtime,
    *,
    endpoint_id: UUID | None = None,
    refund_id: UUID | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[DeliveryOut]:
    """Newest first; page with ``before_id`` (the last id of the page before)."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(min(limit, MAX_LIST))
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if refund_id is not None:
        query = query.where(WebhookDelivery.refund_id == refund_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    async with rt.db.read_session() as session:
        return [_out(row) for row in await session.scalars(query)]


async def list_attempts(rt: Runtime, delivery_id: int) -> list[AttemptOut]:
    """Every attempt at one delivery, oldest first."""
    async with rt.db.read_session() as session:
        rows = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
        return [_attempt(r) for r in rows]


def _attempt(row: WebhookAttempt) -> AttemptOut:
    return AttemptOut(row.at, row.ok, row.status_code, row.error, row.latency_ms, row.excerpt)


async def delivery_body(rt: Runtime, delivery_id: int) -> str | None:
    """The body as sent (``None`` before the first attempt)."""
    async with rt.db.read_session() as session:
        row = await session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}", code="webhook_delivery_not_found")
    return row.body


def _again(now: dt.datetime) -> dict[str, object]:
    return {"status": PENDING, "next_attempt_at": now, "finished_at": None, "lease_until": None}


async def resend(rt: Runtime, delivery_id: int, *, actor: Actor, source: str) -> DeliveryOut:
    """Send one delivery again, now (a pending one is simply made due now)."""
    now = dt.datetime.now(dt.UTC)
    async with rt.db.session() as session:
        row = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id}", code="webhook_delivery_not_found")
        if row.status != PENDING or row.lease_until is None or row.lease_until < now:
            for name, value in _again(now).items():
                setattr(row, name, value)
        record(
            session,
            actor,
            audit_action(source, "resend"),
            target_type="webhook_endpoint",
            target_id=str(row.endpoint_id),
            details={"delivery": delivery_id},
        )
        await session.commit()
    return _out(row)


async def resend_since(
    rt: Runtime, endpoint_id: UUID, since: dt.datetime, *, actor: Actor, source: str
) -> int:
    """Send again every delivery to ``endpoint_id`` of a change at or after ``since``; how many. Those
    being sent right now are left to finish."""
    now = dt.datetime.now(dt.UTC)
    async with rt.db.session() as session:
        if await session.get(WebhookEndpoint, endpoint_id) is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}", code="webhook_endpoint_not_found")
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.occurred_at >= since,
                (WebhookDelivery.status != PENDING)
                | WebhookDelivery.lease_until.is_(None)
                | (WebhookDelivery.lease_until < now),
            )
            .values(**_again(now))
            .execution_options(synchronize_session=False)
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        record(
            session,
            actor,
            audit_action(source, "resend"),
            target_type="webhook_endpoint",
            target_id=str(endpoint_id),
            details={"since": since.isoformat(), "deliveries": count},
        )
        await session.commit()
    return count


async def get_delivery(rt: Runtime, delivery_id: int) -> DeliveryOut:
    async with rt.db.read_session() as session:
        row = await session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id}", code="webhook_delivery_not_found")
    return _out(row)


async def last_attempts(rt: Runtime, delivery_ids: Sequence[int]) -> dict[int, AttemptOut]:
    """The latest attempt of each delivery named (those not tried yet are missing)."""
    if not delivery_ids:
        return {}
    latest = (
        select(func.max(WebhookAttempt.id))
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .group_by(WebhookAttempt.delivery_id)
    )
    async with rt.db.read_session() as session:
        rows = await session.scalars(select(WebhookAttempt).where(WebhookAttempt.id.in_(latest)))
        return {r.delivery_id: _attempt(r) for r in rows}


async def latest_delivery(rt: Runtime, endpoint_id: UUID) -> tuple[DeliveryOut, AttemptOut | None] | None:
    """An endpoint's newest delivery and its latest attempt: how it is doing, at a glance."""
    newest = await list_deliveries(rt, endpoint_id=endpoint_id, limit=1)
    if not newest:
        return None
    return newest[0], (await last_attempts(rt, [newest[0].id])).get(newest[0].id)
