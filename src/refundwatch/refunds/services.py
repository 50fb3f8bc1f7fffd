"""Refund rules: people's commands and every status change (intake is in refunds.intake).

Each method commits before any side effect (enqueueing a job), so a crash can lose a job message
but never a refund: the worker's sweeper re-enqueues from the database.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NoReturn
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.alerts.rules import money_condition
from refundwatch.alerts.store import open_in
from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.dashboard.rollups import counted
from refundwatch.db.models import Connection, Payment, Refund, RefundAttempt, RefundEvent, RollupOutbox
from refundwatch.gateways.base import Exchange, exchange_json
from refundwatch.jobs import enqueue
from refundwatch.lib.exceptions import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from refundwatch.outgoing import outbox
from refundwatch.outgoing.events import refund_event_type
from refundwatch.payments.services import add_refunded, release, reserve
from refundwatch.refunds.states import (
    FINAL,
    Outcome,
    Source,
    Status,
    Transition,
    Trigger,
    decide,
    ignore_reason,
)
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
EXECUTE_JOB = "execute_refund"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def gateway_key(refund_id: UUID, generation: int = 0) -> str:
    return f"rw_{refund_id.hex}" if generation == 0 else f"rw_{refund_id.hex}_r{generation}"


async def lock_refund(session: AsyncSession, refund_id: UUID) -> Refund:
    """The refund row, locked for this transaction (SQLite: write sessions hold the database lock)."""
    refund = await session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    if refund is None:
        raise NotFound(f"no refund {refund_id}", code="refund_not_found")
    return refund


async def apply(
    session: AsyncSession,
    refund: Refund,
    trigger: Trigger,
    *,
    source: Source,
    detail: str,
    actor: Actor,
    event_always: bool = True,
    exchange: Exchange | None = None,
    **changes: Any,
) -> Transition | Outcome:
    """Apply one trigger to a locked refund: status, balance, timeline event, audit entry, and the
    outgoing webhooks' deliveries (outgoing.outbox)."""
    decision = decide(refund.status, trigger)
    if decision is Outcome.REFUSE:
        raise InvalidTransition(f"cannot {trigger.value} a refund that is {refund.status}")
    now = utcnow()
    if isinstance(decision, Outcome):
        if event_always:
            session.add(
                RefundEvent(
                    refund_id=refund.id,
                    at=now,
                    status=refund.status,
                    source=source.value,
                    detail=f"{detail} — ignored: {ignore_reason(refund.status, trigger)}",
                    exchange=exchange_json(exchange),
                )
            )
        return decision
    for key, value in changes.items():
        setattr(refund, key, value)
    if decision.contradiction:
        detail = (
            f"{detail} — CONTRADICTION: {decision.contradiction}; amount reserved again, a person must decide"
        )
        refund.alert = decision.contradiction[:500]
        refund.alert_at = now
    if decision.changed:
        over = await _move_money(session, refund, decision)
        if over:
            detail += "; the payment is now refunded beyond its captured amount"
            refund.alert = f"{refund.alert or ''}; the payment is now refunded beyond its captured amount"
        refund.status = decision.after.value
        if decision.contradiction:  # a person hears of it from this transaction on (alerts)
            await _raise_money_alert(session, refund, now)
        if decision.after is Status.PROCESSING or (
            decision.after is Status.SUCCEEDED and not refund.accepted_at
        ):
            refund.accepted_at = refund.accepted_at or now
        if decision.after in FINAL:
            refund.finalized_at = now
        elif decision.after is Status.QUEUED:
            refund.finalized_at = None
        record(
            session,
            actor,
            actions.REFUND_TRANSITION.format(source=source.value),
            target_type="refund",
            target_id=str(refund.id),
            details={
                "from": decision.before.value,
                "to": decision.after.value,
                "trigger": trigger.value,
                "detail": detail,
            },
            at=now,
        )
        if counted(decision):
            session.add(
                RollupOutbox(
                    refund_id=refund.id,
                    from_status=decision.before.value,
                    status=decision.after.value,
                    at=now,
                )
            )
    refund.updated_at = now
    event = RefundEvent(
        refund_id=refund.id,
        at=now,
        status=refund.status,
        source=source.value,
        detail=detail,
        from_status=decision.before.value if decision.changed else None,
        exchange=exchange_json(exchange),
    )
    session.add(event)
    event_type = refund_event_type(decision)
    if event_type is not None:  # the outgoing webhooks' deliveries need the timeline entry's id
        await session.flush()
        await session.execute(
            outbox.after_event(event_type),
            outbox.after_event_params(refund.id, event.id, refund.connection_id, now),
        )
    return decision


async def _raise_money_alert(session: AsyncSession, refund: Refund, now: dt.datetime) -> None:
    name = await session.scalar(select(Connection.name).where(Connection.id == refund.connection_id))
    condition = money_condition(refund.id, refund.amount, refund.currency, refund.alert or "", name)
    await open_in(session, condition, now=now)


async def _move_money(session: AsyncSession, refund: Refund, move: Transition) -> bool:
    """The payment's balances for this move. True when a contradicting report pushed the payment's
    reservations past its captured amount (money moved that refundwatch had given to another refund)."""
    over = False
    if move.releases_amount:
        await release(session, refund.payment_id, refund.amount)
    if move.reserves_amount and not await reserve(session, refund.payment_id, refund.amount):
        if not move.contradiction:
            left = await session.scalar(
                select(Payment.amount - Payment.reserved_amount).where(Payment.id == refund.payment_id)
            )
            raise ValidationFailed(
                "the payment no longer has enough refundable balance for this refund",
                code="amount_exceeds_refundable",
                extra={"refundable_amount": int(left or 0)},
            )
        # The processor says the money moved: the books follow it, whatever the balance says.
        await reserve(session, refund.payment_id, refund.amount, force=True)
        over = True
    if move.after is Status.SUCCEEDED:
        await add_refunded(session, refund.payment_id, refund.amount)
    elif move.before is Status.SUCCEEDED:
        await add_refunded(session, refund.payment_id, -refund.amount)
    return over


async def enqueue_execution(rt: Runtime, refund_id: UUID, *, defer_seconds: float | None = None) -> None:
    """Best effort: if Redis is down the refund stays queued and the sweeper enqueues it later."""
    if rt.redis is None:
        return
    try:
        await enqueue(
            rt.redis, EXECUTE_JOB, str(refund_id), job_id=str(refund_id), defer_seconds=defer_seconds
        )
    except Exception:
        log.warning("could not enqueue refund %s; the sweeper will pick it up", refund_id, exc_info=True)


class SelfApproval(PermissionDenied):
    code = "self_approval"


async def refuse_own(
    session: AsyncSession, refund: Refund, trigger: Trigger, actor: Actor, message: str
) -> NoReturn:
    """Four eyes: the refusal is audited, as a role's denial is (every denied access is in the log),
    then raised. ``session`` holds nothing else to commit."""
    record(
        session,
        actor,
        actions.ACCESS_DENIED,
        target_type="refund",
        target_id=str(refund.id),
        details={"reason": "self_approval", "action": trigger.value},
    )
    await session.commit()
    raise SelfApproval(message)


async def command(
    rt: Runtime,
    refund_id: UUID,
    trigger: Trigger,
    *,
    actor: Actor,
    source: Source,
    reason: str | None = None,
    by: str | None = None,
) -> Refund:
    """A person's or client's command: cancel, retry, approve, reject.

    ``by`` is the stable identity of whoever acts (``user:<sub>``, ``api_key:<id>``): approving or
    rejecting is refused to the refund's own creator, whichever way it is attempted (four eyes).
    """
    reason = (reason or "").strip() or None
    if trigger is Trigger.REJECT and not reason:
        raise ValidationFailed("give a reason for rejecting the refund", code="reason_required")
    if reason and len(reason) > 500:
        raise ValidationFailed("the reason must be at most 500 characters")
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        if trigger in (Trigger.APPROVE, Trigger.REJECT) and (by is None or by == refund.created_by):
            await refuse_own(
                session,
                refund,
                trigger,
                actor,
                "a refund needs a second person: you cannot approve or reject your own",
            )
        changes: dict[str, Any] = {}
        if trigger is Trigger.CLOSE:
            raise InvalidTransition(
                "a refund in manual review is closed with close_unexecuted, after the processor "
                "confirms that no refund exists",
                code="processor_confirmation_required",
            )
        if trigger is Trigger.RETRY:
            changes = _retry_changes(session, refund)
        detail = f"{trigger.value} by {actor.id}" + (f": {reason}" if reason else "")
        await apply(session, refund, trigger, source=source, detail=detail, actor=actor, **changes)
        await session.commit()
    if trigger in (Trigger.RETRY, Trigger.APPROVE):
        await enqueue_execution(rt, refund.id)
    return refund


def _retry_changes(session: AsyncSession, refund: Refund) -> dict[str, Any]:
    """A refund the processor refused gets a new idempotency key (the old one would replay the refusal),
    and its earlier attempt is kept so late news about it is recognised. One whose outcome is unknown
    (manual review) keeps its key, so the processor cannot pay twice, and is looked up before any send."""
    changes: dict[str, Any] = {
        "error_code": None,
        "error_message": None,
        "processor_code": None,
        "next_attempt_at": None,
        "attempts": 0,
    }
    if refund.status == Status.FAILED.value:
        session.add(
            RefundAttempt(
                refund_id=refund.id,
                idempotency_key=refund.gateway_idempotency_key,
                gateway_refund_id=refund.gateway_refund_id,
                gateway_status=refund.gateway_status,
                ended_at=utcnow(),
                outcome=Status.FAILED.value,
            )
        )
        generation = 1
        if "_r" in refund.gateway_idempotency_key:
            generation = int(refund.gateway_idempotency_key.rsplit("_r", 1)[1]) + 1
        changes["gateway_idempotency_key"] = gateway_key(refund.id, generation)
        changes["gateway_refund_id"] = None
        changes["gateway_status"] = None
        changes["key_sent_at"] = None
        changes["lookup_before_send"] = False
    else:
        changes["lookup_before_send"] = True
    return changes


async def get_refund(rt: Runtime, refund_id: UUID) -> tuple[Refund, list[RefundEvent]]:
    """The refund and its timeline as of one moment (two autocommit reads could show a status older
    than the last event when the refund moves in between)."""
    async with rt.db.snapshot_session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            raise NotFound(f"no refund {refund_id}", code="refund_not_found")
        events = (
            await session.scalars(
                select(RefundEvent).where(RefundEvent.refund_id == refund_id).order_by(RefundEvent.id)
            )
        ).all()
        session.expunge_all()  # the snapshot ends in a ROLLBACK, which would expire loaded objects
    return refund, list(events)
