"""Processors' settlement data, as imported, and the breaks reconciliation finds in it (issue 14).

Imported lines are never edited: a person resolves a break, never the line behind it. A file is
imported in batches, each committed (so the SQLite writer is never held for a whole file), and counts
only once its status is ``imported``; a file that failed halfway is removed, or cleared on the next
import of the same file.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from advanced_alchemy.base import BigIntBase, UUIDv7Base
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column


class SettlementFile(UUIDv7Base):
    """One imported report (a file, or one pull from a processor's API), known by its content hash."""

    __tablename__ = "settlement_files"
    __table_args__ = (UniqueConstraint("connection_id", "sha256", name="uq_settlement_files_content"),)

    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"))
    processor: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(8))  # file | api
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # importing | imported
    lines: Mapped[int] = mapped_column(Integer, default=0)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    imported_by: Mapped[str] = mapped_column(String(255))


class SettlementEntry(BigIntBase):
    """One line of a report, kept raw and normalised (``reconciliation.lines.SettlementLine``)."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        UniqueConstraint("file_id", "row_number", name="uq_settlement_lines_row"),
        Index("ix_settlement_lines_refund", "connection_id", "gateway_refund_id"),
        Index("ix_settlement_lines_key", "connection_id", "line_key"),
        # The matched share (reconciliation.figures): counted from the index alone.
        Index("ix_settlement_lines_match", "kind", "match", "connection_id"),
        # Matching's next batch (reconciliation.matching): only the lines not matched yet.
        Index(
            "ix_settlement_lines_unmatched",
            "id",
            postgresql_where=text("match IS NULL"),
            sqlite_where=text("match IS NULL"),
        ),
    )

    file_id: Mapped[UUID] = mapped_column(ForeignKey("settlement_files.id", ondelete="CASCADE"))
    connection_id: Mapped[UUID] = mapped_column(ForeignKey("connections.id"))
    row_number: Mapped[int] = mapped_column(Integer)
    row_hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)
    line_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))  # debit | credit
    gross: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    net: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    settlement_currency: Mapped[str | None] = mapped_column(String(3), default=None)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255), default=None)
    gateway_payment_id: Mapped[str | None] = mapped_column(String(255), default=None)
    merchant_reference: Mapped[str | None] = mapped_column(String(255), default=None)
    payout_id: Mapped[str | None] = mapped_column(String(255), default=None)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    source_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    raw_type: Mapped[str] = mapped_column(String(64))
    # What matching made of it: matched, or the kind of break it opened.
    match: Mapped[str | None] = mapped_column(String(32), default=None)
    refund_id: Mapped[UUID | None] = mapped_column(ForeignKey("refunds.id"), default=None)


class ReconciliationBreak(UUIDv7Base):
    """A difference between refundwatch and the records, open until a person resolves it."""

    __tablename__ = "reconciliation_breaks"
    __table_args__ = (
        # Matching runs again and again: one break per subject and kind, never a second copy.
        UniqueConstraint("connection_id", "kind", "subject", name="uq_reconciliation_breaks_subject"),
        Index("ix_reconciliation_breaks_status", "status", "opened_at"),
    )

    connection_id: Mapped[UUID | None] = mapped_column(ForeignKey("connections.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))  # the refund, line, payment or invoice it is about
    refund_id: Mapped[UUID | None] = mapped_column(ForeignKey("refunds.id"), default=None)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_lines.id"), default=None)
    gateway_refund_id: Mapped[str | None] = mapped_column(String(255), default=None)
    currency: Mapped[str | None] = mapped_column(String(3), default=None)
    expected: Mapped[int | None] = mapped_column(BigInteger, default=None)  # refundwatch's figure
    actual: Mapped[int | None] = mapped_column(BigInteger, default=None)  # the records' figure
    detail: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(255), default=None)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
