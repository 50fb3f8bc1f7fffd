"""Each imported line matched to a refund, or a break that says why not (issue 14 §3).

Lines are taken in batches; a batch's refunds and the earlier lines under its keys are read in three
queries, so matching costs a few statements per batch rather than per line.

A refund line is matched on the processor's own refund id first, then on the merchant reference
refundwatch sent (its refund id). Every line ends in exactly one state (``settlement_lines.match``):
matched, a break kind, or ``not_a_refund`` for fees, payouts and payments, which are kept but are
no refund's. A line that an earlier file already brought, same key and same content (cumulative
reports), is that line again: it keeps the earlier verdict and opens nothing (``_seen_before``).
Breaks are opened once per subject and kind, however often matching runs. The
processor's word that money moved is applied to the refund (money truth first): a refund failure
or reversal line for a succeeded refund moves it to ``reversed``, with the line as the source.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit.actions import Actor
from refundwatch.db.models import ReconciliationBreak, Refund, SettlementEntry, SettlementFile
from refundwatch.refunds.services import apply
from refundwatch.refunds.states import RELEASED, Source, Status, Trigger
from refundwatch.runtime import Runtime

RECONCILER = Actor("system", "reconciliation")
BATCH = 500
MATCHED = "matched"
NOT_A_REFUND = "not_a_refund"
REFUND_KINDS = ("refund", "refund_failure")


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
    line: SettlementEntry | None = None,
    expected: int | None = None,
    actual: int | None = None,
    currency: str | None = None,
) -> ReconciliationBreak:
    return ReconciliationBreak(
        connection_id=connection_id,
        kind=kind,
        subject=subject[:255],
        refund_id=refund.id if refund is not None else None,
        line_id=line.id if line is not None else None,
        gateway_refund_id=(line.gateway_refund_id if line is not None else None)
        or (refund.gateway_refund_id if refund is not None else None),
        currency=currency,
        expected=expected,
        actual=actual,
        detail=detail[:500],
        opened_at=dt.datetime.now(dt.UTC),
        status="open",
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
    return True


def _refund_for(batch: _Batch, line: SettlementEntry) -> Refund | None:
    if line.gateway_refund_id:
        found = batch.by_gateway_id.get((line.connection_id, line.gateway_refund_id))
        if found is not None:
            return found
    reference = _as_uuid(line.merchant_reference)
    if reference is None:
        return None
    refund = batch.by_id.get(reference)
    return refund if refund is not None and refund.connection_id == line.connection_id else None


def _as_uuid(text: str | None) -> UUID | None:
    if not text:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Earlier:
    """A line already classified under the same processor line key."""

    id: int
    file_id: UUID
    row_hash: str
    match: str
    refund_id: UUID | None


def _seen_before(batch: _Batch, line: SettlementEntry) -> tuple[str, _Earlier] | None:
    """Whether an earlier line has ``line``'s processor line key: ("repeat", it) or ("duplicate", it).

    Reports are often cumulative (a processor's report "so far", a payout report run again): a later
    file brings the earlier lines again, under the same key and with the same raw content. Such a
    line is the same line seen again (a *repeat*), not a duplicate: it takes the earlier line's
    verdict and opens nothing. Within one file the same key twice is a *duplicate*. Counted per key
    and content, so a line duplicated within a report and repeated by the next report (the same two
    rows) is a duplicate once: the k-th copy in this file repeats the k-th copy of an earlier file.
    An earlier line with the same key but other content in another file (the processor now reports
    an amount or payout differently) is neither: this line is matched afresh.
    """
    earlier = [e for e in batch.earlier.get((line.connection_id, line.line_key), ()) if e.id < line.id]
    if not earlier:
        return None
    here = [e for e in earlier if e.file_id == line.file_id]
    if any(e.row_hash != line.row_hash for e in here):
        return "duplicate", here[0]
    copies: dict[UUID, list[_Earlier]] = {}
    for e in earlier:
        if e.file_id != line.file_id and e.row_hash == line.row_hash:
            copies.setdefault(e.file_id, []).append(e)
    for same in copies.values():
        if len(same) > len(here):
            return "repeat", same[len(here)]
    if here:
        return "duplicate", here[0]
    return None


@dataclasses.dataclass
class _Batch:
    """What classifying a batch of lines needs, read in three queries instead of several per line."""

    by_gateway_id: dict[tuple[UUID, str], Refund]
    by_id: dict[UUID, Refund]
    earlier: dict[tuple[UUID, str], list[_Earlier]]  # classified lines by (connection, line key)

    def classified(self, line: SettlementEntry) -> None:
        """``line`` has its verdict: later lines of the batch with its key see it."""
        self.earlier.setdefault((line.connection_id, line.line_key), []).append(
            _Earlier(line.id, line.file_id, line.row_hash, line.match or "", line.refund_id)
        )


async def _prefetch(session: AsyncSession, lines: list[SettlementEntry]) -> _Batch:
    about = [line for line in lines if line.kind in REFUND_KINDS]
    batch = _Batch({}, {}, {})
    if not about:
        return batch
    connections = {line.connection_id for line in about}
    gateway_ids = {line.gateway_refund_id for line in about if line.gateway_refund_id}
    if gateway_ids:
        for refund in await session.scalars(
            select(Refund)
            .where(Refund.connection_id.in_(connections), Refund.gateway_refund_id.in_(gateway_ids))
            .with_for_update()
        ):
            if refund.gateway_refund_id is not None:
                batch.by_gateway_id[(refund.connection_id, refund.gateway_refund_id)] = refund
    references = {ref for line in about if (ref := _as_uuid(line.merchant_reference)) is not None}
    if references:
        for refund in await session.scalars(
            select(Refund).where(Refund.id.in_(references)).with_for_update()
        ):
            batch.by_id[refund.id] = refund
    rows = await session.execute(
        select(
            SettlementEntry.id,
            SettlementEntry.file_id,
            SettlementEntry.row_hash,
            SettlementEntry.match,
            SettlementEntry.refund_id,
            SettlementEntry.connection_id,
            SettlementEntry.line_key,
        )
        .where(
            SettlementEntry.connection_id.in_(connections),
            SettlementEntry.line_key.in_({line.line_key for line in about}),
            SettlementEntry.match.is_not(None),  # classified: from a file that was imported
        )
        .order_by(SettlementEntry.id)
    )
    for entry_id, file_id, row_hash, match, refund_id, connection_id, line_key in rows:
        batch.earlier.setdefault((connection_id, line_key), []).append(
            _Earlier(entry_id, file_id, row_hash, match, refund_id)
        )
    return batch


async def _classify(session: AsyncSession, batch: _Batch, line: SettlementEntry, summary: Summary) -> str:
    cid = line.connection_id
    if line.kind == "unmapped":
        await _count(
            session,
            summary,
            new_break(
                "unmapped",
                cid,
                f"line:{line.id}",
                f"{line.raw_type!r}: a type refundwatch does not know",
                line=line,
            ),
        )
        return "unmapped"
    if line.kind not in REFUND_KINDS:
        return NOT_A_REFUND
    seen = _seen_before(batch, line)
    if seen is not None and seen[0] == "repeat":
        line.refund_id = seen[1].refund_id
        return seen[1].match
    if seen is not None:
        earlier = seen[1].id
        await _count(
            session,
            summary,
            new_break(
                "duplicate_line",
                cid,
                f"line:{line.id}",
                f"the same line as line {earlier} ({line.line_key})",
                line=line,
                actual=abs(line.gross),
                currency=line.currency,
            ),
        )
        return "duplicate_line"
    refund = _refund_for(batch, line)
    if refund is None:
        await _count(
            session,
            summary,
            new_break(
                "missing_local",
                cid,
                f"line:{line.id}",
                f"{line.raw_type} {line.gateway_refund_id or line.line_key}: "
                "in the report, unknown to refundwatch",
                line=line,
                actual=abs(line.gross),
                currency=line.currency,
            ),
        )
        return "missing_local"
    line.refund_id = refund.id
    if line.currency != refund.currency:
        await _count(
            session,
            summary,
            new_break(
                "currency_mismatch",
                cid,
                f"refund:{refund.id}",
                f"reported in {line.currency}, asked in {refund.currency}",
                refund=refund,
                line=line,
                expected=refund.amount,
                actual=abs(line.gross),
                currency=line.currency,
            ),
        )
        return "currency_mismatch"
    if abs(line.gross) != refund.amount:  # gross is signed from the balance: a refund's is negative
        await _count(
            session,
            summary,
            new_break(
                "amount_mismatch",
                cid,
                f"refund:{refund.id}",
                f"reported {abs(line.gross)}, asked {refund.amount} (minor units of {refund.currency})",
                refund=refund,
                line=line,
                expected=refund.amount,
                actual=abs(line.gross),
                currency=refund.currency,
            ),
        )
        return "amount_mismatch"
    detail = f"settlement line {line.line_key} ({line.raw_type}) in report row {line.row_number}"
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
            return MATCHED  # the records agree, or now do
        await _count(
            session,
            summary,
            new_break(
                "reversed_after_success",
                cid,
                f"refund:{refund.id}",
                f"{line.raw_type}: failed or reversed at the processor after it succeeded",
                refund=refund,
                line=line,
                expected=refund.amount,
                actual=abs(line.gross),
                currency=refund.currency,
            ),
        )
        return "reversed_after_success"
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
    return MATCHED


async def _count(session: AsyncSession, summary: Summary, found: ReconciliationBreak) -> None:
    if await open_break(session, found):
        summary.breaks[found.kind] += 1


async def match_lines(rt: Runtime, connection_id: UUID | None = None) -> Summary:
    """Match every imported line not matched yet (of one connection, or all)."""
    summary = Summary()
    after = 0
    while True:
        async with rt.db.session() as session:
            query = (
                select(SettlementEntry)
                .join(SettlementFile, SettlementFile.id == SettlementEntry.file_id)
                .where(
                    SettlementEntry.match.is_(None),
                    SettlementFile.status == "imported",
                    SettlementEntry.id > after,
                )
                .order_by(SettlementEntry.id)
                .limit(BATCH)
                # The worker's schedule, the CLI and an upload may match at once: each line is taken by
                # one of them (PostgreSQL; SQLite's one writer already takes turns).
                .with_for_update(of=SettlementEntry, skip_locked=True)
            )
            if connection_id is not None:
                query = query.where(SettlementEntry.connection_id == connection_id)
            lines = list(await session.scalars(query))
            if not lines:
                return summary
            batch = await _prefetch(session, lines)
            for line in lines:
                line.match = await _classify(session, batch, line, summary)
                batch.classified(line)
                summary.lines += 1
                summary.matched += line.match == MATCHED
            after = lines[-1].id
            await session.commit()
