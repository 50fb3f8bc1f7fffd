"""How far the audit chain is verified, kept up to date by the worker and shown on ``/audit``.

``audit verify`` walks the whole chain, which takes minutes on a large log: too slow for a page. So the
worker rechecks the chain incrementally (a bounded batch per run, the same checks as ``verify``) from
the last entry it found good, and keeps that checkpoint in Redis. The page only reads it, with the
chain's head and the last anchor, so a view costs a few index lookups however long the log is.

An entry the worker found good is not rechecked by it later: a full ``audit verify`` is still what
proves the older entries were not changed since; the page says so.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import func, select

from refundwatch.audit.anchors import Anchor, AnchorError, is_readable_file, read_last
from refundwatch.audit.keys import AuditKeys
from refundwatch.audit.services import GENESIS, chain_head
from refundwatch.audit.verification import check_entry
from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry

KEY = "refundwatch:audit:verified"
BATCH = 5000  # entries rechecked per run, at most
STUCK_AFTER = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain is good from seq 1 up to ``seq`` (whose hash is ``hash``), as found at ``at``."""

    seq: int
    hash: str
    rank: int  # the key that sealed entry ``seq`` (audit.keys ranks)
    at: str
    problem: str | None = None  # what stopped the walk just after ``seq``

    def dump(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, raw: bytes | str | None) -> Checkpoint | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                int(data["seq"]), str(data["hash"]), int(data["rank"]), str(data["at"]), data.get("problem")
            )
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable checkpoint is rebuilt from the chain's start


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def advance(db: Database, keys: AuditKeys, redis: Redis, *, batch: int = BATCH) -> Checkpoint:
    """Recheck up to ``batch`` entries after the checkpoint and store where the good chain ends."""
    last = Checkpoint.load(await redis.get(KEY))
    seq, prev, rank = (last.seq, last.hash, last.rank) if last else (0, GENESIS, keys.legacy_rank)
    problem = None
    async with db.snapshot_session() as session:
        if seq > 0:
            still = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))
            if still != prev:
                problem = (
                    f"the entry at seq {seq} changed or disappeared after it was verified; run audit verify"
                )
        if problem is None:
            rows = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.seq > seq).order_by(AuditEntry.seq).limit(batch)
                )
            ).all()
            for entry in rows:
                problem, found = check_entry(keys, entry, seq + 1, prev, rank)
                if problem is not None:
                    break
                seq, prev, rank = seq + 1, entry.hash or "", found
    if problem is None and last is not None and (last.seq, last.problem) == (seq, None):
        return last  # nothing new: keep when it was last found good
    checkpoint = Checkpoint(seq, prev, rank, _now(), problem)
    await redis.set(KEY, checkpoint.dump())
    return checkpoint


@dataclass(frozen=True, slots=True)
class ChainState:
    """What ``/audit`` shows about the chain."""

    head: int  # the newest sealed entry's seq
    pending: int  # entries written but not sealed yet
    verified: Checkpoint | None
    anchor: Anchor | None
    anchor_problem: str | None  # the anchor file cannot be read
    anchor_matches: bool | None  # the chain still holds the anchored hash at the anchor's seq
    oldest_pending: tuple[int, dt.datetime] | None = None  # id and time of the oldest unsealed entry

    @property
    def sealing_stuck(self) -> bool:
        """The sealer runs every second: an entry unsealed for a minute means sealing stopped at it
        (its content no longer matches its entry hash; ``audit verify`` names it)."""
        if self.oldest_pending is None:
            return False
        return dt.datetime.now(dt.UTC) - self.oldest_pending[1] > STUCK_AFTER


async def chain_state(db: Database, redis: Redis | None, anchors: Path) -> ChainState:
    """Index lookups only: the head (unique index on seq), the unsealed count (seq IS NULL, same
    index), the entry at the anchor's seq, the checkpoint in Redis and the anchor file's last line."""
    verified = Checkpoint.load(await redis.get(KEY)) if redis is not None else None
    anchor, anchor_problem = None, None
    try:
        anchor = read_last(anchors) if is_readable_file(anchors) else None
    except AnchorError as exc:
        anchor_problem = str(exc)
    async with db.read_session() as session:
        head, _ = await chain_head(session)
        pending = await session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.seq.is_(None)))
        oldest = (
            await session.execute(
                select(AuditEntry.id, AuditEntry.at)
                .where(AuditEntry.seq.is_(None))
                .order_by(AuditEntry.id)
                .limit(1)
            )
        ).first()
        matches = None
        if anchor is not None and anchor.seq > 0:
            anchored = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == anchor.seq))
            matches = anchored == anchor.hash
    return ChainState(
        head,
        int(pending or 0),
        verified,
        anchor,
        anchor_problem,
        matches,
        (int(oldest[0]), oldest[1]) if oldest else None,
    )
