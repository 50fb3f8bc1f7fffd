"""The tamper-evident audit log.

Writing: ``record`` adds an entry inside the caller's transaction, with ``entry_hash`` over its
content, so the entry commits (or not) together with the action it records and no writer waits on a
global lock. Sealing: ``seal`` (run every second by the worker) gives committed entries their place
in the chain — ``seq``, ``prev_hash`` and ``hash = HMAC(REFUNDWATCH_AUDIT_KEY, seq|prev_hash|entry_hash)``
(audit.keys) — one sealer at a time. Anchoring: the chain's head is written outside the database
(audit.anchors), so deleting the newest entries is found too. Verifying: audit.verification walks
the chain and rechecks every entry, so an edited, deleted or inserted row is found, and an edited
entry still waiting for its seal is found by its entry hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.audit.actions import Actor
from refundwatch.audit.keys import AuditKeys
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


async def chain_head(session: AsyncSession) -> tuple[int, str]:
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


async def seal(db: Database, keys: AuditKeys | None = None, *, batch: int = _SEAL_BATCH) -> int:
    """Chain committed entries that are not chained yet, under the first audit key; returns how many
    were sealed.

    An entry whose content no longer matches its entry hash is never sealed: sealing stops before it
    and ``verify`` names it.
    """
    keys = keys or AuditKeys.from_settings()
    sealed = 0
    async with db.session() as session:
        if not db.is_sqlite:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEAL_LOCK_ID})
        seq, prev = await chain_head(session)
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
            digest = keys.seal_hash(seq, prev, entry.entry_hash)
            rows.append({"id": entry.id, "seq": seq, "prev_hash": prev, "hash": digest})
            prev = digest
        if rows:
            # One executemany by primary key; the advisory lock (or SQLite's write lock) keeps this the
            # only sealer, so no entry can be sealed twice.
            await session.execute(update(AuditEntry), rows)
            sealed = len(rows)
        await session.commit()
    return sealed
