"""Compare-and-set transitions: the worker's hot path, in as few round trips as the database allows.

The transition is still decided by the pure table (``states.decide``) for the status the caller
expects; the database applies it only if the refund still has that status. On PostgreSQL the status
change, the timeline event, the audit entry, the payment's balances, the rollup outbox row and the
outgoing webhooks' deliveries (``outgoing.outbox``) are one statement (data-modifying CTEs, atomic on
its own in autocommit: one round trip instead of six). On SQLite the same statements run in one write
transaction. When the refund has moved on (or the
transition needs the guarded reservation), ``None`` comes back and the caller takes the general path
under a row lock, so this is an optimisation of the common case, never a second set of rules.

Statements are built once per shape, with bind parameters, and reused: building and cache-keying a
CTE statement costs more CPU than the round trip it saves.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from asyncpg import Record
from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.sql.dml import Insert, Update, UpdateBase
from sqlalchemy.sql.selectable import Select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import AUDIT_COLUMNS, NewEntry
from refundwatch.dashboard.rollups import counted
from refundwatch.dashboard.signals import signals
from refundwatch.db import pipelined
from refundwatch.db.engine import Database
from refundwatch.db.tables import (
    ATTEMPTS,
    AUDIT,
    DELIVERIES,
    EVENTS,
    OUTBOX,
    PAYMENTS,
    REFUNDS,
    WEBHOOK_EVENTS,
)
from refundwatch.gateways.base import Exchange, exchange_json
from refundwatch.outgoing import outbox as outgoing
from refundwatch.outgoing.events import refund_event_type
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


def _audit_params(
    actor: Actor, move: Transition, refund_id: UUID, source: Source, detail: str, now: dt.datetime
) -> dict[str, Any]:
    """The audit entry ``services.apply`` would record, with its entry hash, as bind parameters."""
    entry = NewEntry.of(
        actor,
        actions.REFUND_TRANSITION.format(source=source.value),
        target_type="refund",
        target_id=str(refund_id),
        details={
            "from": move.before.value,
            "to": move.after.value,
            "trigger": move.trigger.value,
            "detail": detail,
        },
        at=now,
    )
    return {f"a_{name}": value for name, value in entry.columns().items()}


def _param(table: Table, column: str, key: str) -> Any:
    return bindparam(key, type_=table.c[column].type)


@dataclass(frozen=True, slots=True)
class _Statements:
    """One transition's statements. ``single`` for PostgreSQL; the others, in order, for SQLite."""

    single: Select[Any]
    moved: Update
    event: Insert
    audit: Insert
    balance: Update | None
    outbox: Insert | None
    webhook: Update | None  # the stored webhook event marked processed, when a webhook caused this
    deliveries: Insert | None  # outgoing webhooks for this change (outgoing.outbox), after ``event``


# How the webhook event that reported a transition is recorded with it, in the same atomic write:
MARK = "mark"  # already stored: marked processed
STORE = "store"  # not stored yet (PostgreSQL): stored as processed, with its "accepted" audit entry,
# and the transition made only if no such event was stored before (a redelivery moves nothing)


def _mark_webhook() -> Update:
    return (
        update(WEBHOOK_EVENTS)
        .where(WEBHOOK_EVENTS.c.id == _param(WEBHOOK_EVENTS, "id", "x_event"))
        .where(WEBHOOK_EVENTS.c.processed_at.is_(None))
        .values(
            processed_at=_param(WEBHOOK_EVENTS, "processed_at", "p_now"),
            outcome=_param(WEBHOOK_EVENTS, "outcome", "x_outcome"),
        )
    )


@functools.cache
def _statements(
    move: Transition,
    changes: tuple[str, ...],
    if_null: tuple[str, ...],
    equal: tuple[str, ...],
    returning: tuple[str, ...],
    webhook: str | None = None,
    first_report: bool = False,
) -> _Statements:
    values: dict[str, Any] = {name: _param(REFUNDS, name, f"c_{name}") for name in changes}
    for name in if_null:
        values[name] = func.coalesce(REFUNDS.c[name], _param(REFUNDS, name, f"c_{name}"))
    values["status"] = move.after.value
    values["updated_at"] = _param(REFUNDS, "updated_at", "p_now")
    if move.after in (Status.PROCESSING, Status.SUCCEEDED):
        values["accepted_at"] = func.coalesce(REFUNDS.c.accepted_at, _param(REFUNDS, "accepted_at", "p_now"))
    if move.after in FINAL:
        values["finalized_at"] = _param(REFUNDS, "finalized_at", "p_now")
    elif move.after is Status.QUEUED:
        values["finalized_at"] = None
    # The balance update needs the refund's payment and amount, whatever the caller asked for; the
    # outgoing webhooks its connection.
    event_type = refund_event_type(move)
    extra = ["connection_id"] if event_type is not None else []
    columns = [REFUNDS.c[name] for name in dict.fromkeys(["id", *returning, "payment_id", "amount", *extra])]
    moved = (
        update(REFUNDS)
        .where(
            REFUNDS.c.id == _param(REFUNDS, "id", "p_id"),
            REFUNDS.c.status == move.before.value,
            *[REFUNDS.c[name] == _param(REFUNDS, name, f"w_{name}") for name in equal],
            *([_not_yet_stored()] if webhook == STORE else []),
            *(_first_report() if first_report else ()),
        )
        .values(**values)
        .returning(*columns)
    )
    event_values = {
        "refund_id": _param(EVENTS, "refund_id", "p_id"),
        "at": _param(EVENTS, "at", "p_now"),
        "status": literal(move.after.value),
        "from_status": literal(move.before.value),
        "source": _param(EVENTS, "source", "e_source"),
        "detail": _param(EVENTS, "detail", "e_detail"),
        "exchange": _param(EVENTS, "exchange", "e_exchange"),
    }
    audit_values = {name: _param(AUDIT, name, f"a_{name}") for name in AUDIT_COLUMNS}
    balance = _balance(move, _param(PAYMENTS, "id", "p_payment_id"), bindparam("p_amount"))

    cte = moved.cte("moved")
    event = insert(EVENTS).from_select(
        list(event_values), select(*[v.label(k) for k, v in event_values.items()]).select_from(cte)
    )
    event_cte = (event.returning(EVENTS.c.id) if event_type is not None else event).cte("event")
    single = (
        select(*cte.c)
        .add_cte(event_cte)
        .add_cte(
            insert(AUDIT)
            .from_select(
                list(audit_values), select(*[v.label(k) for k, v in audit_values.items()]).select_from(cte)
            )
            .cte("audit")
        )
    )
    in_cte = _balance(move, cte.c.payment_id, cte.c.amount)
    if in_cte is not None:
        single = single.add_cte(cast(UpdateBase, in_cte).cte("balance"))
    outbox_values = {
        "refund_id": _param(OUTBOX, "refund_id", "p_id"),
        "from_status": literal(move.before.value),
        "status": literal(move.after.value),
        "at": _param(OUTBOX, "at", "p_now"),
    }
    if counted(move):
        single = single.add_cte(
            insert(OUTBOX)
            .from_select(
                list(outbox_values), select(*[v.label(k) for k, v in outbox_values.items()]).select_from(cte)
            )
            .cte("outbox")
        )
    if event_type is not None:  # one row per endpoint that wants it; none (and no cost) without any
        single = single.add_cte(
            outgoing.refund_changed(
                [(event_type, None)],
                refund_id=cte.c.id,
                event_id=event_cte.c.id,
                connection_id=cte.c.connection_id,
                at=_param(DELIVERIES, "occurred_at", "p_now"),
                source=event_cte.join(cte, true()),
            ).cte("deliveries")
        )
    if webhook == MARK:  # only if the refund moved: the CTE is empty otherwise
        single = single.add_cte(_mark_webhook().where(exists(select(cte.c.id))).cte("webhook"))
    elif webhook == STORE:
        single = _with_new_webhook(single, cte)
    return _Statements(
        single=single,
        moved=moved,
        event=insert(EVENTS).values(**event_values),
        audit=insert(AUDIT).values(**audit_values),
        balance=balance,
        outbox=insert(OUTBOX).values(**outbox_values) if counted(move) else None,
        webhook=_mark_webhook() if webhook == MARK else None,
        deliveries=outgoing.after_event(event_type) if event_type is not None else None,
    )


def _with_new_webhook(single: Select[Any], cte: Any) -> Select[Any]:
    """The reporting event stored as processed and audited as accepted, in the transition's statement;
    its row id comes back with the moved refund's row (``webhook_event_id``), so a batch of them
    (``run_many``) tells which events it applied."""
    event_values = {
        name: _param(WEBHOOK_EVENTS, name, f"y_{name}")
        for name in ("id", "connection_id", "event_id", "event_type", "payload", "outcome")
    }
    event_values["received_at"] = _param(WEBHOOK_EVENTS, "received_at", "p_now")
    event_values["processed_at"] = _param(WEBHOOK_EVENTS, "processed_at", "p_now")
    accepted = {name: _param(AUDIT, name, f"y_a_{name}") for name in AUDIT_COLUMNS}
    single = single.add_columns(event_values["id"].label("webhook_event_id"))
    return single.add_cte(
        insert(WEBHOOK_EVENTS)
        .from_select(
            list(event_values), select(*[v.label(k) for k, v in event_values.items()]).select_from(cte)
        )
        .cte("webhook")
    ).add_cte(
        insert(AUDIT)
        .from_select(list(accepted), select(*[v.label(k) for k, v in accepted.items()]).select_from(cte))
        .cte("accepted")
    )


def _not_yet_stored() -> Any:
    return ~exists(
        select(WEBHOOK_EVENTS.c.id).where(
            WEBHOOK_EVENTS.c.connection_id == _param(WEBHOOK_EVENTS, "connection_id", "y_connection_id"),
            WEBHOOK_EVENTS.c.event_id == _param(WEBHOOK_EVENTS, "event_id", "y_event_id"),
        )
    )


def _first_report() -> tuple[Any, ...]:
    """The refund knows no processor refund id yet, and the one being set (``c_gateway_refund_id``)
    is no earlier attempt's: the report is about the attempt in flight (``attempts.earlier_attempt``)."""
    reported = _param(REFUNDS, "gateway_refund_id", "c_gateway_refund_id")
    earlier = exists(
        select(ATTEMPTS.c.id).where(
            ATTEMPTS.c.refund_id == _param(REFUNDS, "id", "p_id"), ATTEMPTS.c.gateway_refund_id == reported
        )
    )
    return (REFUNDS.c.gateway_refund_id.is_(None), ~earlier)


def _balance(move: Transition, payment_id: Any, amount: Any) -> Update | None:
    """The payment's balance updates ``services._move_money`` makes for this transition."""
    values: dict[str, Any] = {}
    if move.releases_amount:
        values["reserved_amount"] = PAYMENTS.c.reserved_amount - amount
    if move.after is Status.SUCCEEDED:
        values["refunded_amount"] = PAYMENTS.c.refunded_amount + amount
    elif move.before is Status.SUCCEEDED:
        values["refunded_amount"] = PAYMENTS.c.refunded_amount - amount
    if not values:
        return None
    # Explicit: column onupdate defaults are not applied inside a CTE.
    values["updated_at"] = _param(PAYMENTS, "updated_at", "p_now")
    return update(PAYMENTS).where(PAYMENTS.c.id == payment_id).values(**values)


@dataclass(frozen=True, slots=True)
class _IgnoredReport:
    """A report that changes nothing, recorded as ``services.apply`` records it (a timeline entry that
    says why it was ignored), with the webhook event that made it. ``single`` for PostgreSQL; ``event``
    and ``webhook``, in order, for SQLite."""

    single: Select[Any]
    event: Insert  # the timeline entry, if the refund is as expected; returns the refund id
    webhook: Update | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A transition (or an ignored report) ready to run: its statements and their parameters."""

    refund_id: UUID
    statements: _Statements | _IgnoredReport
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A verified webhook event not stored yet, to be stored with the transition it reports (STORE)."""

    id: UUID
    connection_id: UUID
    event_id: str
    event_type: str
    payload: str
    accepted: dict[str, Any]  # its "accepted" audit entry's columns (audit.services.NewEntry)


def prepare(
    refund_id: UUID,
    expected: Status,
    trigger: Trigger,
    *,
    source: Source,
    actor: Actor,
    detail: str,
    returning: Sequence[str] = (),
    equal: dict[str, Any] | None = None,
    if_null: dict[str, Any] | None = None,
    exchange: Exchange | None = None,
    webhook: tuple[UUID, str] | None = None,
    new_webhook: tuple[NewWebhook, str] | None = None,
    first_report: bool = False,
    **changes: Any,
) -> Prepared | None:
    """The statements of :func:`transition_if`, or ``None`` when this transition needs the general
    path. ``webhook``: a stored event (id, outcome) marked processed with the transition;
    ``new_webhook``: an event (and its outcome) stored as processed with it (PostgreSQL only);
    ``first_report``: only if the refund has no processor refund id yet and the one set in
    ``changes`` is no earlier attempt's."""
    move = decide(expected, trigger)
    if not isinstance(move, Transition) or not move.changed or move.reserves_amount:
        return None
    if first_report and "gateway_refund_id" not in changes:
        raise ValueError("first_report needs the processor refund id it reports")
    equal, if_null = equal or {}, if_null or {}
    mode = MARK if webhook is not None else STORE if new_webhook is not None else None
    statements = _statements(
        move, tuple(changes), tuple(if_null), tuple(equal), tuple(returning), mode, first_report
    )
    now = dt.datetime.now(dt.UTC)
    params: dict[str, Any] = {
        "p_id": refund_id,
        "p_now": now,
        "e_source": source.value,
        "e_detail": detail,
        "e_exchange": exchange_json(exchange),
    }
    params.update({f"c_{k}": v for k, v in (changes | if_null).items()})
    params.update({f"w_{k}": v for k, v in equal.items()})
    params.update(_audit_params(actor, move, refund_id, source, detail, now))
    params.update(_webhook_params(webhook, new_webhook))
    return Prepared(refund_id, statements, params)


def _webhook_params(
    webhook: tuple[UUID, str] | None, new_webhook: tuple[NewWebhook, str] | None
) -> dict[str, Any]:
    """The parameters that mark a stored event processed (MARK) or store a new one as processed (STORE)."""
    if webhook is not None:
        return {"x_event": webhook[0], "x_outcome": webhook[1][:255]}
    if new_webhook is None:
        return {}
    new, outcome = new_webhook
    return {
        "y_id": new.id,
        "y_connection_id": new.connection_id,
        "y_event_id": new.event_id,
        "y_event_type": new.event_type,
        "y_payload": new.payload,
        "y_outcome": outcome[:255],
        **{f"y_a_{name}": value for name, value in new.accepted.items()},
    }


def prepare_ignored(
    refund_id: UUID,
    status: Status,
    trigger: Trigger,
    *,
    source: Source,
    detail: str,
    equal: dict[str, Any],
    webhook: tuple[UUID, str] | None = None,
    new_webhook: tuple[NewWebhook, str] | None = None,
) -> Prepared | None:
    """A report of ``trigger`` recorded as ignored, with the webhook event that made it (stored, or
    stored with it as in :func:`prepare`), if the refund is ``status`` and its ``equal`` columns
    hold; ``None`` when ``trigger`` is not ignored in ``status``. On PostgreSQL the refund's row is
    locked while it is checked, so a change committed meanwhile sends the report to the general path."""
    if decide(status, trigger) is not Outcome.IGNORE or (webhook is None) == (new_webhook is None):
        return None
    statements = _ignored_report(status, tuple(equal), MARK if webhook is not None else STORE)
    params: dict[str, Any] = {
        "p_id": refund_id,
        "p_now": dt.datetime.now(dt.UTC),
        "e_source": source.value,
        "e_detail": f"{detail} — ignored: {ignore_reason(status, trigger)}",
        "e_exchange": None,
    }
    params.update({f"w_{k}": v for k, v in equal.items()})
    params.update(_webhook_params(webhook, new_webhook))
    return Prepared(refund_id, statements, params)


@functools.cache
def _ignored_report(status: Status, equal: tuple[str, ...], webhook: str) -> _IgnoredReport:
    expected = (
        REFUNDS.c.id == _param(REFUNDS, "id", "p_id"),
        REFUNDS.c.status == status.value,
        *[REFUNDS.c[name] == _param(REFUNDS, name, f"w_{name}") for name in equal],
    )

    def timeline(refund_id: Any) -> dict[str, Any]:
        return {
            "refund_id": refund_id,
            "at": _param(EVENTS, "at", "p_now"),
            "status": literal(status.value),
            "source": _param(EVENTS, "source", "e_source"),
            "detail": _param(EVENTS, "detail", "e_detail"),
            "exchange": _param(EVENTS, "exchange", "e_exchange"),
        }

    sqlite_values = timeline(REFUNDS.c.id)
    sqlite_event = (
        insert(EVENTS)
        .from_select(
            list(sqlite_values), select(*[v.label(k) for k, v in sqlite_values.items()]).where(*expected)
        )
        .returning(EVENTS.c.refund_id)
    )
    found = (
        select(REFUNDS.c.id)
        .where(*expected, *([_not_yet_stored()] if webhook == STORE else []))
        .with_for_update()
        .cte("found")
    )
    values = timeline(found.c.id)
    single = select(found.c.id).add_cte(
        insert(EVENTS)
        .from_select(list(values), select(*[v.label(k) for k, v in values.items()]).select_from(found))
        .cte("event")
    )
    if webhook == MARK:
        single = single.add_cte(_mark_webhook().where(exists(select(found.c.id))).cte("webhook"))
    else:
        single = _with_new_webhook(single, found)
    return _IgnoredReport(single, sqlite_event, _mark_webhook() if webhook == MARK else None)


async def transition_if(
    db: Database,
    refund_id: UUID,
    expected: Status,
    trigger: Trigger,
    *,
    source: Source,
    actor: Actor,
    detail: str,
    returning: Sequence[str] = (),
    equal: dict[str, Any] | None = None,
    if_null: dict[str, Any] | None = None,
    exchange: Exchange | None = None,
    webhook: tuple[UUID, str] | None = None,
    **changes: Any,
) -> Row[Any] | None:
    """Apply ``trigger`` if the refund is still ``expected`` (and its ``equal`` columns still hold).

    ``changes`` are set; ``if_null`` are set only where the column is still NULL. Returns the refund's
    ``returning`` columns after the change, or ``None`` when nothing was changed (the refund was
    elsewhere, or this transition needs the general path). ``webhook``: the stored webhook event that
    reported this (its id and outcome), marked processed in the same atomic write.
    """
    prepared = prepare(
        refund_id,
        expected,
        trigger,
        source=source,
        actor=actor,
        detail=detail,
        returning=returning,
        equal=equal,
        if_null=if_null,
        exchange=exchange,
        webhook=webhook,
        **changes,
    )
    return None if prepared is None else await run(db, prepared)


async def run(db: Database, prepared: Prepared) -> Row[Any] | None:
    """Run a prepared transition atomically, on its own; ``None`` when the refund had moved on."""
    if not db.is_sqlite:
        async with db.autocommit_connection() as conn:
            row = (await conn.execute(prepared.statements.single, prepared.params)).first()
    else:
        row = await db.run_sqlite_write(functools.partial(run_in, prepared))
    if row is not None:
        signals.refund_changed(prepared.refund_id)  # committed: the dashboards may hear of it
    return row


async def run_many(db: Database, prepared: Sequence[Prepared]) -> list[Record]:
    """PostgreSQL: run transitions of one shape (the same ``statements``) in one pipelined round trip,
    atomically: all of them are tried, or none when the database raised. Returns the moved refunds'
    rows (a stored webhook event's carry its id as ``webhook_event_id``); the caller tells the
    dashboards."""
    if not prepared:
        return []
    statements = prepared[0].statements
    if any(p.statements is not statements for p in prepared):
        raise ValueError("run_many takes transitions of one shape")
    return await pipelined.fetch_many(db, statements.single, [p.params for p in prepared])


def run_in(prepared: Prepared, conn: Connection) -> Row[Any] | None:
    """SQLite: run a prepared transition inside the caller's write transaction (the caller tells the
    dashboards once it is committed). No data-modifying CTEs there: the same writes, one by one."""
    statements, params = prepared.statements, prepared.params
    if statements.webhook is None and "y_id" in params:
        raise RuntimeError("storing the webhook event with the transition is for PostgreSQL")
    if isinstance(statements, _IgnoredReport):
        found = conn.execute(statements.event, params).first()
        if found is not None and statements.webhook is not None:
            conn.execute(statements.webhook, params)
        return found
    row = conn.execute(statements.moved, params).first()
    if row is None:
        return None
    event = conn.execute(statements.event, params)
    if statements.deliveries is not None and outgoing.any_endpoint(conn):
        at, (event_id,) = params["p_now"], event.inserted_primary_key or (None,)
        conn.execute(
            statements.deliveries, outgoing.after_event_params(row.id, event_id, row.connection_id, at)
        )
    conn.execute(statements.audit, params)
    if statements.balance is not None:
        conn.execute(statements.balance, params | {"p_payment_id": row.payment_id, "p_amount": row.amount})
    if statements.outbox is not None:
        conn.execute(statements.outbox, params)
    if statements.webhook is not None:
        conn.execute(statements.webhook, params)
    return row


def _ignoring(trigger: Trigger) -> tuple[Status, ...]:
    """The statuses in which ``trigger`` changes nothing (the state table's IGNORE)."""
    return tuple(status for status in Status if decide(status, trigger) is Outcome.IGNORE)


@functools.cache
def _ignored_statement(trigger: Trigger, equal: tuple[str, ...]) -> Insert:
    statuses = _ignoring(trigger)
    detail = case(
        {status.value: bindparam(f"d_{status.value}", type_=EVENTS.c.detail.type) for status in statuses},
        value=REFUNDS.c.status,
    )
    values = {
        "refund_id": REFUNDS.c.id,
        "at": _param(EVENTS, "at", "p_now"),
        "status": REFUNDS.c.status,
        "source": _param(EVENTS, "source", "e_source"),
        "detail": detail,
        "exchange": _param(EVENTS, "exchange", "e_exchange"),
    }
    found = select(*[v.label(k) for k, v in values.items()]).where(
        REFUNDS.c.id == _param(REFUNDS, "id", "p_id"),
        REFUNDS.c.status.in_([status.value for status in statuses]),
        *[REFUNDS.c[name] == _param(REFUNDS, name, f"w_{name}") for name in equal],
    )
    return insert(EVENTS).from_select(list(values), found).returning(EVENTS.c.status)


async def record_ignored_if(
    db: Database,
    refund_id: UUID,
    trigger: Trigger,
    *,
    source: Source,
    detail: str,
    equal: dict[str, Any],
    exchange: Exchange | None = None,
) -> str | None:
    """Record a report that changes nothing (the timeline entry ``services.apply`` makes for an
    ignored report) if the refund is in a status where ``trigger`` is ignored and its ``equal``
    columns hold; returns that status, or ``None`` when the refund is elsewhere (general path).
    One statement, no row lock: e.g. the worker's own "received" answer recorded after the
    processor's notification already settled the refund."""
    now = dt.datetime.now(dt.UTC)
    params: dict[str, Any] = {
        "p_id": refund_id,
        "p_now": now,
        "e_source": source.value,
        "e_exchange": exchange_json(exchange),
    }
    params.update({f"w_{k}": v for k, v in equal.items()})
    params.update(
        {f"d_{s.value}": f"{detail} — ignored: {ignore_reason(s, trigger)}" for s in _ignoring(trigger)}
    )
    statement = _ignored_statement(trigger, tuple(equal))
    if not db.is_sqlite:
        async with db.autocommit_connection() as conn:
            row = (await conn.execute(statement, params)).first()
    else:
        row = await db.run_sqlite_write(lambda conn: conn.execute(statement, params).first())
    if row is None:
        return None
    signals.refund_changed(refund_id)  # the timeline has a new entry
    return str(row.status)
