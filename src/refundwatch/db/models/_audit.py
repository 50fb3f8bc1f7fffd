from __future__ import annotations

import datetime as dt

from advanced_alchemy.base import BigIntBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column


class AuditEntry(BigIntBase):
    """Append-only, hash-chained record of every action.

    ``entry_hash`` covers the entry's content and is written in the same transaction as the action it
    records. The chain (``seq``, ``prev_hash``, ``hash``, keyed with REFUNDWATCH_AUDIT_KEY) is sealed
    shortly after by one sealer at a time, so concurrent writers never queue on a global lock (see
    audit.services, audit.keys, audit.anchors).
    """

    __tablename__ = "audit_log"
    # The audit screen's filters, each with the keyset (newest id first) in the index, so a page of a
    # filtered large log is one index range (migration 0012).
    __table_args__ = (
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_actor_id_id", "actor_id", "id"),
        Index("ix_audit_log_at", "at"),
    )

    at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(128))
    target_type: Mapped[str | None] = mapped_column(String(64), default=None)
    target_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    details: Mapped[str] = mapped_column(Text, default="{}")
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(255), default=None)
    entry_hash: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True, default=None)
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    hash: Mapped[str | None] = mapped_column(String(64), default=None)
