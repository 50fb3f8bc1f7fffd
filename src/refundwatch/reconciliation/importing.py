"""A processor's settlement report in: every line kept, raw and normalised, exactly once.

The same content imported again adds nothing (a file is known by its SHA-256 per connection). Lines
are streamed from the parser and written in batches, each committed, so memory stays bounded and the
SQLite writer is never held for a whole file; the file counts only once it is marked ``imported``.
A malformed file is removed again, lines and all, and its first error is the one line the importer
sees; a file left ``importing`` by a crash is cleared when the same file is imported next. How the
lines are parsed and written fast is ``storing``'s business.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
from pathlib import Path
from typing import BinaryIO, cast
from uuid import UUID

from sqlalchemy import Table, delete, select, text, update

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.services import ConnectionInfo
from refundwatch.db.models import SettlementEntry, SettlementFile
from refundwatch.lib.exceptions import BadInput, NotFound
from refundwatch.reconciliation.parsing import SettlementFormatError, SourceKind, parser_for
from refundwatch.reconciliation.storing import store_lines
from refundwatch.runtime import Runtime

LINES = cast(Table, SettlementEntry.__table__)
# PostgreSQL: after a file this large its statistics are refreshed at once, rather than when autovacuum
# gets to it, so matching's queries are planned for the lines really there (docs/PERFORMANCE.md).
ANALYZE_AFTER = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class Imported:
    file_id: UUID
    connection_id: UUID
    name: str
    lines: int
    already: bool  # this content had been imported before: nothing was added


def _inspect(stream: BinaryIO) -> tuple[str, SourceKind]:
    """The content's SHA-256, and whether it is an API answer (JSON) or a report file; the stream is
    left at its start."""
    digest = hashlib.sha256()
    first = b""
    for block in iter(lambda: stream.read(1 << 20), b""):
        first = first or block.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest(), "api" if first in (b"{", b"[") else "file"


async def _forget(rt: Runtime, file_id: UUID) -> None:
    """Remove a file that did not finish importing, and its lines."""
    async with rt.db.write_connection() as conn:
        await conn.execute(delete(LINES).where(LINES.c.file_id == file_id))
        await conn.execute(delete(SettlementFile).where(SettlementFile.id == file_id))


async def import_report(rt: Runtime, connection_name: str, path: Path, actor: Actor) -> Imported:
    """Import ``path`` for the connection named ``connection_name``: the processor's own report file,
    or a saved answer of its settlement API (JSON)."""
    conn = await _connection(rt, connection_name)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None
    with stream:
        return await _import(rt, conn, stream, path.name, actor, shown=str(path))


async def import_stream(
    rt: Runtime, connection_name: str, stream: BinaryIO, name: str, actor: Actor
) -> Imported:
    """Import a seekable binary ``stream`` (read twice: its hash, then its lines) named ``name``, as
    ``import_report`` imports a file. The caller opens and closes it."""
    return await _import(rt, await _connection(rt, connection_name), stream, name, actor, shown=name)


async def _connection(rt: Runtime, name: str) -> ConnectionInfo:
    conn = await rt.connections.by_name(name)
    if conn is None:
        raise NotFound(f"no connection {name!r}", code="unknown_connection")
    return conn


async def _import(
    rt: Runtime, conn: ConnectionInfo, stream: BinaryIO, name: str, actor: Actor, *, shown: str
) -> Imported:
    try:
        digest, source = await asyncio.to_thread(_inspect, stream)
        parser = parser_for(conn.processor, source)
    except OSError as exc:
        raise BadInput(f"{shown}: cannot read ({exc.__class__.__name__})") from None
    except LookupError:
        raise BadInput(f"refundwatch cannot read {conn.processor} settlement {source}s yet") from None
    async with rt.db.read_session() as session:
        earlier = (
            await session.execute(
                select(SettlementFile.id, SettlementFile.status, SettlementFile.lines).where(
                    SettlementFile.connection_id == conn.id, SettlementFile.sha256 == digest
                )
            )
        ).first()
    if earlier is not None and earlier.status == "imported":
        return Imported(earlier.id, conn.id, name, earlier.lines, already=True)
    if earlier is not None:  # a crash halfway through an earlier import of this content
        await _forget(rt, earlier.id)
    async with rt.db.session() as session:
        stored = SettlementFile(
            connection_id=conn.id,
            processor=conn.processor,
            source=source,
            name=name[:255],
            sha256=digest,
            status="importing",
            lines=0,
            imported_at=dt.datetime.now(dt.UTC),
            imported_by=actor.id[:255],
        )
        session.add(stored)
        await session.commit()
    try:
        count = await store_lines(rt, stored.id, conn.id, stream, name, parser.parse)
    except SettlementFormatError as exc:
        await _forget(rt, stored.id)
        raise BadInput(f"{name}: {exc}") from None
    except BaseException:
        await asyncio.shield(_forget(rt, stored.id))
        raise
    if count >= ANALYZE_AFTER and not rt.db.is_sqlite:
        async with rt.db.write_connection() as connection:
            await connection.execute(text("ANALYZE settlement_lines"))
    async with rt.db.session() as session:
        await session.execute(
            update(SettlementFile)
            .where(SettlementFile.id == stored.id)
            .values(status="imported", lines=count)
        )
        record(
            session,
            actor,
            actions.RECONCILIATION_IMPORT,
            target_type="connection",
            target_id=conn.name,
            details={"file": name, "sha256": digest, "lines": count, "source": source},
        )
        await session.commit()
    return Imported(stored.id, conn.id, name, count, already=False)
