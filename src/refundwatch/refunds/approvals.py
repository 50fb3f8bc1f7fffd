"""The approvals queue: each waiting refund with what an approver needs to decide without opening
anything else (the payment's figures, earlier refunds of it, who asked and how long ago), sortable
and filterable, with the total waiting per currency."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from refundwatch.db.models import Payment, Refund
from refundwatch.refunds.people import requesters
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime

MAX_WAITING = 200
SORTS = {
    "oldest": "Waiting longest",
    "newest": "Newest first",
    "amount": "Largest amount",
}


@dataclass(slots=True)
class Waiting:
    refund: Refund
    payment: Payment | None
    requested_by: str
    requester_kind: str
    earlier: list[Refund] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.payment.reserved_amount - self.payment.refunded_amount if self.payment else 0

    @property
    def refundable(self) -> int:
        return self.payment.amount - self.payment.reserved_amount if self.payment else 0

    def waited(self, now: dt.datetime) -> dt.timedelta:
        return now - self.refund.created_at


@dataclass(slots=True)
class Queue:
    items: list[Waiting]
    totals: list[tuple[str, int, int]]  # currency, amount, count
    sort: str
    currency: str
    connection: str
    currencies: list[str]
    waiting: int = 0  # every refund the filters match; ``items`` holds at most MAX_WAITING of them


async def waiting_queue(
    rt: Runtime, *, sort: str = "oldest", currency: str = "", connection: str = ""
) -> Queue:
    """The filters, the sort and the totals apply to every waiting refund in the database, and the
    page shows the first MAX_WAITING of that order. (Taking the oldest 200 first and filtering and
    sorting those hid every later one: a currency or "newest first" showed nothing of them, and the
    totals counted 200.)"""
    sort = sort if sort in SORTS else "oldest"
    names = {c.id: c.name for c in await rt.connections.all()}
    waiting = Refund.status == Status.PENDING_APPROVAL.value
    terms = [waiting]
    if currency:
        terms.append(Refund.currency == currency)
    if connection:
        terms.append(Refund.connection_id.in_([i for i, name in names.items() if name == connection]))
    async with rt.db.read_session() as db:
        rows = list(await db.scalars(select(Refund).where(*terms).order_by(*_order(sort)).limit(MAX_WAITING)))
        totals = [
            (str(cur), int(total or 0), int(count))
            for cur, total, count in await db.execute(
                select(Refund.currency, func.sum(Refund.amount), func.count())
                .where(*terms)
                .group_by(Refund.currency)
                .order_by(Refund.currency)
            )
        ]
        currencies = sorted(
            str(c) for c in await db.scalars(select(Refund.currency).where(waiting).distinct())
        )
        payment_ids = {r.payment_id for r in rows}
        payments: dict[UUID, Payment] = {}
        earlier: dict[UUID, list[Refund]] = defaultdict(list)
        if payment_ids:
            payments = {p.id: p for p in await db.scalars(select(Payment).where(Payment.id.in_(payment_ids)))}
            for other in await db.scalars(
                select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.id)
            ):
                earlier[other.payment_id].append(other)
    who = await requesters(rt, [r.id for r in rows])
    items = [
        Waiting(
            refund=r,
            payment=payments.get(r.payment_id),
            requested_by=who.get(r.id, (r.created_by, ""))[0],
            requester_kind=who.get(r.id, ("", ""))[1],
            earlier=[o for o in earlier[r.payment_id] if o.id != r.id and o.id < r.id],
        )
        for r in rows
    ]
    return Queue(
        items, totals, sort, currency, connection, currencies, waiting=sum(count for _, _, count in totals)
    )


def _order(sort: str) -> list[Any]:
    if sort == "newest":
        return [Refund.id.desc()]
    if sort == "amount":  # per currency, largest first: amounts in different currencies do not compare
        return [Refund.currency, Refund.amount.desc(), Refund.id]
    return [Refund.id]
