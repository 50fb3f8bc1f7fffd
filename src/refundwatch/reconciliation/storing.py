"""A settlement file's lines, parsed and written in batches at bulk-load speed.

The parser runs in a thread, one batch ahead of the writer: while the database stores a batch, the
next one is parsed (the database's own work, in its process or SQLite's C code, overlaps Python's).
Each line becomes one tuple in the table's column order, nothing more. Memory holds at most three
batches.

PostgreSQL stores the whole file in the caller's transaction: each batch is copied into a temporary
table (asyncpg's binary ``COPY``) and moved into ``settlement_lines`` with the lines that plainly agree
with their refund already matched (``agreeing``). SQLite takes each batch as one committed
``executemany`` of a prepared insert, its values converted by the same type processors SQLAlchemy
would use, and leaves every line to matching.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, BinaryIO, cast
from uuid import UUID

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from refundwatch.db.models import SettlementEntry
from refundwatch.reconciliation import agreeing
from refundwatch.reconciliation.lines import SettlementLine
from refundwatch.reconciliation.parsing import SettlementFormatError
from refundwatch.refunds.schemas import MAX_AMOUNT
from refundwatch.runtime import Runtime

LINES = cast(Table, SettlementEntry.__table__)
BATCH = 10_000  # lines per write: a few MB of tuples; fewer, larger writes

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


# As the API's own bound (refunds.schemas.MAX_AMOUNT): far beyond any real line, and a breaks' figures
# and a batch's sums stay inside BIGINT. A larger value is a broken file, refused before anything is kept.
MAX_LINE_AMOUNT = MAX_AMOUNT


def _rows(lines: Iterator[SettlementLine], file_id: Any, connection_id: Any, name: str) -> Iterator[Row]:
    for line in lines:
        if max(abs(line.gross), abs(line.fee), abs(line.net)) > MAX_LINE_AMOUNT:
            raise SettlementFormatError(
                name, line.row_number, f"an amount beyond {MAX_LINE_AMOUNT:,} minor units is not a real one"
            )
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


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    lines: int
    matched: int  # lines stored already matched (PostgreSQL: ``agreeing``)


async def _pipeline(rows: Iterator[Row], write: Callable[[list[Row]], Awaitable[int]]) -> Stored:
    """Parse the next batch in a thread while ``write`` stores this one (it returns how many it matched)."""
    count = matched = 0
    pending = asyncio.ensure_future(asyncio.to_thread(_take, rows))
    try:
        while batch := await pending:
            pending = asyncio.ensure_future(asyncio.to_thread(_take, rows))  # the next, while this is written
            matched += await write(batch)
            count += len(batch)
    finally:
        if not pending.done():  # a failed write: let the parse running in its thread finish first
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
    return Stored(count, matched)


async def store_lines_postgresql(
    conn: AsyncConnection,
    file_id: UUID,
    connection_id: UUID,
    stream: BinaryIO,
    name: str,
    parse: Parse,
    siblings: Sequence[UUID],
) -> Stored:
    """Parse ``stream`` and store its lines under ``file_id`` in ``conn``'s transaction (the caller
    commits, or rolls back: then nothing of the file is kept). A parse error is raised as it comes.
    ``siblings``: the connection and those reaching the same account (``ConnectionCache.siblings``)."""
    await conn.execute(text(agreeing.create_incoming(COLUMNS)))  # through SQLAlchemy: begins the transaction
    for setting in agreeing.SETTINGS:
        await conn.execute(text(setting))
    driver = (await conn.get_raw_connection()).driver_connection

    async def write(batch: list[Row]) -> int:
        return await agreeing.store(driver, batch, COLUMNS, _STORE_BATCH, connection_id, siblings)

    return await _pipeline(_rows(parse(stream, name), file_id, connection_id, name), write)


_STORE_BATCH = agreeing.store_batch(COLUMNS)


# --- SQLite ----------------------------------------------------------------------------------------


async def store_lines_sqlite(
    rt: Runtime, file_id: UUID, connection_id: UUID, stream: BinaryIO, name: str, parse: Parse
) -> Stored:
    """Parse ``stream`` and store its lines under ``file_id``, each batch committed. A parse error is
    raised as it comes, with the batches before it committed (the importer removes them)."""
    write_batch = _sqlite_writer(rt)

    async def write(batch: list[Row]) -> int:
        await write_batch(batch)
        return 0

    rows = _sqlite_rows(_rows(parse(stream, name), *_sqlite_values(file_id, connection_id), name))
    return await _pipeline(rows, write)


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


def _sqlite_writer(rt: Runtime) -> Callable[[list[Row]], Awaitable[None]]:
    def insert(conn: Connection, batch: list[Row]) -> None:
        conn.exec_driver_sql(_INSERT, batch)  # type: ignore[arg-type]

    async def write(batch: list[Row]) -> None:
        await rt.db.run_sqlite_write(lambda conn: insert(conn, batch))

    return write
