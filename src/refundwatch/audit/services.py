"""The tamper-evident audit log.

Writing: ``record`` adds an entry inside the caller's transaction, with ``entry_hash`` over its
content, so the entry commits (or not) together with the action it records and no writer waits on a
global lock. Sealing: ``seal`` (run every second by the worker) gives committed entries their place
in the chain — ``seq``, ``prev_hash`` and ``hash = sha256(seq|prev_hash|entry_hash)`` — one sealer at a
time. Verifying: ``verify`` walks the chain and rechecks every entry, so an edited, deleted or
inserted row is found, and an edited entry still waiting for its seal is found by its entry hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit.actions import Actor
from refundwatch.db.engine import Database
from refundwatch.db.models import AuditEntry
from refundwatch.lib.crypto import sha256_hex

GENESIS = "0" * 64
_SEAL_BATCH = 2000
_SEAL_LOCK_ID = 0x52574155  # "RWAU": PostgreSQL advisory lock key for the one sealer


def _normalise_time(at: dt.datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditContent(Protocol):
    """What the entry hash covers: an ``AuditEntry``, or the same fields about to be inserted."""

    @property
    def at(self) -> dt.datetime: ...
    @property
    def actor_type(self) -> str: ...
    @property
    def actor_id(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target_type(self) -> str | None: ...
    @property
    def target_id(self) -> str | None: ...
    @property
    def details(self) -> str: ...
    @property
    def ip(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...


def content_hash(entry: AuditContent) -> str:
    canonical = json.dumps(
        [
            _normalise_time(entry.at),
            entry.actor_type,
            entry.actor_id,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.details,
            entry.ip,
            entry.user_agent,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return sha256_hex(canonical)


def chain_hash(seq: int, prev_hash: str, entry_hash: str) -> str:
    return sha256_hex(f"{seq}|{prev_hash}|{entry_hash}")


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An audit entry about to be written: the hashed content, ready for the ORM or a Core insert."""

    at: dt.datetime
    actor_type: str
    actor_id: str
    action: str
    target_type: str | None
    target_id: str | None
    details: str
    ip: str | None
    user_agent: str | None

    @classmethod
    def of(
        cls,
        actor: Actor,
        action: str,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> NewEntry:
        return cls(
            at=at or dt.datetime.now(dt.UTC),
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=json.dumps(details or {}, separators=(",", ":"), sort_keys=True, default=str),
            ip=actor.ip,
            user_agent=(actor.user_agent or None) and actor.user_agent[:255],
        )

    def columns(self) -> dict[str, Any]:
        """Column values, with the entry hash over the content."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values["entry_hash"] = content_hash(self)
        return values


# What an insert of a new entry writes: its content and the entry hash (the chain comes at sealing).
AUDIT_COLUMNS = (*(f.name for f in dataclasses.fields(NewEntry)), "entry_hash")


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> AuditEntry:
    """Add an audit entry to the caller's transaction (it commits with the action it records)."""
    new = NewEntry.of(actor, action, target_type=target_type, target_id=target_id, details=details, at=at)
    entry = AuditEntry(**new.columns())
    session.add(entry)
    return entry


async def _chain_head(session: AsyncSession) -> tuple[int, str]:
    row = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash)
            .where(AuditEntry.seq.is_not(None))
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return 0, GENESIS
    return int(row[0]), str(row[1])


async def seal(db: Database, *, batch: int = _SEAL_BATCH) -> int:
    """Chain committed entries that are not chained yet; returns how many were sealed.

    An entry whose content no longer matches its entry hash is never sealed: sealing stops before it
    and ``verify`` names it.
    """
    sealed = 0
    async with db.session() as session:
        if not db.is_sqlite:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEAL_LOCK_ID})
        seq, prev = await _chain_head(session)
        pending = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.seq.is_(None)).order_by(AuditEntry.id).limit(batch)
            )
        ).all()
        rows: list[dict[str, Any]] = []
        for entry in pending:
            if content_hash(entry) != entry.entry_hash:
                break
            seq += 1
            digest = chain_hash(seq, prev, entry.entry_hash)
            rows.append({"id": entry.id, "seq": seq, "prev_hash": prev, "hash": digest})
            prev = digest
        if rows:
            # One executemany by primary key; the advisory lock (or SQLite's write lock) keeps this the
            # only sealer, so no entry can be sealed twice.
            await session.execute(update(AuditEntry), rows)
            sealed = len(rows)
        await session.commit()
    return sealed


@dataclass(frozen=True, slots=True)
class VerifyReport:
    sealed: int
    pending: int
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def verify(db: Database, *, chunk: int = 5000) -> VerifyReport:
    """Walk the whole chain in order and recheck every entry (read-only)."""
    expected_seq, prev = 1, GENESIS
    sealed = 0
    async with db.snapshot_session() as session:
        outside = await session.scalar(select(AuditEntry).where(AuditEntry.seq < 1).limit(1))
        if outside is not None:
            return VerifyReport(
                0, 0, f"audit entry #{outside.id} (seq {outside.seq}): outside the chain; inserted"
            )
        while True:
            rows = (
                await session.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.seq >= expected_seq)
                    .order_by(AuditEntry.seq)
                    .limit(chunk)
                )
            ).all()
            if not rows:
                break
            for entry in rows:
                where = f"audit entry #{entry.id} (seq {entry.seq})"
                if entry.seq != expected_seq:
                    return VerifyReport(
                        sealed, 0, f"{where}: expected seq {expected_seq}; entries are missing"
                    )
                if entry.prev_hash != prev:
                    return VerifyReport(sealed, 0, f"{where}: prev_hash does not match the entry before it")
                if content_hash(entry) != entry.entry_hash:
                    return VerifyReport(sealed, 0, f"{where}: content was changed after it was written")
                if chain_hash(entry.seq, prev, entry.entry_hash) != entry.hash:
                    return VerifyReport(sealed, 0, f"{where}: hash does not match; the chain was altered")
                prev = entry.hash
                expected_seq += 1
                sealed += 1
            session.expunge_all()
        total_sealed = await session.scalar(
            select(func.count(AuditEntry.id)).where(AuditEntry.seq.is_not(None))
        )
        if total_sealed != sealed:
            return VerifyReport(
                sealed, 0, "sealed entries exist outside the chain (seq gap or inserted rows)"
            )
        pending_rows = (
            await session.scalars(select(AuditEntry).where(AuditEntry.seq.is_(None)).order_by(AuditEntry.id))
        ).all()
        for entry in pending_rows:
            if content_hash(entry) != entry.entry_hash:
                return VerifyReport(
                    sealed,
                    len(pending_rows),
                    f"audit entry #{entry.id} (not yet sealed): content was changed",
                )
        return VerifyReport(sealed, len(pending_rows))
