"""The common notification, applied where it is received: one compare-and-set, no job.

Most notifications confirm what refundwatch expects: the processor's refund for the current attempt
(same processor refund id, same key where the event names one), the amount and currency asked for,
moving a ``processing`` refund to ``succeeded`` or ``failed`` (or a ``succeeded`` one to
``reversed``). Such an event is applied as it is received, by ``refunds.cas`` (status, timeline,
audit, balance and rollup outbox), atomically with storing it as processed: on PostgreSQL in one
statement that also stores the event (and moves nothing if the event was stored before); on SQLite
in the delivery's one write transaction, after the events are stored. It is the same transition the
worker's general path would make (``webhooks.services``); any other event (an unknown refund,
another attempt, a mismatch, a refund elsewhere than expected) is stored unprocessed for that path,
which runs it under the row lock. Nothing is acknowledged before every event is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from refundwatch.audit.actions import processor_actor
from refundwatch.dashboard.signals import signals
from refundwatch.gateways.base import WebhookEvent
from refundwatch.refunds import cas
from refundwatch.refunds.outcomes import TRIGGER_FOR
from refundwatch.refunds.states import Source, Status, Transition, Trigger, decide
from refundwatch.runtime import Runtime
from refundwatch.webhooks import storing
from refundwatch.webhooks.storing import NewRow

log = logging.getLogger(__name__)

# The status a report is expected to find the refund in, by what it reports.
EXPECTED = {
    Trigger.SUCCEEDED: Status.PROCESSING,
    Trigger.FAILED: Status.PROCESSING,
    Trigger.REVERSED: Status.SUCCEEDED,
}
CONCURRENCY = 8  # a delivery's events at once on PostgreSQL: about what the pool serves without waiting


def report_detail(event: WebhookEvent) -> str:
    """The timeline's words for a processor report, the same on both paths."""
    return f"webhook {event.event_type} ({event.event_id}): processor status {event.raw_status}"


def report_fields(event: WebhookEvent, trigger: Trigger) -> dict[str, Any]:
    """The refund's columns a report about its current attempt sets, on both paths."""
    fields: dict[str, Any] = {"lookup_before_send": False}  # the processor has spoken about this attempt
    if event.raw_status:
        fields["gateway_status"] = event.raw_status
    if event.failure_code is not None and trigger in (Trigger.FAILED, Trigger.REVERSED):
        fields.update(
            error_code=event.failure_code.value,
            error_message=(event.failure_message or "")[:500],
            processor_code=event.processor_code,
        )
    return fields


def _prepare(connection_id: UUID, connection_name: str, new: NewRow, *, stored: bool) -> cas.Prepared | None:
    """The transition ``new`` reports, if it is the common confirming case (else ``None``).
    ``stored``: the event is already stored (mark it processed) rather than stored with it."""
    event = new.event
    if event.status is None or not event.refund_id or not event.gateway_refund_id:
        return None
    trigger = TRIGGER_FOR[event.status]
    expected = EXPECTED.get(trigger)
    move = decide(expected, trigger) if expected is not None else None
    if expected is None or not isinstance(move, Transition):
        return None
    try:
        refund_id = UUID(event.refund_id)
    except ValueError:
        return None
    # What makes this the general path's "about the current attempt, as asked" case.
    equal: dict[str, Any] = {"connection_id": connection_id, "gateway_refund_id": event.gateway_refund_id}
    if event.idempotency_key is not None:
        equal["gateway_idempotency_key"] = event.idempotency_key
    if event.amount is not None:
        equal["amount"] = event.amount
    if event.currency is not None:
        equal["currency"] = event.currency.upper()
    fields = report_fields(event, trigger)
    outcome = f"{event.event_type}: {move.after.value} (moved)"
    return cas.prepare(
        refund_id,
        expected,
        trigger,
        source=Source.WEBHOOK,
        actor=processor_actor(connection_name),
        detail=report_detail(event),
        returning=("status",),
        equal=equal,
        webhook=(new.row.id, outcome) if stored else None,
        new_webhook=None if stored else (new.row, outcome),
        **fields,
    )


async def store_and_apply(
    rt: Runtime, connection_id: UUID, connection_name: str, rows: Sequence[NewRow], now: dt.datetime
) -> tuple[set[UUID], set[UUID]]:
    """Store every row and apply the common ones; returns (stored ids, ids applied here). A stored
    row not applied here is for the worker. ``now``: the time the rows' audit entries were made with
    (their entry hashes cover it)."""
    if rt.db.is_sqlite:
        prepared = {r.row.id: _prepare(connection_id, connection_name, r, stored=True) for r in rows}
        plans = {row_id: plan for row_id, plan in prepared.items() if plan is not None}
        stored, applied = await rt.db.run_sqlite_write(lambda conn: _sqlite(conn, rows, plans, now))
        for row_id in applied:  # committed: the dashboards may hear of it
            signals.refund_changed(plans[row_id].refund_id)
        return stored, applied
    applied = await _apply_pg(rt, connection_id, connection_name, rows)
    stored = applied | await storing.store_pg(rt, [r for r in rows if r.row.id not in applied], now)
    return stored, applied


def _sqlite(
    conn: Connection, rows: Sequence[NewRow], plans: dict[UUID, cas.Prepared], now: dt.datetime
) -> tuple[set[UUID], set[UUID]]:
    stored = storing.store_in(conn, rows, now)
    applied: set[UUID] = set()
    for row_id in stored:
        plan = plans.get(row_id)
        if plan is None:  # not the common confirming case: for the worker
            continue
        try:
            with conn.begin_nested():  # one event's failure undoes its own writes alone
                if cas.run_in(plan, conn) is not None:
                    applied.add(row_id)
        except Exception:  # stored: the worker's general path still applies it
            log.warning("fast path failed for webhook event %s", row_id, exc_info=True)
    return stored, applied


async def _apply_pg(
    rt: Runtime, connection_id: UUID, connection_name: str, rows: Sequence[NewRow]
) -> set[UUID]:
    turns = asyncio.Semaphore(CONCURRENCY)

    async def one(new: NewRow) -> UUID | None:
        plan = _prepare(connection_id, connection_name, new, stored=False)
        if plan is None:
            return None
        async with turns:
            try:
                row = await cas.run(rt.db, plan)
            except Exception:  # e.g. stored meanwhile by another delivery: stored unprocessed below
                log.info("fast path did not apply webhook event %s", new.event.event_id, exc_info=True)
                return None
        return new.row.id if row is not None else None

    done = await asyncio.gather(*(one(new) for new in rows))
    return {row_id for row_id in done if row_id is not None}
