"""What the processor said about an attempt, recorded: its answer, or the failure of the call.

Only an explicit refusal from the processor makes a refund ``failed``. When the request may have been
executed (timeout, reset, 5xx, an unreadable answer) the refund stays ``submitting`` with its key and
reservation, and the next attempt asks the processor first (refunds.lookup). A report about another
attempt never moves the current one (refunds.attempts).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from refundwatch.audit.actions import WORKER
from refundwatch.db.models import Refund
from refundwatch.gateways.base import UNKNOWN_OUTCOME_CODES as UNKNOWN_OUTCOME
from refundwatch.gateways.base import ErrorCode, Exchange, GatewayError, GatewayStatus, RefundResult
from refundwatch.refunds import attempts, cas
from refundwatch.refunds.outcome_log import log_refund
from refundwatch.refunds.services import apply, lock_refund, utcnow
from refundwatch.refunds.states import Source, Status, Transition, Trigger, ignore_reason
from refundwatch.runtime import Runtime

TRIGGER_FOR = {
    GatewayStatus.SUCCEEDED: Trigger.SUCCEEDED,
    GatewayStatus.PENDING: Trigger.ACCEPTED,
    GatewayStatus.FAILED: Trigger.FAILED,
    GatewayStatus.CANCELED: Trigger.FAILED,
    GatewayStatus.REVERSED: Trigger.REVERSED,
    GatewayStatus.REQUIRES_ACTION: Trigger.NEEDS_REVIEW,
}


# record_result's answer when a read was overtaken by a change to the refund (sync reads again).
CHANGED_WHILE_READ = "changed while the processor was being asked"


@dataclass(frozen=True, slots=True)
class RetryLater:
    """The call failed in a way worth retrying: run the job again after ``delay`` seconds."""

    delay: float


def backoff(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter; never sooner than the processor's Retry-After."""
    delay = min(cap, base * float(2 ** max(attempt - 1, 0)))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 5))
    return round(delay, 3)


def describe(exchange: Exchange | None) -> str:
    if exchange is None:
        return ""
    status = exchange.status_code if exchange.status_code is not None else "no answer"
    return f" [{exchange.method} {exchange.path} → {status} in {exchange.latency_ms} ms]"


async def failed_attempt(rt: Runtime, refund_id: UUID, attempt: int, err: GatewayError) -> str | RetryLater:
    """Record a call that produced no result. Only an explicit refusal from the processor becomes
    ``failed``; when the request may have been executed (timeout, reset, 5xx, unreadable answer) the
    refund stays ``submitting`` with its key and reservation, and the next attempt looks it up first."""
    settings = rt.settings
    where = describe(err.exchange)
    unknown = err.code in UNKNOWN_OUTCOME
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        if refund.status != Status.SUBMITTING or refund.attempts != attempt:
            return f"skipped: {refund.status}"
        fields: dict[str, Any] = {
            "error_code": err.code.value,
            "error_message": err.message[:500],
            "processor_code": err.processor_code,
        }
        if not unknown:
            fields["lookup_before_send"] = False  # the processor said it did not execute this request
        if (unknown or err.retryable) and attempt < settings.max_attempts:
            delay = backoff(attempt, settings.retry_base_seconds, settings.retry_max_seconds, err.retry_after)
            note = " — outcome unknown, the refund is looked up before any re-send" if unknown else ""
            await apply(
                session,
                refund,
                Trigger.SUBMIT,
                source=Source.WORKER,
                actor=WORKER,
                detail=f"attempt {attempt} failed: {err.code.value}{note}; retrying in {delay:.1f}s "
                f"with the same idempotency key{where}",
                next_attempt_at=utcnow() + dt.timedelta(seconds=delay),
                exchange=err.exchange,
                **fields,
            )
            await session.commit()
            return RetryLater(delay)
        if unknown:
            trigger = Trigger.NEEDS_REVIEW
            detail = f"gave up after {attempt} attempts, outcome unknown: {err.code.value}: {err.message}"
        elif err.retryable:
            trigger, detail = Trigger.NEEDS_REVIEW, f"gave up after {attempt} attempts: {err.code.value}"
        elif err.code is ErrorCode.RESPONSE_MISMATCH:
            trigger, detail = Trigger.NEEDS_REVIEW, f"processor's answer does not match: {err.message}"
        else:
            trigger, detail = Trigger.FAILED, f"processor refused: {err.code.value}: {err.message}"
        await apply(
            session,
            refund,
            trigger,
            source=Source.WORKER,
            actor=WORKER,
            detail=detail + where,
            exchange=err.exchange,
            **fields,
        )
        await session.commit()
    if refund.status == Status.MANUAL_REVIEW:  # failed ones are logged when folded (outcome_log)
        await log_refund(rt, refund)
    return f"{trigger.value}: {err.code.value}"


async def record_result(
    rt: Runtime,
    refund_id: UUID,
    result: RefundResult,
    *,
    source: Source,
    key: str | None,
    quiet: bool = False,
    via: str = "",
    unchanged_since: dt.datetime | None = None,
) -> str:
    """Move the refund to what the processor reported about the attempt sent with ``key``.

    A report about another attempt (an earlier key, another processor refund id) never moves this
    one: it is recorded on the timeline, with an alert when it says money moved.

    ``unchanged_since``: a read-back (sync) started when the refund's ``updated_at`` was this. If the
    refund changed meanwhile (a webhook, a person), the answer may be older than that change: a
    "pending" read before a "failed" webhook, applied after it, would claim money moved on a refund
    that failed. Nothing is applied and :data:`CHANGED_WHILE_READ` is returned, so the caller reads
    again: the processor's word is asked anew, never dropped.
    """
    trigger = TRIGGER_FOR[result.status]
    fields: dict[str, Any] = {"gateway_status": result.raw_status, "lookup_before_send": False}
    if result.gateway_refund_id:
        fields["gateway_refund_id"] = result.gateway_refund_id
    if result.failure_code is not None:
        fields.update(
            error_code=result.failure_code.value,
            error_message=(result.failure_message or "")[:500],
            processor_code=result.processor_code,
        )
    elif trigger in (Trigger.SUCCEEDED, Trigger.ACCEPTED):
        # An earlier attempt's error is history (kept on the timeline), not this refund's state.
        fields.update(error_code=None, error_message=None, processor_code=None)
    detail = f"{source.value}{via}: processor status {result.raw_status}{describe(result.exchange)}"
    # The common case: the answer to the call this worker just made, for a refund still submitting.
    equal = {"gateway_idempotency_key": key} if key is not None else None
    row = await cas.transition_if(
        rt.db,
        refund_id,
        Status.SUBMITTING,
        trigger,
        source=source,
        actor=WORKER,
        detail=detail,
        returning=("status",),
        equal=equal,
        exchange=result.exchange,
        **fields,
    )
    if row is not None:
        if row.status == Status.MANUAL_REVIEW:
            async with rt.db.read_session() as session:
                await log_refund(rt, await session.get(Refund, refund_id))
        return f"{row.status} (from {Status.SUBMITTING.value})"
    if not quiet and key is not None and result.gateway_refund_id:
        # The answer to this attempt, after its outcome was already recorded (the processor's
        # notification came first): on the timeline as ignored, without the row lock.
        same = {"gateway_idempotency_key": key, "gateway_refund_id": result.gateway_refund_id}
        status = await cas.record_ignored_if(
            rt.db, refund_id, trigger, source=source, detail=detail, equal=same, exchange=result.exchange
        )
        if status is not None:
            return f"{status} (ignored: {ignore_reason(status, trigger)})"
    async with rt.db.session() as session:
        refund = await lock_refund(session, refund_id)
        if unchanged_since is not None and refund.updated_at != unchanged_since:
            return CHANGED_WHILE_READ
        other = attempts.other_attempt(refund, key=key, gateway_refund_id=result.gateway_refund_id)
        if other is not None:
            await attempts.record_stale(
                session,
                refund,
                trigger,
                source=source,
                detail=f"{detail} — {other}",
                exchange=result.exchange,
            )
            await session.commit()
            return f"{refund.status} (report about another attempt)"
        decision = await apply(
            session,
            refund,
            trigger,
            source=source,
            actor=WORKER,
            detail=detail,
            event_always=not quiet,
            exchange=result.exchange,
            **fields,
        )
        await session.commit()
    if refund.status == Status.MANUAL_REVIEW and isinstance(decision, Transition) and decision.changed:
        await log_refund(rt, refund)
    return f"{refund.status} ({decision})"
