"""Stripe's itemized payout reconciliation report (``payout_reconciliation.itemized.5``) as a CSV.

Written from Stripe's column definitions (docs.stripe.com/reports/payout-reconciliation): one row per
balance transaction, amounts in major units with a sign (money out is negative), ``net = gross - fee``,
the currency in lower case as Stripe prints it, times in UTC (``*_utc``). A charge pays Stripe's fee; a
refund pays none and gets none back. A refund that fails after succeeding gives the money back in its
own ``refund_failure`` row (a positive amount, its own balance transaction).

The report run names which metadata columns it carries (``columns[]``); this one carries the refund
metadata key refundwatch sends, ``refund_metadata[refundwatch_refund_id]``. Automatic payouts are daily,
cut off at midnight UTC.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Final

from ..asgi import random_id
from ..settlement import Line, Reports, exponent, major, payout_day, stable_id
from .wire import charge_id_for

__all__ = ["COLUMNS", "FILENAME", "register", "report_csv"]

PROCESSOR: Final = "stripe"

FILENAME: Final = "payout_reconciliation_itemized.csv"
METADATA_KEY: Final = "refundwatch_refund_id"
COLUMNS: Final = (
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "charge_id",
    "payment_intent_id",
    f"refund_metadata[{METADATA_KEY}]",
)


def _is_charge_id(reference: str) -> bool:
    return reference.startswith(("ch_", "py_"))


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def charge_fee(amount: int, currency: str) -> int:
    """Stripe's standard card price, 2.9 % + 30 cents (no fixed part without cents)."""
    places = exponent(currency)
    return amount * 29 // 1000 + (30 * 10 ** (places - 2) if places >= 2 else 0)


def _row(line: Line) -> list[str]:
    payment = line.payment
    reference = payment.reference
    charge = reference if _is_charge_id(reference) else charge_id_for(reference)
    intent = "" if _is_charge_id(reference) else reference
    booked = datetime.fromtimestamp(line.at, UTC)
    own_day = payout_day(line.at, UTC)
    day = payout_day(line.at, UTC, line.shift)
    currency = line.currency.lower()
    if line.kind == "payment":
        fee = charge_fee(line.amount, line.currency)
        txn, category, source, gross = stable_id("txn_", "charge", reference), "charge", charge, line.amount
        description, metadata = "Payment", ""
    else:
        refund_id = line.refund_id or ""
        fee, source, metadata = 0, refund_id, line.metadata.get(METADATA_KEY, "")
        if line.kind == "refund":
            txn = line.extra.get("balance_transaction") or stable_id("txn_", "refund", refund_id)
            category, gross, description = "refund", -line.amount, "REFUND FOR CHARGE"
        else:
            real = None if line.injected else line.extra.get("failure_balance_transaction")
            txn = real or stable_id("txn_", "refund_failure", refund_id, str(line.at))
            category, gross, description = "refund_failure", line.amount, "REFUND FAILURE"
    payout = datetime.combine(day, datetime.min.time(), UTC)
    return [
        stable_id("po_", "stripe payout", day.isoformat()),
        _utc(payout + timedelta(days=2)),
        txn,
        _utc(booked),
        _utc(datetime.combine(own_day, datetime.min.time(), UTC) + timedelta(days=2)),
        currency,
        major(gross, line.currency),
        major(fee, line.currency),
        major(gross - fee, line.currency),
        category,
        source,
        description,
        charge,
        intent,
        metadata,
    ]


def report_csv(lines: list[Line]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(line) for line in lines)
    return out.getvalue()


def register(reports: Reports) -> None:
    """Offer Stripe's report under ``GET /_control/reports/stripe``."""
    reports.register(PROCESSOR, report_csv, lambda: random_id("re_"), filename=FILENAME)
