"""Read side of refunds: filtered keyset-paginated lists (ids are time-ordered UUIDv7)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from refundwatch.db.models import Refund, RefundEvent
from refundwatch.lib.exceptions import ValidationFailed
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


@dataclass(frozen=True, slots=True)
class Page:
    refunds: list[Refund]
    events: dict[UUID, list[RefundEvent]]
    next_cursor: str | None


def _aware(moment: dt.datetime) -> dt.datetime:
    """A time without a zone is taken as UTC, the zone every stored time is in."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


async def list_refunds(rt: Runtime, f: RefundFilter) -> Page:
    if not 1 <= f.limit <= 200:
        raise ValidationFailed("limit must be between 1 and 200")
    query = select(Refund).order_by(Refund.id.desc()).limit(f.limit + 1)
    if f.status is not None:
        if f.status not in Status.__members__.values():
            raise ValidationFailed(f"unknown status {f.status!r}", code="validation_error")
        query = query.where(Refund.status == f.status)
    if f.connection is not None:
        conn = await rt.connections.by_name(f.connection)
        if conn is None:
            raise ValidationFailed(f"unknown connection {f.connection!r}", code="unknown_connection")
        query = query.where(Refund.connection_id == conn.id)
    if f.payment_reference is not None:
        query = query.where(Refund.payment_reference == f.payment_reference)
    if f.created_after is not None:
        query = query.where(Refund.created_at >= _aware(f.created_after))
    if f.created_before is not None:
        query = query.where(Refund.created_at < _aware(f.created_before))
    if f.cursor:
        try:
            query = query.where(Refund.id < UUID(f.cursor))
        except ValueError:
            raise ValidationFailed("cursor is not valid", code="invalid_cursor") from None
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
    return Page(rows, events, str(rows[-1].id) if more else None)
