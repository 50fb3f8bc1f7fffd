"""Each imported line matched to a refund, or a break that says why not (issue 14 §3).

Every line ends in exactly one state (``settlement_lines.match``): matched, a break kind, or
``not_a_refund`` for fees, payouts and payments, which are kept but are no refund's. How one line is
judged is ``verdicts``'s business; here, lines are taken, judged and written. Breaks are opened once
per subject and kind, however often matching runs. The processor's word that money moved is applied
to the refund (money truth first): a refund failure or reversal line for a succeeded refund moves it
to ``reversed``, with the line as the source.

Set-based, per batch of lines (a million lines is a few thousand statements, not millions): the
batch's lines, refunds and earlier lines are read in a few queries, each line is decided in memory
in id order, and the verdicts are written in one statement, the breaks in another. Only a line that
changes a refund's status (a refund failure, or a settlement of a refund not yet succeeded here)
takes the refund's row lock and goes through the state table, the refund's timeline and the audit.

On PostgreSQL the import already stores matched the refund lines that plainly agree with their refund
(``agreeing``): matching takes only the lines left unmatched, and decides them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, cast
from uuid import UUID

from advanced_alchemy.types import GUID
from sqlalchemy import (
    ColumnElement,
    Dialect,
    Select,
    String,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler

from refundwatch.audit.actions import Actor
from refundwatch.db.models import ReconciliationBreak, Refund, SettlementEntry, SettlementFile
from refundwatch.outgoing.outbox import breaks_opened
from refundwatch.reconciliation.importing import Imported
from refundwatch.reconciliation.verdicts import (
    MATCHED,
    NOT_A_REFUND,
    REFUND_KINDS,
    Batch,
    Earlier,
    Line,
    RefundView,
    Verdict,
    as_uuid,
    break_values,
    classify,
    refund_break,
)
from refundwatch.refunds.services import apply
from refundwatch.refunds.states import RELEASED, Source, Status, Trigger
from refundwatch.runtime import Runtime

__all__ = [
    "MATCHED",
    "NOT_A_REFUND",
    "REFUND_KINDS",
    "Summary",
    "match_imported",
    "match_lines",
    "new_break",
    "open_break",
]

RECONCILER = Actor("system", "reconciliation")
BATCH = 2_000
LINES = cast(Table, SettlementEntry.__table__)
BREAKS = cast(Table, ReconciliationBreak.__table__)
REFUNDS = cast(Table, Refund.__table__)
FILES = cast(Table, SettlementFile.__table__)


@dataclasses.dataclass
class Summary:
    lines: int = 0
    matched: int = 0
    breaks: Counter[str] = dataclasses.field(default_factory=Counter)


def new_break(
    kind: str,
    connection_id: UUID | None,
    subject: str,
    detail: str,
    *,
    refund: Refund | None = None,
    expected: int | None = None,
    actual: int | None = None,
    currency: str | None = None,
) -> ReconciliationBreak:
    return ReconciliationBreak(
        **break_values(
            kind,
            connection_id,
            subject,
            detail,
            refund_id=refund.id if refund is not None else None,
            gateway_refund_id=refund.gateway_refund_id if refund is not None else None,
            expected=expected,
            actual=actual,
            currency=currency,
        )
    )


async def open_break(session: AsyncSession, found: ReconciliationBreak) -> bool:
    """Open ``found`` unless the same subject already has a break of that kind (open or resolved)."""
    already = await session.scalar(
        select(ReconciliationBreak.id).where(
            ReconciliationBreak.connection_id == found.connection_id
            if found.connection_id is not None
            else ReconciliationBreak.connection_id.is_(None),
            ReconciliationBreak.kind == found.kind,
            ReconciliationBreak.subject == found.subject,
        )
    )
    if already is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(found)
    except IntegrityError:  # opened meanwhile by another run
        return False
    await breaks_opened(session, [(found.id, found.connection_id)])
    return True


# --- what a batch needs, read in a few queries -----------------------------------------------------


class _FewIds(TypeDecorator[UUID]):
    """A GUID column whose values repeat from row to row (a batch's connection, its files): each value
    is converted to a UUID once, not once per line (SQLite stores them as bytes)."""

    impl = GUID
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        convert = super().result_processor(dialect, coltype)
        if convert is None or dialect.name != "sqlite":  # asyncpg's UUIDs come ready
            return convert
        known: dict[Any, Any] = {}

        def process(value: Any) -> Any:
            found = known.get(value)
            if found is None:
                if len(known) >= 1_024:
                    known.clear()
                found = known[value] = convert(value)
            return found

        return process


def _few(column: Any) -> Any:
    return type_coerce(column, _FewIds()).label(column.name)


def _among(column: ColumnElement[Any], values: Iterable[str], is_sqlite: bool) -> ColumnElement[bool]:
    """``column IN values`` as a statement of one shape whatever the number of values (compiled and
    prepared once, not per batch): a JSON array on SQLite, an array on PostgreSQL."""
    if is_sqlite:
        listed: Select[Any] = select(literal_column("value")).select_from(
            func.json_each(json.dumps(list(values)))
        )
        return column.in_(listed)
    return column == any_(bindparam(None, list(values), type_=ARRAY(String)))


@functools.cache
def _compiled(
    statement: Any, dialect: Dialect
) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]:
    """(SQL with $n placeholders, parameter names by position, default values, bind processors)."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
    defaults = dict(compiled.construct_params(_check=False))
    processors = dict(compiled._bind_processors)  # type: ignore[attr-defined]  # no public accessor
    return compiled.string, tuple(compiled.positiontup or ()), defaults, processors


async def _records(session: AsyncSession, statement: Any, **values: Any) -> list[Any]:
    """PostgreSQL: ``statement`` (compiled once by SQLAlchemy, so the same SQL and bind processing) run
    on the session's own asyncpg connection, in its transaction: asyncpg records, without building a
    SQLAlchemy row per line (half of matching's Python time went there)."""
    connection = await session.connection()
    sql, names, defaults, processors = _compiled(statement, connection.dialect)
    values = defaults | values
    args = [processors[name](values[name]) if name in processors else values[name] for name in names]
    raw = await connection.get_raw_connection()
    return cast(list[Any], await raw.driver_connection.fetch(sql, *args))  # type: ignore[union-attr]


# A line as matching reads it (``verdicts.Line``, in its order).
_LINE_COLUMNS = (
    LINES.c.id,
    _few(LINES.c.file_id),
    _few(LINES.c.connection_id),
    LINES.c.row_number,
    LINES.c.line_key,
    LINES.c.kind,
    LINES.c.gross,
    LINES.c.currency,
    LINES.c.gateway_refund_id,
    LINES.c.merchant_reference,
    LINES.c.raw_type,
)


_REFUND_COLUMNS = (
    REFUNDS.c.id,
    _few(REFUNDS.c.connection_id),
    REFUNDS.c.gateway_refund_id,
    REFUNDS.c.amount,
    REFUNDS.c.currency,
    REFUNDS.c.status,
)


def _earlier(*where: ColumnElement[bool]) -> Select[Any]:
    """The lines already classified under the batch's keys, in id order."""
    return (
        select(
            LINES.c.id,
            _few(LINES.c.file_id),
            LINES.c.kind,
            LINES.c.gross,
            LINES.c.currency,
            LINES.c.match,
            LINES.c.refund_id,
            _few(LINES.c.connection_id),
            LINES.c.line_key,
        )
        .where(
            *where,
            # Only classified lines count (from a file that was imported). Not ``match IS NOT NULL``:
            # with that, PostgreSQL may take the match index while its statistics still say nothing
            # is matched, and read every line matched so far, per batch. No index answers this
            # expression, so the lines are found through the key index and filtered.
            func.coalesce(LINES.c.match, "") != "",
        )
        .order_by(LINES.c.id)
    )


# PostgreSQL's statements of fixed shape (arrays), run as asyncpg records (``_records``).
_PG_REFUNDS = select(*_REFUND_COLUMNS).where(
    REFUNDS.c.gateway_refund_id == any_(bindparam("ids", type_=ARRAY(String)))
)
_PG_EARLIER = _earlier(
    LINES.c.connection_id == any_(bindparam("connections", type_=ARRAY(PG_UUID(as_uuid=True)))),
    LINES.c.line_key == any_(bindparam("keys", type_=ARRAY(String))),
)


async def _prefetch(
    session: AsyncSession, lines: list[Line], is_sqlite: bool, accounts: dict[UUID, tuple[str, str]]
) -> Batch:
    about = [line for line in lines if line.kind in REFUND_KINDS]
    batch = Batch({}, {}, {}, accounts=accounts)
    if not about:
        return batch
    connections = batch.with_siblings({line.connection_id for line in about})  # their siblings' lines too
    gateway_ids = {line.gateway_refund_id for line in about if line.gateway_refund_id}
    if gateway_ids:
        # By the processor's refund id alone, the connection compared in memory: with the connection
        # in the query too, SQLite walks the connection's refunds instead of the refund id's index.
        if is_sqlite:
            found: Iterable[Any] = await session.execute(
                select(*_REFUND_COLUMNS).where(_among(REFUNDS.c.gateway_refund_id, gateway_ids, True))
            )
        else:
            found = await _records(session, _PG_REFUNDS, ids=list(gateway_ids))
        for row in found:
            refund = RefundView(*row)
            batch.by_gateway_id.setdefault(refund.gateway_refund_id or "", []).append(refund)
    # The merchant reference is looked at only where the processor's refund id found nothing.
    references = {
        ref
        for line in about
        if batch.by_gateway(line.connection_id, line.gateway_refund_id) is None
        and (ref := as_uuid(line.merchant_reference)) is not None
    }
    if references:
        for row in await session.execute(select(*_REFUND_COLUMNS).where(REFUNDS.c.id.in_(references))):
            batch.by_id[row.id] = RefundView(*row)
    keys = {line.line_key for line in about}
    rows: Iterable[Any]
    if is_sqlite:
        rows = await session.execute(
            _earlier(LINES.c.connection_id.in_(connections), _among(LINES.c.line_key, keys, True))
        )
    else:
        rows = await _records(session, _PG_EARLIER, connections=list(connections), keys=list(keys))
    for entry_id, file_id, kind, gross, currency, match, refund_id, connection_id, line_key in rows:
        batch.earlier.setdefault(line_key, []).append(
            Earlier(entry_id, connection_id, file_id, (kind, gross, currency), match, refund_id)
        )
    return batch


async def _transition(session: AsyncSession, batch: Batch, line: Line, seen: RefundView) -> Verdict:
    """A refund failure, or a settlement of a refund not succeeded here: the state table decides, on the
    refund locked (its status read afresh under the lock), with the line as the event's source."""
    refund = batch.locked.get(seen.id)
    if refund is None:
        refund = (await session.scalars(select(Refund).where(Refund.id == seen.id).with_for_update())).one()
        batch.locked[seen.id] = refund
    detail = f"settlement line {line.line_key} ({line.raw_type}) in report row {line.row_number}"
    try:
        if line.kind == "refund_failure":
            was = refund.status
            if was not in RELEASED:  # the state table decides: succeeded -> reversed, in flight -> failed
                await apply(
                    session,
                    refund,
                    Trigger.REVERSED,
                    source=Source.RECONCILIATION,
                    actor=RECONCILER,
                    detail=f"{detail}: the refund failed or was reversed at the processor",
                )
            if was != Status.SUCCEEDED:
                return MATCHED, refund.id, None  # the records agree, or now do
            why = f"{line.raw_type}: failed or reversed at the processor after it succeeded"
            found = refund_break("reversed_after_success", line, seen, why, currency=refund.currency)
            return "reversed_after_success", refund.id, found
        if refund.status != Status.SUCCEEDED:
            # The processor settled it: money moved. The state machine decides what that means here
            # (processing -> succeeded; a released status -> manual review with the amount reserved again).
            await apply(
                session,
                refund,
                Trigger.SUCCEEDED,
                source=Source.RECONCILIATION,
                actor=RECONCILER,
                detail=f"{detail}: the processor settled this refund",
            )
        return MATCHED, refund.id, None
    finally:
        seen.status = refund.status


# --- writing a batch's verdicts --------------------------------------------------------------------

# PostgreSQL: every verdict of the batch in one statement of fixed shape (arrays, prepared once), run
# on the session's asyncpg connection (the arrays need no conversion: ints, strings, UUIDs).
_PG_VERDICTS = (
    "UPDATE settlement_lines AS s SET match = v.match, refund_id = v.refund_id "
    "FROM unnest($1::bigint[], $2::varchar[], $3::uuid[]) AS v(id, match, refund_id) WHERE s.id = v.id"
)
# SQLite: one executemany in the driver (a prepared statement stepped per line), ids as it stores them.
_SQLITE_VERDICTS = "UPDATE settlement_lines SET match = ?, refund_id = ? WHERE id = ?"


async def _write_verdicts(
    session: AsyncSession, is_sqlite: bool, verdicts: list[tuple[int, str, UUID | None]]
) -> None:
    if is_sqlite:
        params = [(m, r.bytes if r is not None else None, i) for i, m, r in verdicts]
        connection = await session.connection()
        await connection.exec_driver_sql(_SQLITE_VERDICTS, params)  # type: ignore[arg-type]
        return
    ids, matches, refund_ids = zip(*verdicts, strict=True)
    raw = await (await session.connection()).get_raw_connection()
    await raw.driver_connection.execute(_PG_VERDICTS, ids, matches, refund_ids)  # type: ignore[union-attr]


async def _open_breaks(session: AsyncSession, is_sqlite: bool, found: list[dict[str, Any]]) -> list[str]:
    """Insert the batch's breaks, each unless its subject already has one of that kind (a unique key);
    the kinds of those opened now."""
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    statement = (
        dialect_insert(BREAKS)
        .on_conflict_do_nothing(index_elements=["connection_id", "kind", "subject"])
        .returning(BREAKS.c.kind, BREAKS.c.id, BREAKS.c.connection_id)
    )
    opened = (await session.execute(statement, found)).all()
    await breaks_opened(session, [(row.id, row.connection_id) for row in opened])
    return [row.kind for row in opened]


# --- the loop --------------------------------------------------------------------------------------


def _claim(one_connection: bool) -> Select[Any]:
    """The next batch of lines not matched yet, after ``:after`` (of ``:connection_id``)."""
    query = (
        select(*_LINE_COLUMNS)
        .where(
            LINES.c.match.is_(None),
            LINES.c.id > bindparam("after", type_=LINES.c.id.type),
            # Lines of a file still importing wait until it is whole; those of a file imported after
            # :settled_before are left to their importer, which matches them at once (the worker's
            # schedule passes a minute ago, so the importer's summary counts its own lines).
            LINES.c.file_id.not_in(
                select(FILES.c.id).where(
                    or_(
                        FILES.c.status != "imported",
                        FILES.c.imported_at >= bindparam("settled_before", type_=FILES.c.imported_at.type),
                    )
                )
            ),
        )
        .order_by(LINES.c.id)
        .limit(BATCH)
        # The worker's schedule, the CLI and an upload may match at once: each line is taken by
        # one of them (PostgreSQL; SQLite's one writer already takes turns).
        .with_for_update(skip_locked=True)
    )
    if one_connection:
        query = query.where(
            LINES.c.connection_id == bindparam("connection_id", type_=LINES.c.connection_id.type)
        )
    return query


_CLAIMS = {True: _claim(True), False: _claim(False)}  # one statement object each: compiled once


async def _take(
    session: AsyncSession, is_sqlite: bool, after: int, connection_id: UUID | None, settled: dt.datetime
) -> list[Line]:
    statement = _CLAIMS[connection_id is not None]
    values = {"after": after, "connection_id": connection_id, "settled_before": settled}
    if is_sqlite:
        return [Line._make(row) for row in await session.execute(statement, values)]
    return [Line._make(row) for row in await _records(session, statement, **values)]


Verdicts = list[tuple[int, str, UUID | None]]
Found = dict[tuple[UUID, str, str], dict[str, Any]]


async def _done(writing: asyncio.Future[None] | None) -> None:
    if writing is not None:
        await writing


async def _finish(
    scope: contextlib.AsyncExitStack,
    session: AsyncSession,
    is_sqlite: bool,
    verdicts: Verdicts,
    found: Found,
    summary: Summary,
) -> None:
    """Write a decided batch's verdicts and breaks, and commit (closing its session either way)."""
    async with scope:
        await _write_verdicts(session, is_sqlite, verdicts)
        if found:
            summary.breaks.update(await _open_breaks(session, is_sqlite, list(found.values())))
        await session.commit()


async def match_lines(
    rt: Runtime, connection_id: UUID | None = None, *, settled_before: dt.datetime | None = None
) -> Summary:
    """Match every imported line not matched yet (of one connection, or all; with ``settled_before``,
    only the lines of files imported before then: the rest are their importers' to match).

    On PostgreSQL a batch is written and committed, in its own session, while the next is claimed,
    read and decided in another: the next sees the batch before's verdicts from memory
    (``Batch.carry``) until they are committed. A batch that moved a refund is committed before the
    next is read, and a refund is moved only once the batch before is committed, so every refund's
    status is read as committed. SQLite has one writer: one batch at a time.
    """
    is_sqlite = rt.db.is_sqlite
    settled = settled_before or dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # none: every file
    summary = Summary()
    after = 0
    writing: asyncio.Future[None] | None = None  # the batch before, being written
    carried: list[tuple[str, Earlier]] = []
    accounts = await rt.connections.account_keys()
    try:
        while True:
            scope = contextlib.AsyncExitStack()
            session = await scope.enter_async_context(rt.db.session())
            try:
                lines = await _take(session, is_sqlite, after, connection_id, settled)
                if not lines:
                    await scope.aclose()
                    return summary
                batch = await _prefetch(session, lines, is_sqlite, accounts)
                batch.carry(lines, carried)
                verdicts: Verdicts = []
                # The first break of each subject and kind; a later one would be refused anyway.
                found: Found = {}
                for line in lines:
                    decided = classify(batch, line)
                    if isinstance(decided, RefundView):
                        await _done(writing)
                        decided = await _transition(session, batch, line, decided)
                    match, refund_id, opened = decided
                    batch.classified(line, match, refund_id)
                    verdicts.append((line.id, match, refund_id))
                    if opened is not None:
                        found.setdefault((line.connection_id, opened["kind"], opened["subject"]), opened)
                    summary.matched += match == MATCHED
                summary.lines += len(lines)
                await _done(writing)  # batches are committed in order
            except BaseException:
                await scope.aclose()  # rolled back
                raise
            writing = asyncio.ensure_future(_finish(scope, session, is_sqlite, verdicts, found, summary))
            if is_sqlite or batch.locked:
                await _done(writing)
            carried = batch.decided
            after = lines[-1].id
    finally:
        await _done(writing)


async def match_imported(rt: Runtime, imported: Imported, *, every_connection: bool = False) -> Summary:
    """Match after an import: the lines of the imported file's connection (or of every connection),
    counting the lines the import already stored matched (PostgreSQL: ``agreeing``) as matched."""
    summary = await match_lines(rt, None if every_connection else imported.connection_id)
    summary.lines += imported.matched
    summary.matched += imported.matched
    return summary
