"""Refunds whose connection an operator has disabled wait; they are neither sent nor failed.

An operator disables a connection (``enabled = false`` in ``refundwatch connections import``) to stop
traffic to a processor account: revoked keys, an incident, a migration. Refunds already queued for it
must not be sent, and must not be failed either: the amount is still owed to the customer. They wait,
attempts untouched, and go ahead once the connection is enabled again. A refund already
``submitting`` (its earlier outcome unknown) waits the same way; its re-send carries the same
idempotency key whenever it happens, so waiting never risks paying twice, and nothing is assumed.

The timeline says why once, not at every look; ``next_attempt_at`` keeps the sweeper from
re-enqueueing the refund while its job is waiting.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import select, update

from refundwatch.db.models import Refund, RefundEvent
from refundwatch.refunds.services import utcnow
from refundwatch.refunds.states import Source, Status
from refundwatch.runtime import Runtime

WAITING = (Status.QUEUED, Status.SUBMITTING)


def waiting_detail(connection_name: str) -> str:
    return f"waiting: connection {connection_name} is disabled"


async def disabled_connection_wait(rt: Runtime, refund_id: UUID) -> float | None:
    """Seconds this refund should wait because its connection is disabled (``None``: go ahead)."""
    if all(conn.enabled for conn in await rt.connections.all()):
        return None  # the common case costs no database read
    async with rt.db.read_session() as session:
        row = (
            await session.execute(select(Refund.connection_id, Refund.status).where(Refund.id == refund_id))
        ).first()
    if row is None or row.status not in WAITING:
        return None  # the execution path says what happened to it
    conn = await rt.connections.by_id(row.connection_id)
    if conn is None or conn.enabled:
        return None
    delay = rt.settings.disabled_connection_wait_seconds
    await _note_waiting(rt, refund_id, waiting_detail(conn.name), delay)
    return delay


async def _note_waiting(rt: Runtime, refund_id: UUID, detail: str, delay: float) -> None:
    now = utcnow()
    async with rt.db.session() as session:
        refund = await session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
        if refund is None or refund.status not in WAITING:
            return
        last = await session.scalar(
            select(RefundEvent.detail)
            .where(RefundEvent.refund_id == refund_id)
            .order_by(RefundEvent.id.desc())
            .limit(1)
        )
        if last != detail:
            event = RefundEvent(refund_id=refund_id, at=now, status=refund.status, detail=detail)
            event.source = Source.WORKER.value
            session.add(event)
        # Core update: waiting is not a change of the refund, so updated_at stays (a waiting refund
        # still shows as stuck on the dashboard, which it is).
        await session.execute(
            update(Refund)
            .where(Refund.id == refund_id)
            .values(next_attempt_at=now + dt.timedelta(seconds=delay), updated_at=Refund.updated_at)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
