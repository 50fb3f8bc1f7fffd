"""CSV export of a filtered refunds list, streamed in keyset batches so memory stays flat.

Finance opens these files in spreadsheets: every cell is defused against CSV injection (lib.csvcells).
Metadata (personal data, encrypted at rest) is never exported: the query does not even read that column.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Row

from refundwatch.db.models import Refund
from refundwatch.lib import csvcells
from refundwatch.lib.money import to_decimal_string
from refundwatch.refunds.queries import walk_rows
from refundwatch.runtime import Runtime

BATCH = 1000
HEADER = (
    "id",
    "created_at",
    "updated_at",
    "status",
    "connection",
    "payment_reference",
    "order_id",
    "invoice_id",
    "amount",
    "amount_decimal",
    "currency",
    "reason",
    "error_code",
    "processor_code",
    "gateway_refund_id",
    "attempts",
    "accepted_at",
    "finalized_at",
)
# What the query reads, after the id that walk_rows puts first.
_COLUMNS = (
    Refund.created_at,
    Refund.updated_at,
    Refund.status,
    Refund.connection_id,
    Refund.payment_reference,
    Refund.order_id,
    Refund.invoice_id,
    Refund.amount,
    Refund.currency,
    Refund.reason,
    Refund.error_code,
    Refund.processor_code,
    Refund.gateway_refund_id,
    Refund.attempts,
    Refund.accepted_at,
    Refund.finalized_at,
)


def filename(now: dt.datetime) -> str:
    return csvcells.stamped("refunds", now)


def _record(row: Row[Any], names: dict[UUID, str]) -> list[str | int]:
    """One refund's cells, in HEADER's order."""
    values = [
        str(row.id),
        row.created_at,
        row.updated_at,
        row.status,
        names.get(row.connection_id, "?"),
        row.payment_reference,
        row.order_id,
        row.invoice_id,
        row.amount,
        to_decimal_string(row.amount, row.currency),
        row.currency,
        row.reason,
        row.error_code,
        row.processor_code,
        row.gateway_refund_id,
        row.attempts,
        row.accepted_at,
        row.finalized_at,
    ]
    return [csvcells.cell(v) for v in values]


async def csv_chunks(rt: Runtime, terms: Sequence[ColumnElement[bool]]) -> AsyncIterator[bytes]:
    """The header, then one chunk per batch of refunds matching ``terms``, newest first."""
    names = {c.id: c.name for c in await rt.connections.all()}
    yield csvcells.lines([list(HEADER)])
    async for rows in walk_rows(rt, terms, _COLUMNS, batch=BATCH):
        yield csvcells.lines([_record(row, names) for row in rows])
