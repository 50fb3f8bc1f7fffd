"""The common notification, applied where it is received: one compare-and-set, no job.

Most notifications confirm what refundwatch expects: the processor's refund for the current attempt
(same processor refund id, same key where the event names one), the amount and currency asked for,
moving a ``processing`` refund to ``succeeded`` or ``failed`` (or a ``succeeded`` one to
``reversed``). Such an event is applied right after it is stored, by ``refunds.cas`` (status,
timeline, audit, balance and rollup outbox) with the stored event marked processed in the same atomic
write. It is the same transition the worker's general path would make (``webhooks.services``); any
other event (an unknown refund, another attempt, a mismatch, a refund elsewhere than expected) is left
unprocessed for that path, which runs it under the row lock. A crash in between leaves the stored
event unprocessed, and the sweeper enqueues it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from refundwatch.audit.actions import processor_actor
from refundwatch.refunds import cas
from refundwatch.refunds.outcomes import TRIGGER_FOR
from refundwatch.refunds.states import Source, Status, Transition, Trigger, decide
from refundwatch.runtime import Runtime
from refundwatch.webhooks.storing import StoredEvent

log = logging.getLogger(__name__)

# The status a report is expected to find the refund in, by what it reports.
EXPECTED = {
    Trigger.SUCCEEDED: Status.PROCESSING,
    Trigger.FAILED: Status.PROCESSING,
    Trigger.REVERSED: Status.SUCCEEDED,
}
CONCURRENCY = 8  # a delivery's events at once: as many as the database pool serves without waiting


async def apply_stored(
    rt: Runtime, connection_id: UUID, connection_name: str, stored: Sequence[StoredEvent]
) -> list[UUID]:
    """Apply what can be applied at once; return the ids of the stored events left for the worker."""
    turns = asyncio.Semaphore(CONCURRENCY)

    async def one(item: StoredEvent) -> UUID | None:
        async with turns:
            try:
                done = await _apply_one(rt, connection_id, connection_name, item)
            except Exception:  # stored and committed: the worker's general path still applies it
                log.warning("fast path failed for webhook event %s", item.id, exc_info=True)
                done = False
        return None if done else item.id

    left = await asyncio.gather(*(one(item) for item in stored))
    return [event_id for event_id in left if event_id is not None]


async def _apply_one(rt: Runtime, connection_id: UUID, connection_name: str, item: StoredEvent) -> bool:
    event = item.event
    if event.status is None or not event.refund_id or not event.gateway_refund_id:
        return False
    trigger = TRIGGER_FOR[event.status]
    expected = EXPECTED.get(trigger)
    move = decide(expected, trigger) if expected is not None else None
    if expected is None or not isinstance(move, Transition):
        return False
    try:
        refund_id = UUID(event.refund_id)
    except ValueError:
        return False
    # What makes this the general path's "about the current attempt, as asked" case.
    equal: dict[str, Any] = {"connection_id": connection_id, "gateway_refund_id": event.gateway_refund_id}
    if event.idempotency_key is not None:
        equal["gateway_idempotency_key"] = event.idempotency_key
    if event.amount is not None:
        equal["amount"] = event.amount
    if event.currency is not None:
        equal["currency"] = event.currency.upper()
    fields: dict[str, Any] = {"lookup_before_send": False}
    if event.raw_status:
        fields["gateway_status"] = event.raw_status
    if event.failure_code is not None and trigger in (Trigger.FAILED, Trigger.REVERSED):
        fields.update(
            error_code=event.failure_code.value,
            error_message=(event.failure_message or "")[:500],
            processor_code=event.processor_code,
        )
    row = await cas.transition_if(
        rt.db,
        refund_id,
        expected,
        trigger,
        source=Source.WEBHOOK,
        actor=processor_actor(connection_name),
        detail=f"webhook {event.event_type} ({event.event_id}): processor status {event.raw_status}",
        returning=("status",),
        equal=equal,
        webhook=(item.id, f"{event.event_type}: {move.after.value} (moved)"),
        **fields,
    )
    return row is not None
