"""Running refunds at the processor, as the worker does: exactly once, retried, synced, swept.

The order is always: lock the refund, record the attempt and commit, then call the processor with
the idempotency key stored on the refund, then lock again and record what came back (refunds.outcomes).
A crash at any point leaves the refund ``queued`` or ``submitting``; the sweeper re-enqueues it, and
the next attempt asks the processor first (refunds.lookup) before any re-send under the same key.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import or_, select

from refundwatch.audit.actions import WORKER
from refundwatch.connections.services import ConnectionInfo
from refundwatch.dashboard.signals import signals
from refundwatch.db.models import Refund, RefundEvent
from refundwatch.gateways.base import (
    ErrorCode,
    GatewayError,
    RefundRequest,
    read_refund,
)
from refundwatch.gateways.registry import get_gateway
from refundwatch.lib.exceptions import RateLimited
from refundwatch.refunds import cas, lookup, notified, pacing, processor_balance
from refundwatch.refunds.breaker import Breaker
from refundwatch.refunds.connection_wait import disabled_connection_wait
from refundwatch.refunds.outcome_log import log_refund
from refundwatch.refunds.outcomes import CHANGED_WHILE_READ, RetryLater, failed_attempt, record_result
from refundwatch.refunds.services import apply, enqueue_execution, lock_refund, utcnow
from refundwatch.refunds.states import Source, Status, Trigger
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
SYNC_READS = 3  # reads of one sync, when each answer was overtaken by a change to the refund

CLAIM_COLUMNS = (
    "connection_id",
    "payment_reference",
    "amount",
    "currency",
    "reason",
    "gateway_idempotency_key",
    "metadata_encrypted",
)


@dataclass(frozen=True, slots=True)
class Claim:
    """A refund marked ``submitting`` (committed) and what the processor call needs.

    ``look_up``: an earlier send's outcome is unknown (or the processor's refund id is known): ask the
    processor before sending anything, never re-send blind.
    """

    connection_id: UUID
    request: RefundRequest
    attempt: int
    look_up: bool = False
    gateway_refund_id: str | None = None
    key_sent_at: dt.datetime | None = None


async def execute_refund(rt: Runtime, refund_id: UUID) -> str | RetryLater:
    # A disabled connection: the refund waits, attempts untouched (refunds.connection_wait).
    if (held := await disabled_connection_wait(rt, refund_id)) is not None:
        return RetryLater(held)
    if rt.breaker is not None and rt.breaker.any_open:
        wait = await _circuit_wait(rt, rt.breaker, refund_id)
        if wait is not None:
            return RetryLater(wait)  # nothing claimed: the attempt count is untouched
    slots = await _pace(rt, refund_id)
    if not isinstance(slots, pacing.Slots):
        return RetryLater(slots)  # its connection's rate limit: nothing claimed, attempts untouched
    await slots.wait(0)
    claim = await _claim_first_attempt(rt, refund_id) or await _claim_locked(rt, refund_id)
    if isinstance(claim, str):
        return claim
    conn = await rt.connections.by_id(claim.connection_id)
    if conn is None:  # cannot happen (foreign key); the sweeper re-sends once it is back
        return "connection missing"
    if claim.look_up:
        settled = await lookup.before_resend(
            rt, conn, refund_id, claim, functools.partial(_report_call, rt, conn, None)
        )
        if not isinstance(settled, lookup.Resend):
            return settled
        await slots.wait(1)  # the look-up took the first slot
        if not await _mark_sent_after_lookup(rt, conn, refund_id, claim, settled.why):
            return "skipped: the refund moved while the processor was asked"
    else:
        # A key's first send: where the processor reports its own refundable balance, a refund above it
        # is refused here, never sent (refunds.processor_balance).
        refused = await processor_balance.refusal(rt, conn, claim.request)
        if refused is not None:
            return await failed_attempt(rt, refund_id, claim.attempt, refused)
        if processor_balance.reads_balance(conn):
            await slots.wait(1)  # the balance read took the first slot
    try:
        result = await get_gateway(conn.processor).create_refund(
            rt.require_http(), conn.credentials, claim.request
        )
    except GatewayError as err:
        _report_call(rt, conn, err)
        err = lookup.in_flight_unknown(conn.processor, err)
        return await failed_attempt(rt, refund_id, claim.attempt, err)
    _report_call(rt, conn, None)
    return await record_result(rt, refund_id, result, source=Source.WORKER, key=claim.request.idempotency_key)


FORCED_SYNC_WAIT = 5.0  # seconds a forced sync (a person, the API) waits for its rate-limit slot


async def _pace(rt: Runtime, refund_id: UUID) -> pacing.Slots | float:
    """The slots of this run's calls under its connection's rate limit, or the seconds to wait in the
    queue (the slots held for the refund meanwhile). Two calls where the send follows a look-up or a
    balance read."""
    if not any(conn.rate_limit_per_second for conn in await rt.connections.all()):
        return pacing.FREE  # the common case costs no database read
    async with rt.db.read_session() as session:
        row = (
            await session.execute(
                select(Refund.connection_id, Refund.lookup_before_send).where(Refund.id == refund_id)
            )
        ).first()
    conn = await rt.connections.by_id(row.connection_id) if row is not None else None
    if conn is None or not conn.rate_limit_per_second:
        return pacing.FREE
    calls = 2 if row is not None and (row.lookup_before_send or processor_balance.reads_balance(conn)) else 1
    return await pacing.reserve(rt, conn, calls, held_for=refund_id)


async def _circuit_wait(rt: Runtime, breaker: Breaker, refund_id: UUID) -> float | None:
    """How long this refund should wait because its processor is down (``None``: go ahead)."""
    async with rt.db.read_session() as session:
        connection_id = await session.scalar(select(Refund.connection_id).where(Refund.id == refund_id))
    if connection_id is None or not breaker.is_open(connection_id):
        return None
    conn = await rt.connections.by_id(connection_id)
    if conn is None:
        return None

    async def probe() -> bool:
        check = await get_gateway(conn.processor).health_check(rt.require_http(), conn.credentials)
        return check.ok

    return await breaker.wait_for(connection_id, probe)


# Answers that say the processor itself is unreachable or refusing us, rather than this refund.
UNAVAILABLE = frozenset(
    {ErrorCode.GATEWAY_UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.CONNECTION_ERROR, ErrorCode.AUTH_FAILED}
)


def _report_call(rt: Runtime, conn: ConnectionInfo, err: GatewayError | None) -> None:
    """Live calls feed the circuit breaker and the uptime panel's current state."""
    ok = err is None or err.code not in UNAVAILABLE
    if rt.breaker is not None:
        rt.breaker.record(conn.id, ok=ok, name=conn.name)
    if ok or err is None:
        signals.gateway_call(conn.name, ok=True)
    else:
        signals.gateway_call(conn.name, ok=False, code=err.code.value, message=err.message)


def _request(refund_id: UUID, values: Any) -> RefundRequest:
    return RefundRequest(
        refund_id=str(refund_id),
        payment_reference=values["payment_reference"],
        amount=values["amount"],
        currency=values["currency"],
        reason=values["reason"],
        idempotency_key=values["gateway_idempotency_key"],
        metadata={k: str(v) for k, v in (values["metadata_encrypted"] or {}).items()},
    )


async def _claim_first_attempt(rt: Runtime, refund_id: UUID) -> Claim | None:
    """The common case in one compare-and-set: a queued refund that was never sent.

    The claim marks the send's outcome unknown (``lookup_before_send``) until an answer is recorded,
    so a crash or a killed job between here and the answer leads to a look-up, never a blind re-send.
    """
    now = utcnow()
    row = await cas.transition_if(
        rt.db,
        refund_id,
        Status.QUEUED,
        Trigger.SUBMIT,
        source=Source.WORKER,
        actor=WORKER,
        detail="attempt 1: sending the refund to the processor",
        returning=CLAIM_COLUMNS,
        equal={"attempts": 0, "lookup_before_send": False},
        if_null={"submitted_at": now, "key_sent_at": now},
        attempts=1,
        next_attempt_at=None,
        lookup_before_send=True,
    )
    if row is None:
        return None
    values = row._mapping
    return Claim(connection_id=values["connection_id"], request=_request(refund_id, values), attempt=1)


async def _claim_locked(rt: Runtime, refund_id: UUID) -> Claim | str:
    """Any other attempt (a retry, or a re-send after an unknown outcome), under the row lock.

    Attempts are counted here, when claimed, not when an answer comes back: a job that arq kills
    mid-call still used one, so no path can send more than ``max_attempts`` times.
    """
    async with rt.db.session() as session:
        refund = await session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
        if refund is None:
            return "missing"
        if refund.status not in (Status.QUEUED, Status.SUBMITTING):
            return f"skipped: {refund.status}"
        attempt = refund.attempts + 1
        if attempt > rt.settings.max_attempts:
            await apply(
                session,
                refund,
                Trigger.NEEDS_REVIEW,
                source=Source.WORKER,
                actor=WORKER,
                detail=f"gave up after {refund.attempts} attempts: the outcome of the last one is unknown "
                "(the key and the reservation are kept; retry looks the refund up first)",
                next_attempt_at=None,
            )
            await session.commit()
            await log_refund(rt, refund)
            return "manual_review: attempts exhausted"
        look_up = bool(refund.lookup_before_send or refund.gateway_refund_id)
        if look_up:
            detail = (
                f"attempt {attempt}: asking the processor where the refund stands before any re-send "
                "(the last outcome is unknown)"
            )
        else:
            detail = f"attempt {attempt}: sending the refund to the processor"
        now = utcnow()
        await apply(
            session,
            refund,
            Trigger.SUBMIT,
            source=Source.WORKER,
            actor=WORKER,
            detail=detail,
            attempts=attempt,
            submitted_at=refund.submitted_at or now,
            key_sent_at=refund.key_sent_at or (None if look_up else now),
            next_attempt_at=None,
            lookup_before_send=True,
        )
        claim = Claim(
            connection_id=refund.connection_id,
            request=RefundRequest(
                refund_id=str(refund.id),
                payment_reference=refund.payment_reference,
                amount=refund.amount,
                currency=refund.currency,
                reason=refund.reason,
                idempotency_key=refund.gateway_idempotency_key,
                metadata={k: str(v) for k, v in (refund.metadata_ or {}).items()},
            ),
            attempt=attempt,
            look_up=look_up,
            gateway_refund_id=refund.gateway_refund_id,
            key_sent_at=refund.key_sent_at,
        )
        await session.commit()  # the attempt and its key are durable before the processor hears of it
    return claim


async def _mark_sent_after_lookup(
    rt: Runtime, conn: ConnectionInfo, refund_id: UUID, claim: Claim, why: str
) -> bool:
    """The refund is about to go out (again) under its key, for the reason ``why``, unless it moved
    meanwhile (a webhook). A key the processor had forgotten starts its retention afresh."""
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        if refund.status != Status.SUBMITTING or refund.attempts != claim.attempt:
            return False
        fresh = not lookup.key_remembered(conn.processor, claim.key_sent_at)
        refund.key_sent_at = utcnow() if fresh else refund.key_sent_at
        session.add(
            RefundEvent(
                refund_id=refund.id,
                at=utcnow(),
                status=refund.status,
                source=Source.WORKER.value,
                detail=f"attempt {claim.attempt}: {why}; refund sent",
            )
        )
        await session.commit()
    return True


async def sync_refund(
    rt: Runtime, refund_id: UUID, *, source: Source = Source.SYNC, forced: bool = False
) -> str:
    """Ask the processor where a refund stands. Allowed even for refunds that look final.

    An answer overtaken by a change to the refund while it was on its way (a webhook, a person) is
    not applied: the processor is asked again, up to :data:`SYNC_READS` times in all, then the next
    round asks."""
    for _ in range(SYNC_READS):
        outcome = await _read_back(rt, refund_id, source=source, forced=forced)
        if outcome != CHANGED_WHILE_READ:
            return outcome
    return f"not applied: the refund {CHANGED_WHILE_READ}, {SYNC_READS} times"


async def _read_back(rt: Runtime, refund_id: UUID, *, source: Source, forced: bool) -> str:
    async with rt.db.read_session() as session:
        refund = await session.get(Refund, refund_id)
        if refund is None:
            return "missing"
        gateway_refund_id, connection_id, status, key, payment_reference, changed_at = (
            refund.gateway_refund_id,
            refund.connection_id,
            refund.status,
            refund.gateway_idempotency_key,
            refund.payment_reference,
            refund.updated_at,
        )
    if status in (Status.QUEUED, Status.SUBMITTING):
        await enqueue_execution(rt, refund_id)  # re-sending with the same key is how these resolve
        return "execution re-enqueued"
    if not gateway_refund_id:
        return "nothing to sync: the processor never gave this refund an id"
    conn = await rt.connections.by_id(connection_id)
    if conn is None:
        return "connection missing"
    gateway = get_gateway(conn.processor)
    if not gateway.capabilities.reads_refunds:  # only its notifications can settle the refund
        outcome = await notified.settle_overdue(rt, refund_id, conn.processor, conn.name)
        if forced:
            raise notified.cannot_ask(conn.processor)
        return outcome
    slots = await pacing.reserve(rt, conn, inline=FORCED_SYNC_WAIT if forced else pacing.MAX_INLINE_WAIT)
    if not isinstance(slots, pacing.Slots):
        if forced:
            raise RateLimited(f"{conn.name} is at its rate limit: ask again in a moment", slots)
        return "sync later: the connection's rate limit has no slot free now"  # the next round asks
    await slots.wait(0)
    try:
        result = await read_refund(
            gateway,
            rt.require_http(),
            conn.credentials,
            gateway_refund_id,
            payment_reference=payment_reference,
        )
    except GatewayError as err:
        log.info("sync of %s failed: %s", refund_id, err.code)
        return f"sync failed: {err.code.value}"
    return await record_result(
        rt,
        refund_id,
        result,
        source=source,
        key=key,
        quiet=not forced,
        via=" (read back)",
        unchanged_since=changed_at,
    )


async def stranded(rt: Runtime, *, grace_seconds: int, limit: int = 1000) -> list[UUID]:
    """Refunds that should be moving but may have lost their job (crash, Redis restart)."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=grace_seconds)
    async with rt.db.read_session() as session:
        rows = await session.scalars(
            select(Refund.id)
            .where(
                Refund.status.in_([Status.QUEUED, Status.SUBMITTING]),
                Refund.updated_at <= cutoff,
                or_(Refund.next_attempt_at.is_(None), Refund.next_attempt_at <= now),
            )
            .order_by(Refund.updated_at)
            .limit(limit)
        )
        return list(rows)
