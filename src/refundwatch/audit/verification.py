"""``audit verify``: walk the whole chain under its keys, then hold it against every anchor.

Read-only. Every entry is rechecked (seq without gaps, prev_hash, entry hash over the content, keyed
chain hash), so an edited, deleted or inserted row is named; the anchors, kept outside the database,
show whether the newest entries were deleted or the chain rewritten after them. Every anchor line is
checked, not only the last: each must still match the chain, and their seqs never go back (a line
going back was written over a deleted tail, even if the chain grew again since).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit.anchors import Anchor, read_all
from refundwatch.audit.keys import AuditKeys
from refundwatch.audit.services import GENESIS, content_hash
from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry


@dataclass(frozen=True, slots=True)
class VerifyReport:
    sealed: int
    pending: int
    problem: str | None = None
    anchor: Anchor | None = None
    legacy: int = 0  # entries sealed before the chain was keyed (plain sha256), at its start

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        line = f"audit chain intact: {self.sealed} entries verified, {self.pending} awaiting their seal"
        if self.legacy:
            line += f"; the first {self.legacy} were sealed before REFUNDWATCH_AUDIT_KEY (unkeyed)"
        if self.anchor is None:
            return line + "; no anchor yet"
        return line + f"; matches the last anchor (seq {self.anchor.seq}, {self.anchor.at})"


@dataclass(frozen=True, slots=True)
class _Anchors:
    """What a first pass over the anchor file found: its last line, and a line going back, if any."""

    path: Path
    last: Anchor | None = None
    last_line: int = 0
    backwards: str | None = None

    @classmethod
    def scan(cls, path: Path, *, required: bool) -> _Anchors:
        highest: tuple[int, Anchor] | None = None
        last: tuple[int, Anchor] | None = None
        backwards = None
        for number, anchor in read_all(path, required=required):  # a malformed line is an error here
            if backwards is None and highest is not None and anchor.seq < highest[1].seq:
                backwards = (
                    f"the anchor on line {number} of {path} ({anchor.at}) goes back to seq {anchor.seq} "
                    f"from seq {highest[1].seq} (line {highest[0]}); it was written after entries "
                    "were deleted"
                )
            if highest is None or anchor.seq >= highest[1].seq:
                highest = (number, anchor)
            last = (number, anchor)
        if last is None:
            return cls(path)
        return cls(path, last[1], last[0], backwards)


@dataclass(slots=True)
class _Walk:
    """The chain walked so far, and the anchors held against it on the way (in seq order)."""

    anchors: Iterator[tuple[int, Anchor]] | None
    sealed: int = 0
    legacy: int = 0
    ahead: tuple[int, Anchor] | None = None  # the next anchor line not yet reached by the chain
    differs: tuple[AuditEntry, int, Anchor] | None = None  # the first anchor the chain does not match

    def __post_init__(self) -> None:
        self.ahead = self._next()

    def _next(self) -> tuple[int, Anchor] | None:
        if self.anchors is None:
            return None
        for number, anchor in self.anchors:
            if anchor.seq > 0:  # seq 0: anchored before anything was sealed
                return number, anchor
        return None

    def reached(self, entry: AuditEntry) -> None:
        """Hold every anchor line at this entry's seq against it (the group's last one is named)."""
        found = None
        while self.ahead is not None and self.ahead[1].seq == entry.seq:
            if self.ahead[1].hash != entry.hash:
                found = (entry, *self.ahead)
            self.ahead = self._next()
        if self.differs is None and found is not None:
            self.differs = found


async def verify(
    db: Database, keys: AuditKeys, anchors: Path, *, required: bool = False, chunk: int = 5000
) -> VerifyReport:
    """Walk the whole chain in order and recheck every entry, then compare with every anchor.

    ``required``: ``anchors`` was named by the operator, so it must exist (a typo is not "no anchor").
    """
    # First: a malformed anchor file is an error, whatever the chain.
    found = _Anchors.scan(anchors, required=required)
    ordered = found.last is not None and found.backwards is None  # then the lines are in seq order
    walk = _Walk(read_all(anchors) if ordered else None)
    async with db.snapshot_session() as session:
        problem = await _walk_chain(session, keys, walk, chunk)
        if problem is not None:
            return VerifyReport(walk.sealed, 0, problem)
        total_sealed = await session.scalar(
            select(func.count(AuditEntry.id)).where(AuditEntry.seq.is_not(None))
        )
        if total_sealed != walk.sealed:
            return VerifyReport(
                walk.sealed, 0, "sealed entries exist outside the chain (seq gap or inserted rows)"
            )
        pending_rows, unreadable = await load_entries(session, AuditEntry.seq.is_(None), AuditEntry.id)
        for entry in pending_rows:
            if content_hash(entry) != entry.entry_hash:
                return VerifyReport(
                    walk.sealed,
                    len(pending_rows),
                    f"audit entry #{entry.id} (not yet sealed): content was changed",
                )
        if unreadable is not None:
            return VerifyReport(walk.sealed, len(pending_rows), unreadable)
        problem = found.backwards or _against_anchors(found, walk)
        return VerifyReport(walk.sealed, len(pending_rows), problem, found.last, walk.legacy)


async def load_entries(
    session: AsyncSession, where: ColumnElement[bool], order: Any, limit: int | None = None
) -> tuple[Sequence[AuditEntry], str | None]:
    """The entries, in order; and, where one cannot even be loaded, the entries before it and what
    is wrong with it. SQLite keeps times as text: a tampered ``at`` fails to parse on loading
    (PostgreSQL's timestamptz cannot hold one), and it must be named like any other tampering."""
    query = select(AuditEntry).where(where).order_by(order).limit(limit)
    try:
        return (await session.scalars(query)).all(), None
    except (ValueError, TypeError):
        pass
    loaded: list[AuditEntry] = []  # one by one, to find the entry that cannot be read
    ids = await session.execute(
        select(AuditEntry.id, AuditEntry.seq).where(where).order_by(order).limit(limit)
    )
    for entry_id, seq in ids.all():
        try:
            entry = await session.scalar(select(AuditEntry).where(AuditEntry.id == entry_id))
        except (ValueError, TypeError):
            place = f"seq {seq}" if seq is not None else "not yet sealed"
            return loaded, f"audit entry #{entry_id} ({place}): its time cannot be read; it was changed"
        if entry is not None:
            loaded.append(entry)
    return loaded, None


async def _walk_chain(session: AsyncSession, keys: AuditKeys, walk: _Walk, chunk: int) -> str | None:
    outside = (
        await session.execute(select(AuditEntry.id, AuditEntry.seq).where(AuditEntry.seq < 1).limit(1))
    ).first()
    if outside is not None:
        return f"audit entry #{outside[0]} (seq {outside[1]}): outside the chain; inserted"
    expected_seq, prev = 1, GENESIS
    rank = keys.legacy_rank  # unkeyed entries may only open the chain; keys only move to newer ones
    while True:
        rows, unreadable = await load_entries(session, AuditEntry.seq >= expected_seq, AuditEntry.seq, chunk)
        if not rows and unreadable is None:
            return None
        for entry in rows:
            problem, rank = check_entry(keys, entry, expected_seq, prev, rank)
            if problem is not None:
                return problem
            if rank == keys.legacy_rank:
                walk.legacy += 1
            walk.reached(entry)
            prev = entry.hash or ""
            expected_seq += 1
            walk.sealed += 1
        if unreadable is not None:
            return unreadable
        session.expunge_all()


def check_entry(
    keys: AuditKeys, entry: AuditEntry, expected_seq: int, prev: str, rank: int
) -> tuple[str | None, int]:
    """Recheck one sealed entry as the chain's next: what is wrong with it (or None), and the rank of
    the key that sealed it (keys only move to newer ones along the chain)."""
    where = f"audit entry #{entry.id} (seq {entry.seq})"
    if entry.seq != expected_seq:
        return f"{where}: expected seq {expected_seq}; entries are missing", rank
    if entry.prev_hash != prev:
        return f"{where}: prev_hash does not match the entry before it", rank
    if content_hash(entry) != entry.entry_hash:
        return f"{where}: content was changed after it was written", rank
    found = keys.rank_of(rank, entry.seq, prev, entry.entry_hash, entry.hash or "")
    if found is None:
        return (
            f"{where}: hash does not match under REFUNDWATCH_AUDIT_KEY; the chain was altered "
            "(or the key is not the one that sealed it)"
        ), rank
    return None, found


def _against_anchors(found: _Anchors, walk: _Walk) -> str | None:
    last = found.last
    if walk.ahead is not None and last is not None:  # anchored beyond where the chain now ends
        return (
            f"missing tail: the chain ends at seq {walk.sealed} but the last anchor ({last.at}) "
            f"is at seq {last.seq}; {last.seq - walk.sealed} entries were deleted"
        )
    if walk.differs is not None:
        entry, number, anchor = walk.differs
        which = (
            f"the last anchor ({anchor.at})"
            if number == found.last_line
            else f"the anchor of {anchor.at} (line {number} of {found.path})"
        )
        return (
            f"audit entry #{entry.id} (seq {entry.seq}): hash differs from {which}; the chain was rewritten"
        )
    return None
