"""The reconciliation figures the dashboard panel and ``/metrics`` share: the matched share of the
processors' refund lines, the open breaks, and how long the oldest has been open.

Two grouped queries. Open breaks go through ``ix_reconciliation_breaks_status (status, opened_at)``.
Refund lines are counted as matching left them (refund and refund-failure lines that matching has
classified; it classifies only lines of fully imported files) from ``ix_settlement_lines_match``
alone: a range of a narrow index, whose cost still grows with the refund lines kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select

from refundwatch.db.models import ReconciliationBreak, SettlementEntry
from refundwatch.reconciliation.matching import MATCHED, REFUND_KINDS
from refundwatch.runtime import Runtime


@dataclasses.dataclass(slots=True)
class LineCounts:
    lines: int = 0
    matched: int = 0


@dataclasses.dataclass(slots=True)
class Figures:
    # connection id → refund lines and matched ones
    lines: dict[UUID, LineCounts] = dataclasses.field(default_factory=dict)
    # (kind, connection id or None) → open breaks
    open_breaks: dict[tuple[str, UUID | None], int] = dataclasses.field(default_factory=dict)
    oldest_open: dt.datetime | None = None

    @property
    def refund_lines(self) -> int:
        return sum(c.lines for c in self.lines.values())

    @property
    def matched_lines(self) -> int:
        return sum(c.matched for c in self.lines.values())

    @property
    def matched_share(self) -> float | None:
        """Matched refund lines / all refund lines; None before any was imported."""
        total = self.refund_lines
        return self.matched_lines / total if total else None

    @property
    def open_count(self) -> int:
        return sum(self.open_breaks.values())


def lines_query(connection_id: UUID | None = None) -> Select[Any]:
    """Refund lines matching has classified, and the matched ones, per connection."""
    query = (
        select(
            SettlementEntry.connection_id,
            func.count(),
            func.count().filter(SettlementEntry.match == MATCHED),
        )
        .where(SettlementEntry.kind.in_(REFUND_KINDS), SettlementEntry.match.isnot(None))
        .group_by(SettlementEntry.connection_id)
    )
    if connection_id is not None:
        query = query.where(SettlementEntry.connection_id == connection_id)
    return query


def open_breaks_query(connection_id: UUID | None = None) -> Select[Any]:
    """Open breaks per kind and connection, with the oldest's opening time."""
    query = (
        select(
            ReconciliationBreak.kind,
            ReconciliationBreak.connection_id,
            func.count(),
            func.min(ReconciliationBreak.opened_at),
        )
        .where(ReconciliationBreak.status == "open")
        .group_by(ReconciliationBreak.kind, ReconciliationBreak.connection_id)
    )
    if connection_id is not None:
        query = query.where(ReconciliationBreak.connection_id == connection_id)
    return query


async def gather(rt: Runtime, connection_id: UUID | None = None) -> Figures:
    """All connections, or one (the dashboard's connection view; breaks without one are left out)."""
    async with rt.db.read_session() as session:
        return read(
            (await session.execute(lines_query(connection_id))).all(),
            (await session.execute(open_breaks_query(connection_id))).all(),
        )


def read(lines: Sequence[Any], breaks: Sequence[Any]) -> Figures:
    found = Figures()
    for cid, total, matched in lines:
        found.lines[cid] = LineCounts(int(total), int(matched or 0))
    for kind, cid, count, oldest in breaks:
        found.open_breaks[(kind, cid)] = int(count)
        if oldest is not None and (found.oldest_open is None or oldest < found.oldest_open):
            found.oldest_open = oldest
    return found
