"""``audit verify``: walk the whole chain under its keys, then hold it against the last anchor.

Read-only. Every entry is rechecked (seq without gaps, prev_hash, entry hash over the content, keyed
chain hash), so an edited, deleted or inserted row is named; the last anchor, kept outside the
database, shows whether the newest entries were deleted or the chain rewritten after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit.anchors import Anchor, read_last
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


@dataclass(slots=True)
class _Walk:
    sealed: int = 0
    legacy: int = 0
    anchored_hash: str | None = None
    anchored_id: int | None = None


async def verify(db: Database, keys: AuditKeys, anchors: Path, *, chunk: int = 5000) -> VerifyReport:
    """Walk the whole chain in order and recheck every entry, then compare with the last anchor."""
    anchor = read_last(anchors)  # first: a malformed anchor file is an error, whatever the chain
    walk = _Walk()
    async with db.snapshot_session() as session:
        problem = await _walk_chain(session, keys, anchor, walk, chunk)
        if problem is not None:
            return VerifyReport(walk.sealed, 0, problem)
        total_sealed = await session.scalar(
            select(func.count(AuditEntry.id)).where(AuditEntry.seq.is_not(None))
        )
        if total_sealed != walk.sealed:
            return VerifyReport(
                walk.sealed, 0, "sealed entries exist outside the chain (seq gap or inserted rows)"
            )
        pending_rows = (
            await session.scalars(select(AuditEntry).where(AuditEntry.seq.is_(None)).order_by(AuditEntry.id))
        ).all()
        for entry in pending_rows:
            if content_hash(entry) != entry.entry_hash:
                return VerifyReport(
                    walk.sealed,
                    len(pending_rows),
                    f"audit entry #{entry.id} (not yet sealed): content was changed",
                )
        problem = _against_anchor(anchor, walk)
        return VerifyReport(walk.sealed, len(pending_rows), problem, anchor, walk.legacy)


async def _walk_chain(
    session: AsyncSession, keys: AuditKeys, anchor: Anchor | None, walk: _Walk, chunk: int
) -> str | None:
    outside = await session.scalar(select(AuditEntry).where(AuditEntry.seq < 1).limit(1))
    if outside is not None:
        return f"audit entry #{outside.id} (seq {outside.seq}): outside the chain; inserted"
    expected_seq, prev = 1, GENESIS
    rank = keys.legacy_rank  # unkeyed entries may only open the chain; keys only move to newer ones
    while True:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.seq >= expected_seq).order_by(AuditEntry.seq).limit(chunk)
            )
        ).all()
        if not rows:
            return None
        for entry in rows:
            problem, rank = check_entry(keys, entry, expected_seq, prev, rank)
            if problem is not None:
                return problem
            if rank == keys.legacy_rank:
                walk.legacy += 1
            if anchor is not None and entry.seq == anchor.seq:
                walk.anchored_hash, walk.anchored_id = entry.hash, entry.id
            prev = entry.hash or ""
            expected_seq += 1
            walk.sealed += 1
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


def _against_anchor(anchor: Anchor | None, walk: _Walk) -> str | None:
    if anchor is None or anchor.seq == 0:
        return None
    if walk.sealed < anchor.seq:
        return (
            f"missing tail: the chain ends at seq {walk.sealed} but the last anchor ({anchor.at}) "
            f"is at seq {anchor.seq}; {anchor.seq - walk.sealed} entries were deleted"
        )
    if walk.anchored_hash != anchor.hash:
        return (
            f"audit entry #{walk.anchored_id} (seq {anchor.seq}): hash differs from the last anchor "
            f"({anchor.at}); the chain was rewritten"
        )
    return None
