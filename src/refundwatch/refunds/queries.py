"""Read side of refunds: filtered keyset-paginated lists (ids are time-ordered UUIDv7).

One set of filter conditions serves the API list, the staff page and the CSV export, so a filter means
the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row, and_, func, or_, select

from refundwatch.db.models import Refund, RefundEvent
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.lib.identifiers import whole_number
from refundwatch.refunds.states import Status
from refundwatch.runtime import Runtime


@dataclass(frozen=True, slots=True)
class RefundFilter:
    status: str | None = None
    connection: str | None = None
    payment_reference: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    cursor: str | None = None
    limit: int = 50
    # Staff filters (optional; the API does not send them). Added after ``limit`` because the API
    # builds this positionally.
    statuses: tuple[str, ...] = ()  # any of these
    reason: str | None = None
    error: str | None = None  # our error code or the processor's own code
    currency: str | None = None
    min_amount: int | None = None  # minor units, inclusive
    max_amount: int | None = None  # minor units, inclusive
    q: str | None = None  # exactly a payment reference, order id or invoice id
    sort: str = "newest"  # one of SORTS; the cursor's shape follows it


# The orders a list can be read in, each a keyset on (its column, id) so paging stays exact.
SORTS = ("newest", "oldest", "amount_desc", "amount_asc")


@dataclass(frozen=True, slots=True)
class Total:
    currency: str
    count: int
    amount: int


@dataclass(frozen=True, slots=True)
class Page:
    refunds: list[Refund]
    events: dict[UUID, list[RefundEvent]]
    next_cursor: str | None


MAX_PAGE = 200  # refunds per page, at most


def _aware(moment: dt.datetime) -> dt.datetime:
    """A time without a zone is taken as UTC, the zone every stored time is in."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _known_status(value: str) -> str:
    if value not in Status.__members__.values():
        raise ValidationFailed(f"unknown status {value!r}", code="validation_error")
    return value


async def filter_conditions(rt: Runtime, f: RefundFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter (cursor and limit aside); raises ValidationFailed on a bad value."""
    terms: list[ColumnElement[bool]] = []
    if f.status is not None:
        terms.append(Refund.status == _known_status(f.status))
    if f.connection is not None:
        conn = await rt.connections.by_name(f.connection)
        if conn is None:
            raise ValidationFailed(f"unknown connection {f.connection!r}", code="unknown_connection")
        terms.append(Refund.connection_id == conn.id)
    if f.payment_reference is not None:
        terms.append(Refund.payment_reference == f.payment_reference)
    if f.created_after is not None:
        terms.append(Refund.created_at >= _aware(f.created_after))
    if f.created_before is not None:
        terms.append(Refund.created_at < _aware(f.created_before))
    return terms + _staff_conditions(f)


def _staff_conditions(f: RefundFilter) -> list[ColumnElement[bool]]:
    terms: list[ColumnElement[bool]] = []
    if f.statuses:
        terms.append(Refund.status.in_([_known_status(s) for s in f.statuses]))
    if f.reason is not None:
        terms.append(Refund.reason == f.reason)
    if f.error is not None:
        terms.append(or_(Refund.error_code == f.error, Refund.processor_code == f.error))
    if f.currency is not None:
        terms.append(Refund.currency == f.currency)
    if f.min_amount is not None:
        terms.append(Refund.amount >= f.min_amount)
    if f.max_amount is not None:
        terms.append(Refund.amount <= f.max_amount)
    if f.q is not None:
        # An OR of equalities: each term needs its own index for the database to combine them
        # (payment_reference has one; order_id and invoice_id need ix_refunds_order_id/_invoice_id).
        terms.append(or_(Refund.payment_reference == f.q, Refund.order_id == f.q, Refund.invoice_id == f.q))
    return terms


MAX_CURSOR_AMOUNT = 10**15  # refunds.schemas.MAX_AMOUNT: no refund is for more


def parse_cursor(cursor: str, sort: str) -> tuple[int | None, UUID]:
    """A cursor is the last row's id, with its amount first (``<amount>.<id>``) for an amount sort."""
    invalid = ValidationFailed("cursor is not valid", code="invalid_cursor")
    amount, _, ident = cursor.partition(".") if sort.startswith("amount") else ("", "", cursor)
    # Only an amount a refund can have: a larger one overflowed the database's integer (SQLite: a
    # 500; PostgreSQL: a bare JSON error instead of the page's).
    value = whole_number(amount, MAX_CURSOR_AMOUNT) if sort.startswith("amount") else None
    if sort.startswith("amount") and value is None:
        raise invalid
    try:
        return value, UUID(ident)
    except ValueError:
        raise invalid from None


def _ordered(f: RefundFilter) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """The keyset term after the cursor, and the ORDER BY, for the filter's sort."""
    sort = f.sort if f.sort in SORTS else "newest"
    amount, last = parse_cursor(f.cursor, sort) if f.cursor else (None, None)
    after: list[ColumnElement[bool]] = []
    if sort == "newest":
        after = [Refund.id < last] if last else []
        return after, [Refund.id.desc()]
    if sort == "oldest":
        after = [Refund.id > last] if last else []
        return after, [Refund.id.asc()]
    if sort == "amount_desc":
        if last is not None and amount is not None:
            after = [or_(Refund.amount < amount, and_(Refund.amount == amount, Refund.id < last))]
        return after, [Refund.amount.desc(), Refund.id.desc()]
    if last is not None and amount is not None:
        after = [or_(Refund.amount > amount, and_(Refund.amount == amount, Refund.id > last))]
    return after, [Refund.amount.asc(), Refund.id.asc()]


def _cursor_of(refund: Refund, sort: str) -> str:
    return f"{refund.amount}.{refund.id}" if sort.startswith("amount") else str(refund.id)


async def totals(rt: Runtime, f: RefundFilter) -> list[Total]:
    """How many refunds match the filter (every page of it), and their sum per currency."""
    terms = await filter_conditions(rt, f)
    query = (
        select(Refund.currency, func.count(), func.coalesce(func.sum(Refund.amount), 0))
        .where(*terms)
        .group_by(Refund.currency)
        .order_by(Refund.currency)
    )
    async with rt.db.read_session() as session:
        rows = (await session.execute(query)).all()
    return [Total(currency, int(count), int(amount)) for currency, count, amount in rows]


async def list_refunds(rt: Runtime, f: RefundFilter) -> Page:
    if not 1 <= f.limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    terms = await filter_conditions(rt, f)
    after, order = _ordered(f)
    query = select(Refund).where(*terms, *after).order_by(*order).limit(f.limit + 1)
    async with rt.db.read_session() as session:
        rows = list((await session.scalars(query)).all())
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        events: dict[UUID, list[RefundEvent]] = defaultdict(list)
        if rows:
            for event in await session.scalars(
                select(RefundEvent)
                .where(RefundEvent.refund_id.in_([r.id for r in rows]))
                .order_by(RefundEvent.id)
            ):
                events[event.refund_id].append(event)
    return Page(rows, events, _cursor_of(rows[-1], f.sort) if more else None)


async def walk_rows(
    rt: Runtime, terms: Sequence[ColumnElement[bool]], columns: Sequence[Any], *, batch: int = 1000
) -> AsyncIterator[Sequence[Row[Any]]]:
    """Every row matching ``terms`` (from ``filter_conditions``), newest first, ``batch`` at a time;
    each row is the refund's id followed by ``columns``.

    Keyset pages on the id, each in its own short read transaction: memory stays flat however many
    rows match, and a long export holds no transaction open (nor a connection between batches).
    Refunds created after the walk started have higher ids and are not included.
    """
    last: UUID | None = None
    while True:
        query = select(Refund.id, *columns).where(*terms).order_by(Refund.id.desc()).limit(batch)
        if last is not None:
            query = query.where(Refund.id < last)
        async with rt.db.read_session() as session:
            rows = (await session.execute(query)).all()
        if rows:
            yield rows
        if len(rows) < batch:
            return
        last = rows[-1][0]
