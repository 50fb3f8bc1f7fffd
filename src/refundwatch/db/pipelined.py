"""PostgreSQL: one statement run for many parameter sets in one pipelined round trip, atomically.

asyncpg's ``fetchmany`` (``executemany`` that keeps the rows) sends every bind and execute before it
waits, inside one transaction: all parameter sets take effect or none do, with one commit. Through
SQLAlchemy each set would be its own round trip and commit, each paying the adapter's per-call work
(greenlet hop, parameter processing, result wrapping). The statement is compiled once by SQLAlchemy's
asyncpg dialect, so the SQL and the bind processors (custom column types) are exactly what SQLAlchemy
itself would send.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from asyncpg import Record
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

if TYPE_CHECKING:
    from refundwatch.db.engine import Database


@functools.cache
def _compiled(
    statement: ClauseElement, dialect: Any
) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]:
    """(SQL with $n placeholders, parameter names by position, literal values, bind processors)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    names = tuple(compiled.positiontup or ())
    # Values the statement carries itself (``literal(...)``, NULL included); every other bind is a
    # parameter the caller must give.
    literals = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
    # SQLAlchemy keeps the per-parameter type processors here; there is no public accessor.
    processors = dict(compiled._bind_processors)  # type: ignore[attr-defined]
    return compiled.string, names, literals, processors


async def fetch_many(
    db: Database, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]
) -> list[Record]:
    """Run ``statement`` once per parameter set in ``rows``, atomically (all or none); the rows every
    run returned, in order. Raises what the database raised, with nothing applied."""
    if db.is_sqlite:
        raise RuntimeError("pipelined execution is for PostgreSQL")
    if not rows:
        return []
    sql, names, literals, processors = _compiled(statement, db.engine.dialect)
    args = []
    for row in rows:
        values = literals | dict(row) if literals else row
        args.append(
            tuple(
                processor(values[name]) if (processor := processors.get(name)) else values[name]
                for name in names
            )
        )
    async with db.read_engine.connect() as conn:  # autocommit: asyncpg opens the one transaction
        raw = await conn.get_raw_connection()
        return cast(list[Record], await raw.driver_connection.fetchmany(sql, args))  # type: ignore[union-attr]
