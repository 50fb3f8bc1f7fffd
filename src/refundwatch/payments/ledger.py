"""A payment as `GET /api/v1/payments/{payment_reference}` shows it: its ledger and its refunds.

The ledger reads the balances intake guards (``reserved_amount``, ``refunded_amount`` on the payment
row), so ``refundable`` is exactly what a new refund may still take; ``reversed`` sums the refunds
that succeeded and were later reversed (that money came back to the merchant).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.db.models import Payment, Refund, RefundEvent
from refundwatch.lib.exceptions import NotFound, ValidationFailed
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime

MAX_REFUNDS = 500  # a payment with more refunds than this lists its newest (the ledger counts them all)


@dataclass(frozen=True, slots=True)
class Ledger:
    captured: int
    refunded: int
    in_flight: int  # reserved by refunds not final yet (waiting for approval, queued, at the processor)
    reversed: int
    refundable: int


@dataclass(frozen=True, slots=True)
class GroupLedger:
    """The ledger of every payment sharing an order or an invoice, in one currency."""

    currency: str
    payments: int
    captured: int
    refunded: int
    in_flight: int
    reversed: int
    refundable: int


@dataclass(frozen=True, slots=True)
class PaymentView:
    payment: Payment
    connection: str
    ledger: Ledger
    refunds: list[Refund]
    events: dict[UUID, list[RefundEvent]]
    # Returns systems think in orders and invoices: the same figures over all their payments.
    order: list[GroupLedger] | None = None
    invoice: list[GroupLedger] | None = None


async def group_ledgers(session: AsyncSession, column: Any, value: str) -> list[GroupLedger]:
    """Per currency, over every payment (any connection) whose ``column`` is ``value``."""
    in_flight = case(
        (
            Payment.reserved_amount > Payment.refunded_amount,
            Payment.reserved_amount - Payment.refunded_amount,
        ),
        else_=0,
    )
    refundable = case(
        (Payment.amount > Payment.reserved_amount, Payment.amount - Payment.reserved_amount), else_=0
    )
    totals = await session.execute(
        select(
            Payment.currency,
            func.count(),
            func.sum(Payment.amount),
            func.sum(Payment.refunded_amount),
            func.sum(in_flight),
            func.sum(refundable),
        )
        .where(column == value)
        .group_by(Payment.currency)
        .order_by(Payment.currency)
    )
    rows = (
        await session.execute(
            select(Refund.currency, func.sum(Refund.amount))
            .join(Payment, Payment.id == Refund.payment_id)
            .where(column == value, Refund.status == Status.REVERSED.value)
            .group_by(Refund.currency)
        )
    ).all()
    reversed_by: dict[str, int] = {currency: int(total or 0) for currency, total in rows}
    return [
        GroupLedger(
            currency,
            int(n),
            int(captured),
            int(refunded),
            int(flight),
            int(reversed_by.get(currency, 0)),
            int(left),
        )
        for currency, n, captured, refunded, flight, left in totals
    ]


async def other_connections(rt: Runtime, reference: str, not_on: UUID | None = None) -> list[str]:
    """Names of the (other) connections that have a payment with this reference: a few, to choose from."""
    query = select(Payment.connection_id).where(Payment.payment_reference == reference)
    if not_on is not None:
        query = query.where(Payment.connection_id != not_on)
    async with rt.db.read_session() as session:
        ids = await session.scalars(query.limit(5))
        found = [await rt.connections.by_id(i) for i in ids]
    return sorted(info.name for info in found if info is not None)


def on_other_connection(reference: str, connection: str, others: list[str]) -> str:
    return (
        f"payment {reference!r} is registered on connection {', '.join(others)}, not {connection!r}; "
        "name that connection, or leave connection out"
    )


async def _find(rt: Runtime, reference: str, connection: str | None) -> Payment:
    query = select(Payment).where(Payment.payment_reference == reference)
    conn_id: UUID | None = None
    if connection is not None:
        info = await rt.connections.by_name(connection)
        if info is None:
            raise ValidationFailed(f"unknown connection {connection!r}", code="unknown_connection")
        conn_id = info.id
        query = query.where(Payment.connection_id == conn_id)
    async with rt.db.read_session() as session:
        found = list((await session.scalars(query.limit(2))).all())
    if len(found) > 1:
        raise ValidationFailed(
            "this payment_reference exists on several connections; name the connection",
            code="ambiguous_payment",
        )
    if found:
        return found[0]
    others = await other_connections(rt, reference, conn_id) if conn_id is not None else []
    if others and connection is not None:
        message = on_other_connection(reference, connection, others)
        raise NotFound(message, code="payment_on_other_connection")
    raise NotFound(f"no payment {reference!r} is registered", code="payment_not_found")


async def payment_view(rt: Runtime, reference: str, connection: str | None) -> PaymentView:
    payment = await _find(rt, reference, connection)
    async with rt.db.read_session() as session:
        refunds = list(
            (
                await session.scalars(
                    select(Refund)
                    .where(Refund.payment_id == payment.id)
                    .order_by(Refund.id.desc())
                    .limit(MAX_REFUNDS)
                )
            ).all()
        )
        reversed_sum = sum(r.amount for r in refunds if r.status == Status.REVERSED)
        events: dict[UUID, list[RefundEvent]] = defaultdict(list)
        if refunds:
            for event in await session.scalars(
                select(RefundEvent)
                .where(RefundEvent.refund_id.in_([r.id for r in refunds]))
                .order_by(RefundEvent.id)
            ):
                events[event.refund_id].append(event)
        order = await group_ledgers(session, Payment.order_id, payment.order_id) if payment.order_id else None
        invoice = (
            await group_ledgers(session, Payment.invoice_id, payment.invoice_id)
            if payment.invoice_id
            else None
        )
    info = await rt.connections.by_id(payment.connection_id)
    ledger = Ledger(
        captured=payment.amount,
        refunded=payment.refunded_amount,
        in_flight=max(payment.reserved_amount - payment.refunded_amount, 0),
        reversed=reversed_sum,
        refundable=max(payment.amount - payment.reserved_amount, 0),
    )
    return PaymentView(payment, info.name if info else "?", ledger, refunds, events, order, invoice)
