"""The approvals queue: each waiting refund with what an approver needs to decide without opening
anything else (the payment's figures, earlier refunds of it, who asked and how long ago), sortable
and filterable, with the total waiting per currency."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import select

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


async def waiting_queue(
    rt: Runtime, *, sort: str = "oldest", currency: str = "", connection: str = ""
) -> Queue:
    sort = sort if sort in SORTS else "oldest"
    names = {c.id: c.name for c in await rt.connections.all()}
    async with rt.db.read_session() as db:
        rows = list(
            await db.scalars(
                select(Refund)
                .where(Refund.status == Status.PENDING_APPROVAL.value)
                .order_by(Refund.id)
                .limit(MAX_WAITING)
            )
        )
        currencies = sorted({r.currency for r in rows})
        rows = [
            r
            for r in rows
            if (not currency or r.currency == currency)
            and (not connection or names.get(r.connection_id) == connection)
        ]
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
    _sort(items, sort)
    return Queue(items, _totals(items), sort, currency, connection, currencies)


def _sort(items: list[Waiting], sort: str) -> None:
    if sort == "newest":
        items.sort(key=lambda w: w.refund.id, reverse=True)
    elif sort == "amount":  # per currency, largest first: amounts in different currencies do not compare
        items.sort(key=lambda w: (w.refund.currency, -w.refund.amount))
    else:
        items.sort(key=lambda w: w.refund.id)


def _totals(items: list[Waiting]) -> list[tuple[str, int, int]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for w in items:
        sums[w.refund.currency][0] += w.refund.amount
        sums[w.refund.currency][1] += 1
    return [(cur, total, count) for cur, (total, count) in sorted(sums.items())]
