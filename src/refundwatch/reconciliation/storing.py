"""A settlement file's lines, parsed and written in committed batches at bulk-load speed.

The parser runs in a thread, one batch ahead of the writer: while the database stores a batch, the
next one is parsed (the database's own work, in its process or SQLite's C code, overlaps Python's).
Each line becomes one tuple in the table's column order, nothing more. PostgreSQL takes a batch as
``COPY`` (asyncpg's binary copy); SQLite as one ``executemany`` of a prepared insert, its values
converted by the same type processors SQLAlchemy would use. Memory holds at most three batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast
from uuid import UUID

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import sqlite

from refundwatch.db.models import SettlementEntry
from refundwatch.reconciliation.lines import SettlementLine
from refundwatch.runtime import Runtime

LINES = cast(Table, SettlementEntry.__table__)
BATCH = 10_000  # lines per committed write: a few MB of tuples; fewer, larger writes

# The columns an imported line fills, in the order of ``_row``'s tuple.
COLUMNS = (
    "file_id",
    "connection_id",
    "row_number",
    "row_hash",
    "raw",
    "line_key",
    "kind",
    "direction",
    "gross",
    "fee",
    "net",
    "currency",
    "settlement_currency",
    "gateway_refund_id",
    "gateway_payment_id",
    "merchant_reference",
    "payout_id",
    "occurred_at",
    "source_timezone",
    "raw_type",
)

Parse = Callable[[BinaryIO, str], Iterator[SettlementLine]]
Row = tuple[Any, ...]


def _rows(lines: Iterator[SettlementLine], file_id: Any, connection_id: Any) -> Iterator[Row]:
    for line in lines:
        yield (
            file_id,
            connection_id,
            line.row_number,
            line.row_hash,
            line.raw,
            line.line_key[:255],
            line.kind.value,
            line.direction.value,
            line.gross,
            line.fee,
            line.net,
            line.currency,
            line.settlement_currency,
            line.gateway_refund_id,
            line.gateway_payment_id,
            line.merchant_reference,
            line.payout_id,
            line.occurred_at,
            line.source_timezone,
            (line.raw_type or "")[:64],
        )


def _take(rows: Iterator[Row]) -> list[Row]:
    return list(itertools.islice(rows, BATCH))


async def store_lines(
    rt: Runtime, file_id: UUID, connection_id: UUID, stream: BinaryIO, name: str, parse: Parse
) -> int:
    """Parse ``stream`` and store its lines under ``file_id``; the number stored. A parse error is
    raised as it comes, with the batches before it committed (the importer removes them)."""
    write: Callable[[list[Row]], Any]
    if rt.db.is_sqlite:
        write, keys = _sqlite_writer(rt), _sqlite_values(file_id, connection_id)
    else:
        write, keys = _postgresql_writer(rt), (file_id, connection_id)
    rows = _rows(parse(stream, name), *keys)
    if rt.db.is_sqlite:
        rows = _sqlite_rows(rows)
    count = 0
    pending = asyncio.ensure_future(asyncio.to_thread(_take, rows))
    try:
        while batch := await pending:
            pending = asyncio.ensure_future(asyncio.to_thread(_take, rows))  # the next, while this is written
            await write(batch)
            count += len(batch)
    finally:
        if not pending.done():  # a failed write: let the parse running in its thread finish first
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
    return count


def _postgresql_writer(rt: Runtime) -> Callable[[list[Row]], Any]:
    async def write(batch: list[Row]) -> None:
        async with rt.db.write_connection() as conn:
            raw = await conn.get_raw_connection()
            copy = raw.driver_connection.copy_records_to_table  # type: ignore[union-attr]
            await copy(LINES.name, records=batch, columns=COLUMNS)

    return write


# --- SQLite ----------------------------------------------------------------------------------------

_DIALECT = sqlite.dialect()
_INSERT = f"INSERT INTO {LINES.name} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_OCCURRED_AT = COLUMNS.index("occurred_at")


def _bind(column: str) -> Callable[[Any], Any]:
    """The value SQLAlchemy would send SQLite for ``column`` (its type's bind processing)."""
    process = LINES.c[column].type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
    return process or (lambda value: value)


def _sqlite_values(file_id: UUID, connection_id: UUID) -> tuple[Any, Any]:
    return _bind("file_id")(file_id), _bind("connection_id")(connection_id)


def _sqlite_rows(rows: Iterator[Row]) -> Iterator[Row]:
    """The rows with their times as SQLite stores them (the only per-line conversion it needs)."""
    stored = _bind("occurred_at")
    at = _OCCURRED_AT
    for row in rows:
        yield (*row[:at], stored(row[at]), *row[at + 1 :])


def _sqlite_writer(rt: Runtime) -> Callable[[list[Row]], Any]:
    def insert(conn: Connection, batch: list[Row]) -> None:
        conn.exec_driver_sql(_INSERT, batch)  # type: ignore[arg-type]

    async def write(batch: list[Row]) -> None:
        await rt.db.run_sqlite_write(lambda conn: insert(conn, batch))

    return write
