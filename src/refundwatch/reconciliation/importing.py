"""A processor's settlement report in: every line kept, raw and normalised, exactly once.

The same content imported again adds nothing (a file is known by its SHA-256 per connection). Lines
are streamed from the parser and written in batches, so memory stays bounded; the file counts only
once it is marked ``imported``. On PostgreSQL the lines and that mark are one transaction (no reader
sees a line before its file is whole, and the lines that plainly agree with their refund are stored
matched: ``agreeing``); on SQLite each batch is committed, so the one writer is never held for a whole
file. A malformed file is removed again, lines and all, and its first error is the one line the
importer sees; a file left ``importing`` by a crash is cleared when the same file is imported next.
How the lines are parsed and written fast is ``storing``'s business.

``import_report`` reads a file (CLI, upload); ``import_content`` takes a processor's answer in memory
(settlement pulls, ``reconciliation.pulling``); both go through the same ``_import``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, cast
from uuid import UUID

from sqlalchemy import Table, delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.connections.services import ConnectionInfo
from refundwatch.db.models import SettlementEntry, SettlementFile
from refundwatch.lib.exceptions import BadInput, Conflict, NotFound
from refundwatch.reconciliation.parsing import (
    SettlementFormatError,
    SettlementParser,
    SourceKind,
    parser_for,
)
from refundwatch.reconciliation.storing import Stored, store_lines_postgresql, store_lines_sqlite
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

LINES = cast(Table, SettlementEntry.__table__)
# PostgreSQL: after a file this large its statistics are refreshed at once (in the import's transaction,
# so they arrive with the lines), rather than when autovacuum gets to it, so matching's queries are
# planned for the lines really there (docs/PERFORMANCE.md).
ANALYZE_AFTER = 10_000
# An import still ``importing`` whose heartbeat is older than this is taken to have crashed.
HEARTBEAT_SECONDS = 15
STALE_AFTER_SECONDS = 120


@dataclasses.dataclass(frozen=True, slots=True)
class Imported:
    file_id: UUID
    connection_id: UUID
    name: str
    lines: int
    already: bool  # this content had been imported before: nothing was added
    matched: int = 0  # lines matched as they were stored (PostgreSQL), not left to matching


def _inspect(path: Path) -> tuple[str, SourceKind]:
    """The content's SHA-256, and whether it is an API answer (JSON) or a report file."""
    digest = hashlib.sha256()
    first = b""
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            first = first or block.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
            digest.update(block)
    return digest.hexdigest(), "api" if first in (b"{", b"[") else "file"


async def _forget(rt: Runtime, file_id: UUID) -> None:
    """Remove a file that did not finish importing, and its lines."""
    async with rt.db.write_connection() as conn:
        await conn.execute(delete(LINES).where(LINES.c.file_id == file_id))
        await conn.execute(delete(SettlementFile).where(SettlementFile.id == file_id))


async def import_report(rt: Runtime, connection_name: str, path: Path, actor: Actor) -> Imported:
    """Import ``path`` for the connection named ``connection_name``: the processor's own report file,
    or a saved answer of its settlement API (JSON)."""
    conn = await rt.connections.by_name(connection_name)
    if conn is None:
        raise NotFound(f"no connection {connection_name!r}", code="unknown_connection")
    try:
        digest, source = await asyncio.to_thread(_inspect, path)
        parser = parser_for(conn.processor, source)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except LookupError:
        raise BadInput(f"refundwatch cannot read {conn.processor} settlement {source}s yet") from None
    return await _import(
        rt, conn, _Content(path.name, digest, source, lambda: path.open("rb")), _for(parser, conn), actor
    )


def _for(parser: SettlementParser, conn: ConnectionInfo) -> SettlementParser:
    """A parser that can tell another account's report (Adyen's Merchant Account column) told which
    account the connection's is."""
    bind = getattr(parser, "for_merchant_account", None)
    account = conn.credentials.options.get("merchant_account")
    return cast(SettlementParser, bind(account)) if bind is not None and account else parser


async def import_content(
    rt: Runtime,
    conn: ConnectionInfo,
    name: str,
    content: bytes,
    source: SourceKind,
    actor: Actor,
    *,
    parser: SettlementParser | None = None,
    action: str = actions.RECONCILIATION_IMPORT,
    details: Mapping[str, Any] | None = None,
) -> Imported:
    """Import ``content`` (a processor's answer, already in memory) for ``conn``, as ``import_report``
    imports a file: the same content twice adds nothing. ``parser``: how to read it (default: the
    registry's for the processor and ``source``); ``action`` and ``details``: its audit entry."""
    if parser is None:
        try:
            parser = parser_for(conn.processor, source)
        except LookupError:
            raise BadInput(f"refundwatch cannot read {conn.processor} settlement {source}s yet") from None
    digest = hashlib.sha256(content).hexdigest()
    found = _Content(name, digest, source, lambda: io.BytesIO(content))
    return await _import(rt, conn, found, _for(parser, conn), actor, action=action, details=details)


def _alive(beat: dt.datetime | None) -> bool:
    """Whether an import with this last heartbeat may still be running."""
    if beat is None:
        return False
    if beat.tzinfo is None:  # SQLite gives naive UTC
        beat = beat.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - beat < dt.timedelta(seconds=STALE_AFTER_SECONDS)


def _in_progress(name: str) -> Conflict:
    return Conflict(
        f"{name}: the same content is being imported right now; try again once that import has finished",
        code="import_in_progress",
    )


async def _heartbeat(rt: Runtime, file_id: UUID) -> None:
    """While the lines are written, the file's ``imported_at`` says the import is alive, so a second
    import of the same content waits its turn instead of removing lines still being written."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            async with rt.db.write_connection() as conn:
                await conn.execute(
                    update(SettlementFile)
                    .where(SettlementFile.id == file_id, SettlementFile.status == "importing")
                    .values(imported_at=dt.datetime.now(dt.UTC))
                )
        except Exception:  # a missed beat only lets a later import treat this one as crashed sooner
            log.warning("settlement import heartbeat failed for file %s", file_id, exc_info=True)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclasses.dataclass(frozen=True, slots=True)
class _Content:
    name: str
    sha256: str
    source: SourceKind
    open: Callable[[], BinaryIO]


async def _import(
    rt: Runtime,
    conn: ConnectionInfo,
    content: _Content,
    parser: SettlementParser,
    actor: Actor,
    *,
    action: str = actions.RECONCILIATION_IMPORT,
    details: Mapping[str, Any] | None = None,
) -> Imported:
    name, digest, source = content.name, content.sha256, content.source
    async with rt.db.read_session() as session:
        earlier = (
            await session.execute(
                select(
                    SettlementFile.id, SettlementFile.status, SettlementFile.lines, SettlementFile.imported_at
                ).where(SettlementFile.connection_id == conn.id, SettlementFile.sha256 == digest)
            )
        ).first()
    if earlier is not None and earlier.status == "imported":
        return Imported(earlier.id, conn.id, name, earlier.lines, already=True)
    if earlier is not None:
        if _alive(earlier.imported_at):  # another process is importing it now: not ours to remove
            raise _in_progress(name)
        await _forget(rt, earlier.id)  # a crash halfway through an earlier import of this content
    try:
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
    except IntegrityError:  # the same content started importing a moment ago, elsewhere
        raise _in_progress(name) from None
    beat = asyncio.create_task(_heartbeat(rt, stored.id))
    done = _Done(stored.id, conn, name, digest, source, actor, action, details)
    try:
        with content.open() as stream:
            if rt.db.is_sqlite:
                lines = await store_lines_sqlite(rt, stored.id, conn.id, stream, name, parser.parse)
                await _stop(beat)
                async with rt.db.session() as session:
                    await done.mark(session, lines)
            else:
                async with rt.db.session() as session:  # the lines and their file, in one transaction
                    connection = await session.connection()
                    siblings = await rt.connections.siblings(conn.id)
                    lines = await store_lines_postgresql(
                        connection, stored.id, conn.id, stream, name, parser.parse, siblings
                    )
                    await _stop(beat)
                    if lines.lines >= ANALYZE_AFTER:
                        await connection.execute(text("ANALYZE settlement_lines"))
                    await done.mark(session, lines)
    except SettlementFormatError as exc:
        await _stop(beat)
        await _forget(rt, stored.id)
        raise BadInput(str(exc)) from None  # it names the file and row
    except BaseException:
        await asyncio.shield(_stop(beat))
        await asyncio.shield(_forget(rt, stored.id))
        raise
    return Imported(stored.id, conn.id, name, lines.lines, already=False, matched=lines.matched)


@dataclasses.dataclass(frozen=True, slots=True)
class _Done:
    """What marking a file imported records."""

    file_id: UUID
    conn: ConnectionInfo
    name: str
    digest: str
    source: SourceKind
    actor: Actor
    action: str
    details: Mapping[str, Any] | None

    async def mark(self, session: AsyncSession, lines: Stored) -> None:
        """The file counts from now on, audited; committed with whatever ``session`` holds."""
        await session.execute(
            update(SettlementFile)
            .where(SettlementFile.id == self.file_id)
            .values(status="imported", lines=lines.lines)
        )
        details = {"file": self.name, "sha256": self.digest, "lines": lines.lines, "source": self.source}
        record(
            session,
            self.actor,
            self.action,
            target_type="connection",
            target_id=self.conn.name,
            details={**details, **(self.details or {})},
        )
        await session.commit()
