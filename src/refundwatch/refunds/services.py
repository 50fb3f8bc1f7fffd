"""Refund rules: intake, people's commands and every status change. Handlers, jobs and the CLI call these.

Each method commits before any side effect (enqueueing a job), so a crash can lose a job message
but never a refund: the worker's sweeper re-enqueues from the database.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import Payment, Refund, RefundEvent
from refundwatch.gateways.registry import supported_processors
from refundwatch.jobs import enqueue
from refundwatch.lib.crypto import sha256_hex
from refundwatch.lib.exceptions import Conflict, InvalidTransition, NotFound, ValidationFailed
from refundwatch.payments.services import MAX_AMOUNT, add_refunded, release, reserve
from refundwatch.refunds.schemas import RefundCreate
from refundwatch.refunds.states import FINAL, Outcome, Source, Status, Transition, Trigger, decide
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
    **changes: Any,
) -> Transition | Outcome:
    """Apply one trigger to a locked refund: status, balance, timeline event and audit entry."""
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
                    detail=f"{detail} (no change: refund is already {refund.status})",
                )
            )
        return decision
    for key, value in changes.items():
        setattr(refund, key, value)
    if decision.changed:
        await _move_money(session, refund, decision)
        refund.status = decision.after.value
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
    refund.updated_at = now
    session.add(
        RefundEvent(
            refund_id=refund.id,
            at=now,
            status=refund.status,
            source=source.value,
            detail=detail,
            from_status=decision.before.value if decision.changed else None,
        )
    )
    return decision


async def _move_money(session: AsyncSession, refund: Refund, move: Transition) -> None:
    if move.releases_amount:
        await release(session, refund.payment_id, refund.amount)
    if move.reserves_amount and not await reserve(session, refund.payment_id, refund.amount):
        raise ValidationFailed(
            "the payment no longer has enough refundable balance for this refund",
            code="amount_exceeds_refundable",
        )
    if move.after is Status.SUCCEEDED:
        await add_refunded(session, refund.payment_id, refund.amount)
    elif move.before is Status.SUCCEEDED:
        await add_refunded(session, refund.payment_id, -refund.amount)


def _fingerprint(body: RefundCreate) -> str:
    return sha256_hex(msgspec.json.encode(body, order="sorted"))


def _check_shape(body: RefundCreate) -> None:
    if isinstance(body.amount, bool) or body.amount <= 0 or body.amount > MAX_AMOUNT:
        raise ValidationFailed("amount must be a positive whole number of minor units", code="invalid_amount")
    if not body.payment_reference.strip() or len(body.payment_reference) > 255:
        raise ValidationFailed("payment_reference must be 1 to 255 characters")
    for name in ("order_id", "invoice_id"):
        value = getattr(body, name)
        if value is not None and len(value) > 255:
            raise ValidationFailed(f"{name} must be at most 255 characters")
    metadata = body.metadata or {}
    if len(metadata) > 20 or any(len(k) > 40 or not k or len(v) > 500 for k, v in metadata.items()):
        raise ValidationFailed("metadata: at most 20 keys, keys 1-40 characters, values up to 500")


@dataclass(frozen=True, slots=True)
class Intake:
    refund: Refund
    created: bool
    events: list[RefundEvent] | None = None  # known for a new refund; a replay reads them


async def _find_payment(session: AsyncSession, rt: Runtime, body: RefundCreate) -> Payment:
    query = select(Payment).where(Payment.payment_reference == body.payment_reference)
    if body.connection is not None:
        conn = await rt.connections.by_name(body.connection)
        if conn is None:
            raise ValidationFailed(f"unknown connection {body.connection!r}", code="unknown_connection")
        query = query.where(Payment.connection_id == conn.id)
    payments = (await session.scalars(query.limit(2))).all()
    if not payments:
        raise ValidationFailed(f"no payment {body.payment_reference!r} is registered", code="unknown_payment")
    if len(payments) > 1:
        raise ValidationFailed(
            "this payment_reference exists on several connections; name the connection",
            code="ambiguous_payment",
        )
    return payments[0]


async def _existing(session: AsyncSession, scope: str, key: str, fingerprint: str) -> Refund | None:
    refund = await session.scalar(
        select(Refund).where(Refund.client_scope == scope, Refund.idempotency_key == key)
    )
    if refund is not None and refund.request_fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return refund


async def _check_against_payment(rt: Runtime, body: RefundCreate, payment: Payment) -> None:
    conn = await rt.connections.by_id(payment.connection_id)
    if conn is None or conn.processor not in supported_processors():
        raise ValidationFailed(
            "this payment's connection has no supported processor", code="unsupported_processor"
        )
    if not conn.enabled:
        raise ValidationFailed(f"connection {conn.name!r} is disabled", code="connection_disabled")
    if body.currency.upper() != payment.currency:
        raise ValidationFailed(
            f"payment {payment.payment_reference} is in {payment.currency}, not {body.currency.upper()}",
            code="currency_mismatch",
        )
    for name in ("order_id", "invoice_id"):
        given, known = getattr(body, name), getattr(payment, name)
        if given is not None and known is not None and given != known:
            raise ValidationFailed(
                f"{name} {given!r} does not match the payment's {known!r}", code="reference_mismatch"
            )


async def create_refund(
    rt: Runtime, body: RefundCreate, *, scope: str, idempotency_key: str, actor: Actor, source: Source
) -> Intake:
    """Check a refund request against its payment, reserve the amount, and queue it (exactly once).

    The refund row is inserted before the amount is reserved: its unique (caller, key) index claims the
    idempotency key, so a concurrent twin waits on the key, not on the payment, and then replays.
    """
    fingerprint = _fingerprint(body)
    async with rt.db.session() as session:
        replay = await _existing(session, scope, idempotency_key, fingerprint)
        if replay is not None:
            return Intake(replay, created=False)
        _check_shape(body)
        payment = await _find_payment(session, rt, body)
        await _check_against_payment(rt, body, payment)
        threshold = rt.settings.approval_threshold_for(payment.currency)
        needs_approval = body.amount >= threshold
        refund = _new_refund(body, payment, scope, idempotency_key, fingerprint, actor, needs_approval)
        session.add(refund)
        try:
            await session.flush()
        except IntegrityError:
            return await _replay_after_race(session, scope, idempotency_key, fingerprint)
        if not await reserve(session, payment.id, body.amount):
            raise ValidationFailed(
                f"amount {body.amount} exceeds what is still refundable on {payment.payment_reference}",
                code="amount_exceeds_refundable",
                extra={"refundable_amount": await _refundable(session, payment.id)},
            )
        detail = f"requested by {actor.id}: {body.reason}"
        if needs_approval:
            detail += (
                f"; at or above the {threshold} {payment.currency} threshold, a second person must approve"
            )
        first = RefundEvent(
            refund_id=refund.id,
            at=refund.created_at,
            status=refund.status,
            source=source.value,
            detail=detail,
        )
        session.add(first)
        record(
            session,
            actor,
            actions.API_REFUND_CREATE,
            target_type="refund",
            target_id=str(refund.id),
            details={
                "payment": payment.payment_reference,
                "amount": body.amount,
                "currency": payment.currency,
                "reason": body.reason,
                "status": refund.status,
            },
            at=refund.created_at,
        )
        try:
            await session.commit()
        except IntegrityError:
            return await _replay_after_race(session, scope, idempotency_key, fingerprint)
    if not needs_approval:
        await enqueue_execution(rt, refund.id)
    return Intake(refund, created=True, events=[first])


async def _replay_after_race(session: AsyncSession, scope: str, key: str, fingerprint: str) -> Intake:
    """A concurrent request with the same key committed first: answer as a replay of it (or 409)."""
    await session.rollback()
    replay = await _existing(session, scope, key, fingerprint)
    if replay is None:
        raise Conflict("this request conflicted with a concurrent one; retry it", code="conflict")
    return Intake(replay, created=False)


async def _refundable(session: AsyncSession, payment_id: UUID) -> int:
    row = (
        await session.execute(select(Payment.amount, Payment.reserved_amount).where(Payment.id == payment_id))
    ).one()
    return max(int(row[0]) - int(row[1]), 0)


def _new_refund(
    body: RefundCreate,
    payment: Payment,
    scope: str,
    key: str,
    fingerprint: str,
    actor: Actor,
    needs_approval: bool,
) -> Refund:
    now = utcnow()
    refund = Refund(
        payment_id=payment.id,
        connection_id=payment.connection_id,
        payment_reference=payment.payment_reference,
        amount=body.amount,
        currency=payment.currency,
        reason=body.reason,
        order_id=body.order_id or payment.order_id,
        invoice_id=body.invoice_id or payment.invoice_id,
        metadata_=dict(body.metadata or {}),
        status=(Status.PENDING_APPROVAL if needs_approval else Status.QUEUED).value,
        attempts=0,
        client_scope=scope,
        idempotency_key=key,
        request_fingerprint=fingerprint,
        created_by=actor.id,
        created_at=now,
        updated_at=now,
    )
    refund.id = _new_id()
    refund.gateway_idempotency_key = gateway_key(refund.id)
    return refund


def _new_id() -> UUID:
    return uuid7()  # time-ordered, like every other id (advanced-alchemy[uuid])


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


async def command(
    rt: Runtime, refund_id: UUID, trigger: Trigger, *, actor: Actor, source: Source, reason: str | None = None
) -> Refund:
    """A person's or client's command: cancel, retry (approve and reject come with sign-in)."""
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        changes: dict[str, Any] = {}
        if trigger is Trigger.RETRY:
            changes = _retry_changes(refund)
        detail = f"{trigger.value} by {actor.id}" + (f": {reason}" if reason else "")
        await apply(session, refund, trigger, source=source, detail=detail, actor=actor, **changes)
        await session.commit()
    if trigger is Trigger.RETRY:
        await enqueue_execution(rt, refund.id)
    return refund


def _retry_changes(refund: Refund) -> dict[str, Any]:
    """A refund the processor refused gets a new idempotency key (the old one would replay the refusal);
    one whose outcome is unknown (manual review) keeps its key, so the processor cannot pay twice."""
    changes: dict[str, Any] = {
        "error_code": None,
        "error_message": None,
        "processor_code": None,
        "next_attempt_at": None,
        "attempts": 0,
    }
    if refund.status == Status.FAILED.value:
        generation = 1
        if "_r" in refund.gateway_idempotency_key:
            generation = int(refund.gateway_idempotency_key.rsplit("_r", 1)[1]) + 1
        changes["gateway_idempotency_key"] = gateway_key(refund.id, generation)
        changes["gateway_refund_id"] = None
        changes["gateway_status"] = None
    return changes


async def get_refund(rt: Runtime, refund_id: UUID) -> tuple[Refund, list[RefundEvent]]:
    async with rt.db.read_session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            raise NotFound(f"no refund {refund_id}", code="refund_not_found")
        events = (
            await session.scalars(
                select(RefundEvent).where(RefundEvent.refund_id == refund_id).order_by(RefundEvent.id)
            )
        ).all()
    return refund, list(events)
