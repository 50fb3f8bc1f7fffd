"""The common notification, applied where it is received: one compare-and-set, no job.

Most notifications confirm what refundwatch expects: the processor's refund for the current attempt
(same processor refund id, same key where the event names one), the amount and currency asked for,
moving a ``processing`` refund to ``succeeded`` or ``failed`` (or a ``succeeded`` one to
``reversed``), or telling what refundwatch already holds (a ``succeeded`` refund reported
succeeded: recorded as ignored, as the general path records it). Such an event is applied as it is
received, by ``refunds.cas`` (status, timeline, audit, balance and rollup outbox), atomically with
storing it as processed: on PostgreSQL in one
statement that also stores the event (and moves nothing if the event was stored before); on SQLite
in the delivery's one write transaction, after the events are stored. It is the same transition the
worker's general path would make (``webhooks.services``); any other event (an unknown refund,
another attempt, a mismatch, a refund elsewhere than expected) is stored unprocessed for that path,
which runs it under the row lock. Nothing is acknowledged before every event is stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import Connection

from refundwatch.audit.actions import processor_actor
from refundwatch.dashboard.signals import signals
from refundwatch.gateways.base import WebhookEvent
from refundwatch.refunds import cas
from refundwatch.refunds.outcomes import TRIGGER_FOR
from refundwatch.refunds.states import Outcome, Source, Status, Transition, Trigger, decide
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
# Outcomes that may reach a refund before the worker has recorded the processor's first answer.
FIRST_REPORTS = (Trigger.SUCCEEDED, Trigger.FAILED)
# The status in which a report tells what refundwatch already holds, and changes nothing: the most
# common webhook of processors whose first answer is final (Stripe's refund.created and PayPal's
# event after a COMPLETED answer), and every redelivery under a new event id.
ALREADY = {
    Trigger.ACCEPTED: Status.PROCESSING,
    Trigger.SUCCEEDED: Status.SUCCEEDED,
    Trigger.FAILED: Status.FAILED,
    Trigger.REVERSED: Status.REVERSED,
}


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
    elif trigger in (Trigger.SUCCEEDED, Trigger.ACCEPTED):
        # An earlier attempt's error is history (on the timeline), not this refund's state: cleared as
        # the worker's own answer clears it (refunds.outcomes.record_result).
        fields.update(error_code=None, error_message=None, processor_code=None)
    return fields


def prepare(connection_id: UUID, connection_name: str, new: NewRow, *, stored: bool) -> list[cas.Prepared]:
    """The transitions ``new`` may report if it is the common confirming case, to try in order (none
    when it is not). ``stored``: the event is already stored (mark it processed) rather than stored
    with it. First the report about the current attempt's processor refund; then, for an outcome, the
    same report reaching a refund still ``submitting`` (the processor answered, but the worker has not
    recorded the answer yet: Adyen notifies fast), when the processor refund id it names is no earlier
    attempt's, which is how the worker's general path tells the attempt in flight. Last, the report
    recorded as ignored where it finds the refund already in the status it reports."""
    event = new.event
    if event.status is None or not event.refund_id or not event.gateway_refund_id:
        return []
    trigger = TRIGGER_FOR[event.status]
    expected = EXPECTED.get(trigger)
    if expected is None and trigger not in ALREADY:
        return []
    try:
        refund_id = UUID(event.refund_id)
    except ValueError:
        return []
    # What makes this the general path's "about the current attempt, as asked" case.
    equal: dict[str, Any] = {"connection_id": connection_id}
    if event.idempotency_key is not None:
        equal["gateway_idempotency_key"] = event.idempotency_key
    if event.amount is not None:
        equal["amount"] = event.amount
    if event.currency is not None:
        equal["currency"] = event.currency.upper()
    fields = report_fields(event, trigger)
    plans: list[cas.Prepared] = []
    for before, first in ((expected, False), (Status.SUBMITTING, True)) if expected is not None else ():
        move = decide(before, trigger)
        if not isinstance(move, Transition) or (first and trigger not in FIRST_REPORTS):
            continue
        outcome = f"{event.event_type}: {move.after.value} (moved)"
        plan = cas.prepare(
            refund_id,
            before,
            trigger,
            source=Source.WEBHOOK,
            actor=processor_actor(connection_name),
            detail=report_detail(event),
            returning=("status",),
            equal=equal if first else equal | {"gateway_refund_id": event.gateway_refund_id},
            first_report=first,
            **_reporting(new, outcome, stored=stored),
            **(fields | {"gateway_refund_id": event.gateway_refund_id} if first else fields),
        )
        if plan is not None:
            plans.append(plan)
    if (already := ALREADY.get(trigger)) is not None:  # last: the refund may be about to move there
        outcome = f"{event.event_type}: {already.value} ({Outcome.IGNORE.name})"  # as the general path says
        ignored = cas.prepare_ignored(
            refund_id,
            already,
            trigger,
            source=Source.WEBHOOK,
            detail=report_detail(event),
            equal=equal | {"gateway_refund_id": event.gateway_refund_id},
            **_reporting(new, outcome, stored=stored),
        )
        if ignored is not None:
            plans.append(ignored)
    return plans


def _reporting(new: NewRow, outcome: str, *, stored: bool) -> dict[str, Any]:
    """How the reporting event goes with its plan: marked processed if stored, else stored with it."""
    return {"webhook": (new.row.id, outcome)} if stored else {"new_webhook": (new.row, outcome)}


async def store_and_apply(
    rt: Runtime, connection_id: UUID, connection_name: str, rows: Sequence[NewRow], now: dt.datetime
) -> tuple[set[UUID], set[UUID]]:
    """Store every row and apply the common ones; returns (stored ids, ids applied here). A stored
    row not applied here is for the worker. ``now``: the time the rows' audit entries were made with
    (their entry hashes cover it)."""
    if rt.db.is_sqlite:
        plans = {
            r.row.id: found
            for r in rows
            if (found := prepare(connection_id, connection_name, r, stored=True))
        }
        stored, applied = await rt.db.run_sqlite_write(lambda conn: _sqlite(conn, rows, plans, now))
        for refund_id in applied.values():  # committed: the dashboards may hear of it
            signals.refund_changed(refund_id)
        return stored, set(applied)
    applied_pg = await _apply_pg(rt, connection_id, connection_name, rows)
    stored = applied_pg | await storing.store_pg(rt, [r for r in rows if r.row.id not in applied_pg], now)
    return stored, applied_pg


def _sqlite(
    conn: Connection, rows: Sequence[NewRow], plans: dict[UUID, list[cas.Prepared]], now: dt.datetime
) -> tuple[set[UUID], dict[UUID, UUID]]:
    """Store the rows, then apply each common one: returns the stored ids and {applied id: refund id}."""
    stored = storing.store_in(conn, rows, now)
    applied: dict[UUID, UUID] = {}
    for row_id in stored:
        for plan in plans.get(row_id, ()):  # none: not the common confirming case, for the worker
            try:
                with conn.begin_nested():  # one event's failure undoes its own writes alone
                    if cas.run_in(plan, conn) is not None:
                        applied[row_id] = plan.refund_id
                        break
            except Exception:  # stored: the worker's general path still applies it
                log.warning("fast path failed for webhook event %s", row_id, exc_info=True)
                break
    return stored, applied


async def _apply_pg(
    rt: Runtime, connection_id: UUID, connection_name: str, rows: Sequence[NewRow]
) -> set[UUID]:
    """Each event's first plan, then the second plans of those the first did not apply. Plans of one
    shape run in one pipelined, atomic round trip (``cas.run_many``), whose rows name the events it
    applied. An event was applied exactly when its row was stored (a plan stores it only with the
    transition): when a batch raised, one read tells, whatever the database did before it raised."""
    plans = {
        new.row.id: found
        for new in rows
        if (found := prepare(connection_id, connection_name, new, stored=False))
    }
    applied: dict[UUID, UUID] = {}  # event row id -> refund id
    for turn in range(max((len(found) for found in plans.values()), default=0)):
        todo = {
            row_id: found[turn]
            for row_id, found in plans.items()
            if row_id not in applied and len(found) > turn
        }
        shapes: dict[int, list[cas.Prepared]] = {}
        for plan in todo.values():
            shapes.setdefault(id(plan.statements), []).append(plan)
        uncertain: list[UUID] = []
        for group in shapes.values():
            try:
                moved = await cas.run_many(rt.db, group)
            except Exception as exc:
                # One event stored meanwhile by another delivery is expected; anything else is a fault
                # that costs every batch its speed while the outcome stays right, so it must be seen.
                expected = isinstance(exc, asyncpg.PostgresError)
                log.log(
                    logging.INFO if expected else logging.WARNING,
                    "fast path batch of %d not applied; one by one",
                    len(group),
                    exc_info=True,
                )
                await _one_by_one(rt, group)
                uncertain.extend(p.params["y_id"] for p in group)
            else:
                applied.update(
                    (row["webhook_event_id"], todo[row["webhook_event_id"]].refund_id) for row in moved
                )
        for row_id in await storing.stored_among(rt, uncertain):
            applied[row_id] = todo[row_id].refund_id
    for refund_id in applied.values():  # committed: the dashboards may hear of it
        signals.refund_changed(refund_id)
    return set(applied)


async def _one_by_one(rt: Runtime, plans: Sequence[cas.Prepared]) -> None:
    for plan in plans:
        try:
            await cas.run(rt.db, plan)
        except Exception:  # stored unprocessed below, for the worker's general path
            log.info("fast path did not apply a transition of refund %s", plan.refund_id, exc_info=True)
