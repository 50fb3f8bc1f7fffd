"""Which attempt a processor report is about.

One refund can reach the processor more than once: a refused attempt is retried under a new
idempotency key and becomes a new processor refund (re_1 failed, re_2 succeeded). Every earlier
attempt's key and processor refund id are kept (``refund_attempts``), so a late report about re_1
(a redelivered ``refund.failed``) is recognised and never moves re_2's refund. Such a report is still
recorded on the timeline; when it says money moved, a person is told (money truth first).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.alerts.store import DOUBLE_REFUND, Condition, open_in
from refundwatch.audit import actions
from refundwatch.audit.actions import WORKER
from refundwatch.audit.services import record
from refundwatch.db.models import Refund, RefundAttempt, RefundEvent
from refundwatch.gateways.base import Exchange, exchange_json
from refundwatch.refunds.services import apply, utcnow
from refundwatch.refunds.states import CONTRADICTED_BY_MONEY, MONEY_MOVED, Source, Trigger


def other_attempt(refund: Refund, *, key: str | None, gateway_refund_id: str | None) -> str | None:
    """Why a report naming ``key`` / ``gateway_refund_id`` is not about the refund's current attempt,
    or ``None`` when it is (or cannot be told apart: an older report with neither)."""
    if key is not None and key != refund.gateway_idempotency_key:
        return (
            f"about the attempt sent with key {key}, not the current attempt "
            f"(key {refund.gateway_idempotency_key})"
        )
    if gateway_refund_id and refund.gateway_refund_id and gateway_refund_id != refund.gateway_refund_id:
        return (
            f"about processor refund {gateway_refund_id}, not the current attempt's "
            f"{refund.gateway_refund_id}"
        )
    return None


async def earlier_attempt(
    session: AsyncSession, refund: Refund, *, key: str | None, gateway_refund_id: str | None
) -> str | None:
    """:func:`other_attempt`, and also a report naming an earlier attempt's processor refund id while
    the current attempt has none yet (it was just retried, or its answer was lost)."""
    other = other_attempt(refund, key=key, gateway_refund_id=gateway_refund_id)
    if other is not None or not gateway_refund_id or refund.gateway_refund_id:
        return other
    earlier = await session.scalar(
        select(RefundAttempt.idempotency_key).where(
            RefundAttempt.refund_id == refund.id, RefundAttempt.gateway_refund_id == gateway_refund_id
        )
    )
    if earlier is None:
        return None
    return f"about processor refund {gateway_refund_id} of an earlier attempt (key {earlier})"


async def refund_of_attempt(
    session: AsyncSession, connections: Sequence[object], gateway_refund_id: str
) -> Refund | None:
    """The refund an earlier attempt's processor refund id belongs to (reports without metadata), among
    the refunds of ``connections``."""
    found: Refund | None = await session.scalar(
        select(Refund)
        .join(RefundAttempt, RefundAttempt.refund_id == Refund.id)
        .where(Refund.connection_id.in_(connections), RefundAttempt.gateway_refund_id == gateway_refund_id)
        .with_for_update()
    )
    return found


async def record_stale(
    session: AsyncSession,
    refund: Refund,
    trigger: Trigger,
    *,
    source: Source,
    detail: str,
    exchange: Exchange | None = None,
) -> None:
    """A report about another attempt: on the timeline, never applied to this attempt. If it says the
    money moved, it is news a person must hear: where refundwatch had released the amount, the refund
    goes to manual review with its amount reserved again (the state machine's contradiction rule);
    otherwise it is an alert that the processor may have refunded twice."""
    now = utcnow()
    if trigger in MONEY_MOVED and refund.status in CONTRADICTED_BY_MONEY:
        await apply(session, refund, trigger, source=source, actor=WORKER, detail=detail, exchange=exchange)
        return
    if trigger in MONEY_MOVED:
        refund.alert = (
            f"an earlier attempt reports money moved: the processor may have refunded twice ({detail})"[:500]
        )
        refund.alert_at = now
        record(
            session,
            WORKER,
            actions.REFUND_ALERT,
            target_type="refund",
            target_id=str(refund.id),
            details={"alert": refund.alert},
            at=now,
        )
        summary = f"refund {refund.id} ({refund.amount} {refund.currency} in minor units): {refund.alert}"
        # No rule can tell when this is over: it stays open until a person resolves it (/admin/alerts).
        await open_in(session, Condition(DOUBLE_REFUND, str(refund.id), summary), now=now)
        note = " — ALERT: money moved for another attempt; a person must check for a double refund"
    else:
        note = " — ignored: it is not the attempt this refund tracks"
    refund.updated_at = now
    session.add(
        RefundEvent(
            refund_id=refund.id,
            at=now,
            status=refund.status,
            source=source.value,
            detail=detail + note,
            exchange=exchange_json(exchange),
        )
    )
