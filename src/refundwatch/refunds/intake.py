"""Refund intake: check a request against its payment, claim the idempotency key, reserve the amount.

Two round trips to the database per new refund. The first reads the earlier request with this key (if
any) and the payment together; it runs outside the write transaction because the replay check is
advisory: the unique (client, key) index is what claims a key. The second is the write: on PostgreSQL
one autocommit statement of data-modifying CTEs (reserve the amount if it fits, then insert the refund,
its first event, its audit entry and its outgoing webhooks' deliveries; a taken key fails the whole
statement, reservation included), on SQLite the same writes in one transaction that concurrent writers
share (``db/groupcommit.py``).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import Connection, Row, bindparam, func, insert, literal, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.selectable import Select
from uuid_utils.compat import uuid7

from refundwatch.audit.actions import Actor
from refundwatch.audit.services import AUDIT_COLUMNS, NewEntry
from refundwatch.dashboard.signals import signals
from refundwatch.db.models import Refund, RefundEvent
from refundwatch.db.tables import AUDIT, DELIVERIES, EVENTS, PAYMENTS, REFUNDS
from refundwatch.gateways.base import amount_refusal
from refundwatch.gateways.registry import get_gateway, supported_processors
from refundwatch.lib.cards import refuse_card_numbers
from refundwatch.lib.crypto import sha256_hex
from refundwatch.lib.exceptions import Conflict, ValidationFailed
from refundwatch.lib.money import format_money, is_known_currency
from refundwatch.outgoing import outbox
from refundwatch.outgoing.events import CREATED, PENDING_APPROVAL
from refundwatch.payments.ledger import on_other_connection, other_connections
from refundwatch.refunds.schemas import (
    MAX_AMOUNT,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MAX_REFERENCE_LENGTH,
    RefundCreate,
)
from refundwatch.refunds.services import enqueue_execution, gateway_key
from refundwatch.refunds.states import Source, Status
from refundwatch.runtime import Runtime

REFUND_COLUMNS = (
    "id",
    "payment_id",
    "connection_id",
    "payment_reference",
    "amount",
    "currency",
    "reason",
    "order_id",
    "invoice_id",
    "metadata_encrypted",
    "status",
    "attempts",
    "gateway_idempotency_key",
    "client_scope",
    "idempotency_key",
    "request_fingerprint",
    "created_by",
    "created_at",
    "updated_at",
)
EVENT_COLUMNS = ("at", "status", "source", "detail")
KEY_INDEX = "uq_refunds_client_idempotency"  # the unique (client, key) index that claims a key


@dataclass(frozen=True, slots=True)
class Intake:
    refund: Refund
    created: bool
    events: list[RefundEvent] | None = None  # known for a new refund; a replay reads them


def _fingerprint(body: RefundCreate) -> str:
    return sha256_hex(msgspec.json.encode(body, order="sorted"))


def _check_shape(body: RefundCreate) -> None:
    if isinstance(body.amount, bool) or body.amount <= 0 or body.amount > MAX_AMOUNT:
        raise ValidationFailed("amount must be a positive whole number of minor units", code="invalid_amount")
    if not is_known_currency(body.currency.upper()):  # as a payment's: not merely "not the payment's"
        raise ValidationFailed(f"unknown currency {body.currency!r}", code="invalid_currency")
    if not body.payment_reference.strip() or len(body.payment_reference) > MAX_REFERENCE_LENGTH:
        raise ValidationFailed(f"payment_reference must be 1 to {MAX_REFERENCE_LENGTH} characters")
    for name in ("order_id", "invoice_id"):
        value = getattr(body, name)
        if value is not None and len(value) > MAX_REFERENCE_LENGTH:
            raise ValidationFailed(f"{name} must be at most {MAX_REFERENCE_LENGTH} characters")
    metadata = body.metadata or {}
    if len(metadata) > MAX_METADATA_KEYS or any(
        not k or len(k) > MAX_METADATA_KEY_LENGTH or len(v) > MAX_METADATA_VALUE_LENGTH
        for k, v in metadata.items()
    ):
        raise ValidationFailed(
            f"metadata: at most {MAX_METADATA_KEYS} keys, keys 1-{MAX_METADATA_KEY_LENGTH} characters, "
            f"values up to {MAX_METADATA_VALUE_LENGTH}"
        )
    # Free text never carries a card number (payment_reference is the processor's id: not free text).
    refuse_card_numbers({"order_id": body.order_id, "invoice_id": body.invoice_id})
    for key, value in metadata.items():
        refuse_card_numbers({"a metadata key": key})  # named without the key: it is the suspect text
        refuse_card_numbers({f"metadata.{key}": value})


@functools.cache
def _earlier_request() -> Select[Any]:
    """The refund an earlier request of this client with this key created, if any."""
    return select(REFUNDS.c.id, REFUNDS.c.request_fingerprint).where(
        REFUNDS.c.client_scope == bindparam("scope"), REFUNDS.c.idempotency_key == bindparam("key")
    )


async def replay_of(rt: Runtime, scope: str, key: str, fingerprint: str) -> Refund | None:
    """The refund an earlier request with this key created (409 if that request was different)."""
    rows = await rt.db.fetch_all(_earlier_request(), {"scope": scope, "key": key})
    if not rows:
        return None
    return await _replay(rt, rows[0].id, rows[0].request_fingerprint, fingerprint)


async def _replay(rt: Runtime, refund_id: UUID, earlier_fingerprint: str | None, fingerprint: str) -> Refund:
    """The earlier request's refund, as the answer to this one: 409 if this request is different."""
    if earlier_fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    async with rt.db.read_session() as session:
        refund = await session.get(Refund, refund_id)
    assert refund is not None  # refunds are never deleted
    return refund


@dataclass(frozen=True, slots=True)
class _Lookup:
    replay_id: UUID | None
    replay_fingerprint: str | None
    payments: list[Row[Any]]


@functools.cache
def _lookup_statement(by_connection: bool) -> Select[Any]:
    """One round trip: the refund an earlier request with this key made, and up to two payments
    with this reference (two means it is ambiguous), each outer-joined to a one-row anchor."""
    replay = _earlier_request().subquery("replay")
    payment = select(PAYMENTS).where(PAYMENTS.c.payment_reference == bindparam("reference"))
    if by_connection:
        payment = payment.where(PAYMENTS.c.connection_id == bindparam("connection_id"))
    found = payment.limit(2).subquery("payment")
    anchor = select(literal(1).label("one")).subquery("anchor")
    return select(
        replay.c.id.label("replay_id"), replay.c.request_fingerprint.label("replay_fingerprint"), *found.c
    ).select_from(anchor.outerjoin(replay, true()).outerjoin(found, true()))


async def _lookup(
    rt: Runtime, body: RefundCreate, scope: str, key: str, connection_id: UUID | None
) -> _Lookup:
    params: dict[str, Any] = {"scope": scope, "key": key, "reference": body.payment_reference}
    if connection_id is not None:
        params["connection_id"] = connection_id
    rows = await rt.db.fetch_all(_lookup_statement(connection_id is not None), params)
    return _Lookup(rows[0].replay_id, rows[0].replay_fingerprint, [row for row in rows if row.id is not None])


async def _connection_named(rt: Runtime, body: RefundCreate) -> UUID | None:
    if body.connection is None:
        return None
    conn = await rt.connections.by_name(body.connection)
    if conn is None:
        raise ValidationFailed(f"unknown connection {body.connection!r}", code="unknown_connection")
    return conn.id


def _the_payment(body: RefundCreate, payments: list[Row[Any]]) -> Row[Any]:
    if not payments:
        raise ValidationFailed(f"no payment {body.payment_reference!r} is registered", code="unknown_payment")
    if len(payments) > 1:
        raise ValidationFailed(
            "this payment_reference exists on several connections; name the connection",
            code="ambiguous_payment",
        )
    return payments[0]


async def _check_against_payment(rt: Runtime, body: RefundCreate, payment: Row[Any]) -> None:
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
    # Decided by the processor's adapter (e.g. PayPal takes HUF only in whole units): refused here, so
    # nothing is reserved or sent that the processor must refuse.
    refusal = amount_refusal(get_gateway(conn.processor), body.amount, payment.currency)
    if refusal is not None:
        raise ValidationFailed(refusal, code="amount_not_supported")
    for name in ("order_id", "invoice_id"):
        given, known = getattr(body, name), getattr(payment, name)
        if given and known and given != known:  # an empty id is no id: the payment's is kept
            raise ValidationFailed(
                f"{name} {given!r} does not match the payment's {known!r}", code="reference_mismatch"
            )


class _NotRefundable(Exception):
    """The amount does not fit (on SQLite raised inside the write transaction, to roll the insert back)."""


async def create_refund(
    rt: Runtime,
    body: RefundCreate,
    *,
    scope: str,
    idempotency_key: str,
    actor: Actor,
    source: Source,
    amount_limit: int | None = None,
    created_by: str | None = None,
) -> Intake:
    """Check a refund request against its payment, reserve the amount, record it, and queue it
    (exactly once per key within ``scope``, the client). A refund at or above the threshold waits for
    approval instead. ``created_by``: the credential that sent it, when not the scope itself."""
    fingerprint = _fingerprint(body)
    try:
        connection_id = await _connection_named(rt, body)
    except ValidationFailed:  # the key's earlier use still answers first (409, or its replay)
        replay = await replay_of(rt, scope, idempotency_key, fingerprint)
        if replay is None:
            raise
        return Intake(replay, created=False)
    found = await _lookup(rt, body, scope, idempotency_key, connection_id)
    if found.replay_id is not None:
        replay = await _replay(rt, found.replay_id, found.replay_fingerprint, fingerprint)
        return Intake(replay, created=False)
    _check_shape(body)
    if amount_limit is not None and body.amount > amount_limit:
        raise ValidationFailed(
            f"your role may start refunds of at most {format_money(amount_limit, body.currency)}; "
            "ask an approver",
            code="amount_over_role_limit",
        )
    if not found.payments and connection_id is not None and body.connection is not None:
        others = await other_connections(rt, body.payment_reference, connection_id)
        if others:
            raise ValidationFailed(
                on_other_connection(body.payment_reference, body.connection, others),
                code="payment_on_other_connection",
            )
    payment = _the_payment(body, found.payments)
    await _check_against_payment(rt, body, payment)
    threshold = rt.settings.approval_threshold_for(payment.currency)
    needs_approval = body.amount >= threshold
    refund = _new_refund(
        body, payment, scope, idempotency_key, fingerprint, needs_approval, created_by or scope
    )
    detail = f"requested by {actor.id}: {body.reason}"
    if needs_approval:
        at_least = format_money(threshold, payment.currency)
        detail += f"; at or above the {at_least} threshold, a second person must approve"
    first = RefundEvent(
        refund_id=refund.id, at=refund.created_at, status=refund.status, source=source.value, detail=detail
    )
    audit = NewEntry.of(
        actor,
        f"{source.value}:refund:create",
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
    params = {f"r_{name}": getattr(refund, _attribute(name)) for name in REFUND_COLUMNS}
    params.update({f"e_{name}": getattr(first, name) for name in EVENT_COLUMNS})
    params.update({f"a_{name}": value for name, value in audit.columns().items()})
    try:
        inserted = await _write(rt, params)
    except _NotRefundable:
        # A concurrent twin with this key may be what took the amount: then answer as its replay.
        replay = await replay_of(rt, scope, idempotency_key, fingerprint)
        if replay is not None:
            return Intake(replay, created=False)
        refundable = await _refundable(rt, payment.id)
        currency = payment.currency
        raise ValidationFailed(
            f"amount {body.amount} ({format_money(body.amount, currency)}) exceeds the {refundable} "
            f"({format_money(refundable, currency)}) still refundable on {payment.payment_reference}",
            code="amount_exceeds_refundable",
            extra={"refundable_amount": refundable},
        ) from None
    if not inserted:  # a concurrent request with the same key committed first: answer as its replay
        replay = await replay_of(rt, scope, idempotency_key, fingerprint)
        if replay is None:
            raise Conflict("this request conflicted with a concurrent one; retry it", code="conflict")
        return Intake(replay, created=False)
    signals.refund_changed(refund.id)
    if not needs_approval:  # committed: now the side effect (a lost message is re-sent by the sweeper)
        await enqueue_execution(rt, refund.id)
    return Intake(refund, created=True, events=[first])


def _attribute(column: str) -> str:
    return "metadata_" if column == "metadata_encrypted" else column


async def _write(rt: Runtime, params: dict[str, Any]) -> bool:
    """Insert the refund, reserve its amount, and write its first event and audit entry, atomically.
    False when the key was taken meanwhile; raises _NotRefundable (nothing written) when it does not fit."""
    try:
        if rt.db.is_sqlite:
            await rt.db.run_sqlite_write(functools.partial(_write_one_by_one, params))
            return True
        async with rt.db.autocommit_connection() as conn:
            if not (await conn.execute(_single_statement(), params)).scalar_one():
                raise _NotRefundable
    except IntegrityError as err:
        # Not ON CONFLICT DO NOTHING: the dialects' upsert constructs are not statement-cacheable.
        if KEY_INDEX in str(err.orig) or "refunds.client_scope, refunds.idempotency_key" in str(err.orig):
            return False
        raise
    return True


def _refund_values() -> dict[str, Any]:
    return {name: bindparam(f"r_{name}", type_=REFUNDS.c[name].type) for name in REFUND_COLUMNS}


def _event_values(refund_id: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"refund_id": refund_id}
    values.update({name: bindparam(f"e_{name}", type_=EVENTS.c[name].type) for name in EVENT_COLUMNS})
    return values


def _audit_values() -> dict[str, Any]:
    return {name: bindparam(f"a_{name}", type_=AUDIT.c[name].type) for name in AUDIT_COLUMNS}


def _reserve() -> Update:
    """The guarded reservation (as payments.services.reserve); ``updated_at`` is explicit because
    column onupdate defaults are not applied inside a CTE."""
    amount = bindparam("r_amount", type_=REFUNDS.c.amount.type)
    return (
        update(PAYMENTS)
        .where(
            PAYMENTS.c.id == bindparam("r_payment_id", type_=REFUNDS.c.payment_id.type),
            PAYMENTS.c.reserved_amount + amount <= PAYMENTS.c.amount,
        )
        .values(
            reserved_amount=PAYMENTS.c.reserved_amount + amount,
            updated_at=bindparam("r_updated_at", type_=PAYMENTS.c.updated_at.type),
        )
    )


@functools.cache
def _single_statement() -> Select[Any]:
    """PostgreSQL, one statement and so one transaction: reserve (if it fits) -> insert the refund
    (a taken key fails the statement and so undoes the reservation) -> event + audit. The count of
    refunds inserted is 0 when the amount did not fit, and then nothing was written."""
    reserved = _reserve().returning(PAYMENTS.c.id).cte("reserved")
    refund_values = _refund_values()
    inserted = (
        insert(REFUNDS)
        .from_select(list(refund_values), _select_values(refund_values).select_from(reserved))
        .returning(REFUNDS.c.id)
        .cte("inserted")
    )
    event_values = _event_values(inserted.c.id)
    event = (
        insert(EVENTS)
        .from_select(list(event_values), _select_values(event_values).select_from(inserted))
        .returning(EVENTS.c.id, EVENTS.c.refund_id)
        .cte("event")
    )
    audit_values = _audit_values()
    audit = insert(AUDIT).from_select(list(audit_values), _select_values(audit_values).select_from(inserted))
    deliveries = _deliveries(refund_id=event.c.refund_id, event_id=event.c.id, source=event)
    return (
        select(select(func.count()).select_from(inserted).scalar_subquery().label("inserted"))
        .add_cte(event)
        .add_cte(audit.cte("audit"))
        .add_cte(deliveries.cte("deliveries"))
    )


def _deliveries(*, refund_id: Any, event_id: Any, source: Any = None) -> Insert:
    """The outgoing webhooks' deliveries of a new refund (outgoing.outbox): ``refund.created``, and
    ``refund.pending_approval`` after it when it waits for a second person."""
    waits = bindparam("r_status", type_=REFUNDS.c.status.type) == Status.PENDING_APPROVAL.value
    return outbox.refund_changed(
        [(CREATED, None), (PENDING_APPROVAL, waits)],
        refund_id=refund_id,
        event_id=event_id,
        connection_id=bindparam("r_connection_id", type_=REFUNDS.c.connection_id.type),
        at=bindparam("r_created_at", type_=DELIVERIES.c.occurred_at.type),
        source=source,
    )


def _select_values(values: dict[str, Any]) -> Select[Any]:
    return select(*[value.label(name) for name, value in values.items()])


def _write_one_by_one(params: dict[str, Any], conn: Connection) -> None:
    """SQLite: the same writes one after another, in the one transaction ``run_sqlite_write`` holds."""
    statements = _sqlite_statements()
    conn.execute(statements.refund, params)
    if not conn.execute(statements.reserve, params).rowcount:
        raise _NotRefundable
    (event_id,) = conn.execute(statements.event, params).inserted_primary_key or (None,)
    conn.execute(statements.audit, params)
    if outbox.any_endpoint(conn):
        conn.execute(statements.deliveries, params | {"o_event_id": event_id})


@dataclass(frozen=True, slots=True)
class _SqliteStatements:
    refund: Insert
    reserve: Update
    event: Insert
    audit: Insert
    deliveries: Insert


@functools.cache
def _sqlite_statements() -> _SqliteStatements:
    return _SqliteStatements(
        refund=insert(REFUNDS).values(**_refund_values()),
        reserve=_reserve(),
        event=insert(EVENTS).values(**_event_values(bindparam("r_id", type_=REFUNDS.c.id.type))),
        audit=insert(AUDIT).values(**_audit_values()),
        deliveries=_deliveries(
            refund_id=bindparam("r_id", type_=REFUNDS.c.id.type),
            event_id=bindparam("o_event_id", type_=DELIVERIES.c.event_id.type),
        ),
    )


async def _refundable(rt: Runtime, payment_id: UUID) -> int:
    (row,) = await rt.db.fetch_all(
        select(PAYMENTS.c.amount, PAYMENTS.c.reserved_amount).where(PAYMENTS.c.id == payment_id)
    )
    return max(int(row[0]) - int(row[1]), 0)


def _new_refund(
    body: RefundCreate,
    payment: Row[Any],
    scope: str,
    key: str,
    fingerprint: str,
    needs_approval: bool,
    created_by: str,
) -> Refund:
    now = dt.datetime.now(dt.UTC)
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
        created_by=created_by,  # the stable identity (user:<sub>, api_key:<id>) four-eyes checks use
        created_at=now,
        updated_at=now,
    )
    refund.id = uuid7()  # time-ordered, like every other id (advanced-alchemy[uuid])
    refund.gateway_idempotency_key = gateway_key(refund.id)
    return refund
