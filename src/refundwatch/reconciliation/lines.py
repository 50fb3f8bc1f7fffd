"""The normalised settlement line: one row of a processor's settlement data, in one shape for all.

Sign convention (one for every processor, whatever the source used; RECONCILIATION.md §0 warns that
processors disagree):
- ``gross`` and ``net`` are signed from the merchant's balance: positive = money in (credit), negative =
  money out (debit). A refund's gross is negative, a refund failure's positive.
- ``fee`` is signed as a cost: positive = a fee taken from the merchant, negative = a fee given back.
- ``gross`` is in ``currency`` (the transaction's); ``fee`` and ``net`` are in ``settlement_currency``.
  Nothing requires ``net == gross - fee``: fees are their own component (§7 M6) and currencies may differ.
- ``direction`` follows gross (the transaction's own amount), or net when gross is zero; it is stored
  rather than derived so that a zero line still says which column the processor filled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class LineKind(StrEnum):
    REFUND = "refund"
    # A refund that failed or was reversed after it had succeeded: money back into the balance.
    REFUND_FAILURE = "refund_failure"
    FEE = "fee"
    FEE_REFUND = "fee_refund"
    PAYOUT = "payout"
    PAYMENT = "payment"
    # A type the processor documents that is not about refunds (disputes, transfers, adjustments...).
    OTHER = "other"
    # A type refundwatch does not know: kept and flagged, never guessed (fail closed, §7 M10).
    UNMAPPED = "unmapped"


class Direction(StrEnum):
    DEBIT = "debit"  # money out of the merchant's balance
    CREDIT = "credit"  # money into it


class LineSource(StrEnum):
    FILE = "file"  # a report file, imported or downloaded
    API = "api"  # an API answer (JSON)


def direction_of(gross: int, net: int, filled: Direction | None = None) -> Direction:
    """Gross's sign, else net's; for a line of zeros, the side the source filled (else credit)."""
    leading = gross or net
    if leading:
        return Direction.DEBIT if leading < 0 else Direction.CREDIT
    return filled or Direction.CREDIT


def hash_row(raw: str) -> str:
    """sha256 hex of a row's raw text, the duplicate detector's key (§7 M7)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SettlementLine:
    processor: str
    source: LineSource
    row_number: int  # file: line where the record starts (header = 1); api: position in the page, from 1
    raw: str  # the record's text as in the source, without its final line break; api: the object's JSON
    row_hash: str
    line_key: str  # the processor's own unique id of the line (see each parser)
    kind: LineKind
    direction: Direction
    gross: int  # minor units of currency, signed (module docstring)
    fee: int  # minor units of settlement_currency, positive = charged
    net: int  # minor units of settlement_currency, signed
    currency: str  # transaction currency, ISO 4217 upper case
    settlement_currency: str
    gateway_refund_id: str | None
    gateway_payment_id: str | None
    merchant_reference: str | None  # for refunds: the reference refundwatch sent (its refund id)
    payout_id: str | None
    occurred_at: datetime  # aware, UTC
    source_timezone: str  # the zone the source stated its time in, as it named it
    raw_type: str  # the processor's own type or category, as given

    def __post_init__(self) -> None:
        # Cheap invariants only: a million lines pass through here.
        if self.occurred_at.tzinfo is not UTC:
            raise ValueError("occurred_at must be an aware datetime in UTC")
        leading = self.gross or self.net
        if leading and (leading < 0) != (self.direction is Direction.DEBIT):
            raise ValueError(f"direction {self.direction} contradicts the amount {leading}")

    @property
    def amount(self) -> int:
        """The transaction amount as a magnitude, what a refund's own amount compares to."""
        return abs(self.gross)
