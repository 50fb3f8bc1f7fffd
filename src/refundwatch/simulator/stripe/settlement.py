"""Stripe's itemized payout reconciliation report (``payout_reconciliation.itemized.5``) as a CSV.

Written from Stripe's column definitions (docs.stripe.com/reports/payout-reconciliation): one row per
balance transaction, amounts in major units with a sign (money out is negative), ``net = gross - fee``,
the currency in lower case as Stripe prints it, times in UTC (``*_utc``). A charge pays Stripe's fee; a
refund pays none and gets none back. A refund that fails after succeeding gives the money back in its
own ``refund_failure`` row (a positive amount, its own balance transaction).

The report run names which metadata columns it carries (``columns[]``); this one carries the refund
metadata key refundwatch sends, ``refund_metadata[refundwatch_refund_id]``. Automatic payouts are per
currency and payout period (``schedule.Schedule``: daily, cut off at midnight UTC, and wherever
``POST /_control/payouts/pay`` cut); ``entry`` is one balance transaction, shared with the API answers
(``payouts``), so the report and ``GET /v1/balance_transactions`` tell the same story.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ..asgi import random_id
from ..settlement import Line, Reports, exponent, major, payout_day, stable_id
from .schedule import Schedule
from .wire import charge_id_for

__all__ = ["COLUMNS", "FILENAME", "Entry", "entry", "register", "report_csv"]

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


@dataclass(frozen=True, slots=True)
class Entry:
    """One line as Stripe books it: a balance transaction."""

    txn: str
    category: str  # reporting_category
    type: str  # the balance transaction's type
    source: str
    gross: int  # signed minor units: money out is negative
    fee: int
    description: str
    charge: str
    intent: str
    metadata: str  # refund_metadata[refundwatch_refund_id]
    available_on: int  # Unix seconds

    @property
    def net(self) -> int:
        return self.gross - self.fee


def entry(line: Line) -> Entry:
    payment = line.payment
    reference = payment.reference
    charge = reference if _is_charge_id(reference) else charge_id_for(reference)
    intent = "" if _is_charge_id(reference) else reference
    own_day = payout_day(line.at, UTC)
    available = int((datetime.combine(own_day, datetime.min.time(), UTC) + timedelta(days=2)).timestamp())
    if line.kind == "payment":
        fee = charge_fee(line.amount, line.currency)
        txn = stable_id("txn_", "charge", reference)
        gross, description = line.amount, "Payment"
        return Entry(txn, "charge", "charge", charge, gross, fee, description, charge, intent, "", available)
    refund_id = line.refund_id or ""
    metadata = line.metadata.get(METADATA_KEY, "")
    if line.kind == "refund":
        txn = line.extra.get("balance_transaction") or stable_id("txn_", "refund", refund_id)
        category, gross, description = "refund", -line.amount, "REFUND FOR CHARGE"
    else:
        real = None if line.injected else line.extra.get("failure_balance_transaction")
        txn = real or stable_id("txn_", "refund_failure", refund_id, str(line.at))
        category, gross, description = "refund_failure", line.amount, "REFUND FAILURE"
    source = refund_id
    return Entry(txn, category, category, source, gross, 0, description, charge, intent, metadata, available)


def _row(line: Line, schedule: Schedule) -> list[str]:
    booked = entry(line)
    period = schedule.period_of(line.at, line.shift)
    return [
        schedule.payout_id(period, line.currency),
        _utc(datetime.fromtimestamp(period.end, UTC)),
        booked.txn,
        _utc(datetime.fromtimestamp(line.at, UTC)),
        _utc(datetime.fromtimestamp(booked.available_on, UTC)),
        line.currency.lower(),
        major(booked.gross, line.currency),
        major(booked.fee, line.currency),
        major(booked.net, line.currency),
        booked.category,
        booked.source,
        booked.description,
        booked.charge,
        booked.intent,
        booked.metadata,
    ]


def report_csv(lines: list[Line], schedule: Schedule) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(line, schedule) for line in lines)
    return out.getvalue()


def register(reports: Reports, schedule: Schedule) -> None:
    """Offer Stripe's report under ``GET /_control/reports/stripe``, its payouts cut by ``schedule``."""
    reports.register(
        PROCESSOR, lambda lines: report_csv(lines, schedule), lambda: random_id("re_"), filename=FILENAME
    )
