"""Reading breaks for people: the ``/reconciliation`` page's filter, keyset pages, the summary by kind,
connection, currency and age (with the unreconciled amount per currency), and the CSV export.

One filter means the same on the page, in its summary and in the export. The status filter defaults to
``open``: the page is a work list. Pages are keyset pages on the primary key (UUIDv7: time ordered),
newest first, through ``ix_reconciliation_breaks_status`` when a status is chosen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from sqlalchemy import ColumnElement, and_, case, func, select

from refundwatch.db.models import ReconciliationBreak
from refundwatch.lib import csvcells
from refundwatch.lib.money import is_known_currency, to_decimal_string
from refundwatch.reconciliation.breaks import KINDS
from refundwatch.runtime import Runtime

PAGE = 50
BATCH = 1000  # breaks per query while exporting
FIELDS = ("kind", "connection", "status", "currency", "age")
STATUSES = ("open", "resolved", "any")
# How long a break has been open, as the page groups and filters it: (name, from, to) in days.
AGES: tuple[tuple[str, int | None, int | None], ...] = (
    ("under_1d", None, 1),
    ("1d_to_7d", 1, 7),
    ("7d_to_30d", 7, 30),
    ("over_30d", 30, None),
)
AGE_NAMES = tuple(name for name, _, _ in AGES)
# Kinds whose two figures are both in one currency: what is unreconciled is their difference.
_DIFFERENCE_KINDS = ("amount_mismatch", "over_refunded", "invoice_over_refunded")

B = ReconciliationBreak


@dataclasses.dataclass(slots=True)
class BreakQuery:
    """A parsed query string: the filter, the cursor, what the form shows back, and what was refused."""

    kind: str | None = None
    connection: str | None = None
    connection_id: UUID | None = None  # set by ``resolve_connection``
    status: str = "open"
    currency: str | None = None
    age: str | None = None
    before: UUID | None = None
    form: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def query(self, **override: Any) -> str:
        params = {k: v for k, v in self.form.items() if v}
        params.update({k: str(v) for k, v in override.items() if v is not None})
        return urlencode(params)

    def summary(self) -> dict[str, str]:
        return {k: v for k, v in self.form.items() if v}


def parse(items: Iterable[tuple[str, str]]) -> BreakQuery:
    values = {k: v.strip() for k, v in items if k in (*FIELDS, "before") and v.strip()}
    q = BreakQuery(form={k: values.get(k, "") for k in FIELDS})
    if (kind := values.get("kind")) is not None:
        if kind in KINDS:
            q.kind = kind
        else:
            q.errors.append(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    q.connection = values.get("connection")
    status = values.get("status", "open")
    if status in STATUSES:
        q.status = status
    else:
        q.errors.append(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    if (currency := values.get("currency")) is not None:
        currency = currency.upper()
        q.form["currency"] = currency
        if is_known_currency(currency):
            q.currency = currency
        else:
            q.errors.append(f"currency: {currency!r} is not an ISO 4217 code")
    if (age := values.get("age")) is not None:
        if age in AGE_NAMES:
            q.age = age
        else:
            q.errors.append(f"age: {age!r} is not one of {', '.join(AGE_NAMES)}")
    if (before := values.get("before")) is not None:
        try:
            q.before = UUID(before)
        except ValueError:
            q.errors.append("the page cursor is not valid; start from the newest breaks")
    return q


async def resolve_connection(rt: Runtime, q: BreakQuery) -> None:
    """The connection's id for the queries; an unknown name is one more error."""
    if q.connection is None:
        return
    conn = await rt.connections.by_name(q.connection)
    if conn is None:
        q.errors.append(f"connection: no connection {q.connection!r}")
    else:
        q.connection_id = conn.id


def _age_bounds(name: str, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(opened after, opened at or before) for an age bucket."""
    _, low, high = next(a for a in AGES if a[0] == name)
    newest = now - dt.timedelta(days=low) if low is not None else None
    oldest = now - dt.timedelta(days=high) if high is not None else None
    return oldest, newest


def conditions(q: BreakQuery, now: dt.datetime) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter, cursor aside."""
    terms: list[ColumnElement[bool]] = []
    if q.status != "any":
        terms.append(B.status == q.status)
    if q.kind is not None:
        terms.append(B.kind == q.kind)
    if q.connection_id is not None:
        terms.append(B.connection_id == q.connection_id)
    if q.currency is not None:
        terms.append(B.currency == q.currency)
    if q.age is not None:
        oldest, newest = _age_bounds(q.age, now)
        if oldest is not None:
            terms.append(B.opened_at > oldest)
        if newest is not None:
            terms.append(B.opened_at <= newest)
    return terms


def unreconciled() -> ColumnElement[Any]:
    """What a break leaves unexplained, in minor units of its currency: the difference of its two figures
    when both are in one currency, else the figure the records or refundwatch have (0 for none)."""
    return case(
        (
            and_(B.kind.in_(_DIFFERENCE_KINDS), B.expected.isnot(None), B.actual.isnot(None)),
            func.abs(B.actual - B.expected),
        ),
        (B.actual.isnot(None), B.actual),
        else_=func.coalesce(B.expected, 0),
    )


def unreconciled_of(row: ReconciliationBreak) -> int:
    """The same, for one break in memory."""
    if row.kind in _DIFFERENCE_KINDS and row.expected is not None and row.actual is not None:
        return abs(row.actual - row.expected)
    if row.actual is not None:
        return row.actual
    return row.expected or 0


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    breaks: list[ReconciliationBreak]
    next_before: UUID | None


async def page(rt: Runtime, q: BreakQuery, now: dt.datetime, *, size: int = PAGE) -> Page:
    query = select(B).where(*conditions(q, now)).order_by(B.id.desc()).limit(size + 1)
    if q.before is not None:
        query = query.where(B.id < q.before)
    async with rt.db.read_session() as session:
        rows = list(await session.scalars(query))
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, rows[-1].id if more else None)


@dataclasses.dataclass(slots=True)
class Summary:
    """Breaks of the filter counted by kind, connection, currency and age; amounts per currency."""

    total: int = 0
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    connections: dict[UUID | None, int] = dataclasses.field(default_factory=dict)
    currencies: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # count, amount
    ages: dict[str, int] = dataclasses.field(default_factory=dict)


async def summarise(rt: Runtime, q: BreakQuery, now: dt.datetime) -> Summary:
    """One grouped query over the filter (its groups are few: kinds x connections x currencies x ages)."""
    bucket = case(
        *((B.opened_at > now - dt.timedelta(days=high), name) for name, _, high in AGES if high is not None),
        else_=AGES[-1][0],
    )
    query = (
        select(B.kind, B.connection_id, B.currency, bucket, func.count(), func.sum(unreconciled()))
        .where(*conditions(q, now))
        .group_by(B.kind, B.connection_id, B.currency, bucket)
    )
    found = Summary()
    async with rt.db.read_session() as session:
        rows = (await session.execute(query)).all()
    for kind, connection_id, currency, age, count, amount in rows:
        found.total += count
        found.kinds[kind] = found.kinds.get(kind, 0) + count
        found.connections[connection_id] = found.connections.get(connection_id, 0) + count
        found.ages[age] = found.ages.get(age, 0) + count
        if currency is not None:
            n, total = found.currencies.get(currency, (0, 0))
            found.currencies[currency] = (n + count, total + int(amount or 0))
    found.currencies = dict(sorted(found.currencies.items()))
    return found


# ---------------------------------------------------------------------------------------- export

HEADER = (
    "id",
    "opened_at",
    "kind",
    "status",
    "connection",
    "currency",
    "expected",
    "actual",
    "unreconciled",
    "unreconciled_decimal",
    "refund_id",
    "gateway_refund_id",
    "line_id",
    "detail",
    "resolution",
    "reason",
    "resolved_by",
    "resolved_at",
)


def filename(now: dt.datetime) -> str:
    return csvcells.stamped("reconciliation-breaks", now)


def _record(row: ReconciliationBreak, names: dict[UUID, str]) -> list[str | int]:
    amount = unreconciled_of(row)
    values = (
        str(row.id),
        row.opened_at,
        row.kind,
        row.status,
        names.get(row.connection_id, "?") if row.connection_id is not None else None,
        row.currency,
        row.expected,
        row.actual,
        amount,
        to_decimal_string(amount, row.currency) if row.currency else None,
        str(row.refund_id) if row.refund_id else None,
        row.gateway_refund_id,
        row.line_id,
        row.detail,
        row.resolution,
        row.reason,
        row.resolved_by,
        row.resolved_at,
    )
    return [csvcells.cell(v) for v in values]


async def csv_chunks(rt: Runtime, q: BreakQuery, now: dt.datetime) -> AsyncIterator[bytes]:
    """The header, then every break of the filter (no cursor), newest first, in keyset batches."""
    names = {c.id: c.name for c in await rt.connections.all()}
    terms = conditions(q, now)
    yield csvcells.lines([HEADER])
    before: UUID | None = None
    while True:
        query = select(B).where(*terms).order_by(B.id.desc()).limit(BATCH)
        if before is not None:
            query = query.where(B.id < before)
        async with rt.db.read_session() as session:
            rows = list(await session.scalars(query))
        if not rows:
            return
        yield csvcells.lines([_record(r, names) for r in rows])
        if len(rows) < BATCH:
            return
        before = rows[-1].id
