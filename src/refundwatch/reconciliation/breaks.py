"""Reading reconciliation breaks: the API list (CONTRACT §4) and counts by kind."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
from uuid import UUID

import msgspec
from sqlalchemy import func, select

from refundwatch.db.models import ReconciliationBreak
from refundwatch.lib.exceptions import ValidationFailed
from refundwatch.runtime import Runtime

KINDS = (
    "amount_mismatch",
    "currency_mismatch",
    "missing_local",
    "missing_settlement",
    "reversed_after_success",
    "duplicate_line",
    "unmapped",
    "over_refunded",
    "invoice_over_refunded",
)
STATUSES = ("open", "resolved")


class BreakOut(msgspec.Struct):
    id: UUID
    kind: str
    connection: str | None
    refund_id: UUID | None
    gateway_refund_id: str | None
    amount: int | None
    currency: str | None
    expected: int | None
    actual: int | None
    detail: str
    opened_at: dt.datetime
    status: str
    resolution: str | None = None
    reason: str | None = None


class BreakList(msgspec.Struct):
    data: list[BreakOut]
    next_cursor: str | None
    has_more: bool


@dataclasses.dataclass(frozen=True, slots=True)
class BreakFilter:
    kind: str | None = None
    connection: str | None = None
    status: str | None = None
    cursor: str | None = None
    limit: int = 50


def _cursor(value: UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def _after(text: str) -> UUID:
    try:
        return UUID(bytes=base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        raise ValidationFailed("cursor is not valid", code="invalid_cursor") from None


async def list_breaks(rt: Runtime, wanted: BreakFilter) -> BreakList:
    """Newest first (ids are UUIDv7: time ordered), keyset paged."""
    if wanted.kind is not None and wanted.kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", code="invalid_kind")
    if wanted.status is not None and wanted.status not in STATUSES:
        raise ValidationFailed("status must be open or resolved", code="invalid_status")
    query = select(ReconciliationBreak).order_by(ReconciliationBreak.id.desc()).limit(wanted.limit + 1)
    if wanted.kind is not None:
        query = query.where(ReconciliationBreak.kind == wanted.kind)
    if wanted.status is not None:
        query = query.where(ReconciliationBreak.status == wanted.status)
    if wanted.connection is not None:
        conn = await rt.connections.by_name(wanted.connection)
        if conn is None:
            raise ValidationFailed(f"unknown connection {wanted.connection!r}", code="unknown_connection")
        query = query.where(ReconciliationBreak.connection_id == conn.id)
    if wanted.cursor is not None:
        query = query.where(ReconciliationBreak.id < _after(wanted.cursor))
    async with rt.db.read_session() as session:
        rows = list(await session.scalars(query))
    more = len(rows) > wanted.limit
    rows = rows[: wanted.limit]
    data = [await break_out(rt, row) for row in rows]
    return BreakList(data, _cursor(rows[-1].id) if more else None, more)


async def break_out(rt: Runtime, row: ReconciliationBreak) -> BreakOut:
    """One break as the API shows it."""
    return BreakOut(
        id=row.id,
        kind=row.kind,
        connection=await rt.connections.name_of(row.connection_id),
        refund_id=row.refund_id,
        gateway_refund_id=row.gateway_refund_id,
        amount=row.actual if row.actual is not None else row.expected,
        currency=row.currency,
        expected=row.expected,
        actual=row.actual,
        detail=row.detail,
        opened_at=row.opened_at,
        status=row.status,
        resolution=row.resolution,
        reason=row.reason,
    )


async def open_by_kind(rt: Runtime) -> dict[str, int]:
    async with rt.db.read_session() as session:
        rows = await session.execute(
            select(ReconciliationBreak.kind, func.count())
            .where(ReconciliationBreak.status == "open")
            .group_by(ReconciliationBreak.kind)
        )
        return {kind: count for kind, count in rows}
