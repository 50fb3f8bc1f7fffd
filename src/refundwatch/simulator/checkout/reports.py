"""Checkout.com's Financial actions report as a CSV, for ``GET /_control/reports/checkout``.

Written from Checkout.com's report documentation (checkout.com/docs/.../financial-actions-by-payout-id-report
and .../breakdown-types; RECONCILIATION.md §4): one row per **breakdown** of each financial action, amounts
signed from the merchant's balance in **major units with 8 decimals** (``-12.50000000``, ``-1200.00000000``
JPY), datetimes in ISO format in UTC, every row naming its payment, its action and the payout that settled it.

- a captured payment: action ``Capture``, a ``Capture`` row (credit) and a ``Premium Variable Fee`` row;
- a refund: action ``Refund`` (the whole payment) or ``Partial Refund``, Action ID = the refund's action id,
  Reference = the ``reference`` sent with the refund (``Refund.extra["reference"]``, else the metadata's
  ``refund_id``, ``Refund.extra["metadata"]``): a ``Refund`` row (debit) and a ``Refund Fixed Fee`` row;
- a refund that failed or was reversed after it succeeded: the same action, a ``Clearing Failed`` row that
  credits the refund back ("a failed refund will be credited back to your balance"), in the payout of the
  day it came back. The refund's fee is not given back.

Payouts: daily, in the entity's settlement time zone (Europe/London here); Payout ID is a 12-character id
derived from the currency and the day, so every report names a line's payout the same way.
``shift_cutoff`` moves a refund's rows to the next day's payout. Processing and holding currency are the
same (no FX). The report is cumulative, each row the same text in every later report.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from ..settlement import Line, Reports, exponent, major, payout_day, stable_id

__all__ = [
    "COLUMNS",
    "FILENAME",
    "ZONE",
    "new_action_id",
    "refund_fee",
    "register",
    "report_amount",
    "report_csv",
]

PROCESSOR: Final = "checkout"
ENTITY_ID: Final = "ent_rwsimcheckout00000000000001"
SUB_ENTITY_ID: Final = "ent_rwsimcheckoutsub0000000001"
PROCESSING_CHANNEL_ID: Final = "pc_rwsimcheckout000000000000001"
FILENAME: Final = f"financial-actions_{ENTITY_ID}_report_1.csv"
ZONE: Final = ZoneInfo("Europe/London")  # the entity's settlement time zone
PLACES: Final = 8  # "up to 8 decimal places"
COLUMNS: Final = (
    "Client Entity ID",
    "Sub Entity ID",
    "Currency Account ID",
    "Processing Channel ID",
    "Action Type",
    "Action ID",
    "Payment ID",
    "Reference",
    "Requested On",
    "Processed On",
    "Payout ID",
    "Breakdown Type",
    "Processing Currency",
    "Processing Currency Amount",
    "Holding Currency",
    "Holding Currency Amount",
    "FX Rate Applied",
    "Transaction Currency",
    "Transaction Currency Amount",
    "Payment Method",
    "Card Type",
    "Fee Detail",
)
_ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"


def new_action_id() -> str:
    """A Checkout.com action id: ``act_`` and 26 base32 characters."""
    return "act_" + "".join(random.choices(_ID_ALPHABET, k=26))


def report_amount(minor: int, currency: str) -> str:
    """Signed minor units as the report prints them: major units with 8 decimals."""
    text = major(minor, currency)
    places = exponent(currency)
    return text + ("0" * (PLACES - places) if places else "." + "0" * PLACES)


def refund_fee(currency: str) -> int:
    """Checkout.com's refund fixed fee here: 0.10 of the currency, at least one minor unit."""
    return max(int(10 ** exponent(currency)) // 10, 1)


def premium_fee(amount: int) -> int:
    """The capture's variable fee here: 0.95 % of the amount, rounded down."""
    return amount * 95 // 10_000


def _moment(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000")


def _reference(line: Line) -> str:
    """The reference sent with the refund; without one, the refund id in its metadata (kept in
    ``extra["metadata"]`` by the refund endpoint, or ``Refund.metadata``)."""
    metadata = line.extra.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else line.metadata
    return str(line.extra.get("reference") or metadata.get("refund_id") or "")


def _rows(line: Line) -> list[tuple[str, str, str, str, int]]:
    """(action type, action id, reference, breakdown type, signed minor units) per row of ``line``."""
    payment = line.payment
    if line.kind == "payment":
        action = stable_id("act_", "capture", payment.reference, length=26)
        rows = [("Capture", action, payment.reference, "Capture", line.amount)]
        fee = premium_fee(line.amount)
        if fee:
            rows.append(("Capture", action, payment.reference, "Premium Variable Fee", -fee))
        return rows
    action_type = "Refund" if line.amount >= payment.amount else "Partial Refund"
    refund_id, reference = line.refund_id or "", _reference(line)
    if line.kind == "refund":
        return [
            (action_type, refund_id, reference, "Refund", -line.amount),
            (action_type, refund_id, reference, "Refund Fixed Fee", -refund_fee(line.currency)),
        ]
    return [(action_type, refund_id, reference, "Clearing Failed", line.amount)]  # refund_failure


def report_csv(lines: list[Line]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for line in lines:
        currency = line.currency
        day = payout_day(line.at, ZONE, line.shift)
        payout = stable_id("", "payout", ENTITY_ID, currency, day.isoformat(), length=12, upper=True)
        account = stable_id("ca_", "account", ENTITY_ID, currency, length=26)
        moment = _moment(line.at)
        for action_type, action_id, reference, breakdown, amount in _rows(line):
            text = report_amount(amount, currency)
            fee_row = breakdown.endswith("Fee")
            writer.writerow(
                [
                    ENTITY_ID,
                    SUB_ENTITY_ID,
                    account,
                    PROCESSING_CHANNEL_ID,
                    action_type,
                    action_id,
                    line.payment.reference,
                    reference,
                    moment,
                    moment,
                    payout,
                    breakdown,
                    currency,
                    text,
                    currency,
                    text,
                    "" if fee_row else "1.00000000",
                    currency,
                    "" if fee_row else text,
                    "VISA",
                    "Credit",
                    breakdown if fee_row else "",
                ]
            )
    return out.getvalue()


def register(reports: Reports) -> None:
    """Offer Checkout.com's Financial actions report under ``GET /_control/reports/checkout`` (and its
    discrepancies)."""
    reports.register(PROCESSOR, report_csv, new_action_id, filename=FILENAME)
