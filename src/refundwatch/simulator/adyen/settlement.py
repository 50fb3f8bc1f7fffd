"""Adyen's Settlement details report (``settlement_detail_report_batch_<N>.csv``) as a CSV.

Written from Adyen's report structure and journal types (docs.adyen.com/reporting/settlement-detail-report):
amounts unsigned in major units, the side (debit or credit) telling the direction; gross in the
transaction currency, net and the fee components in the settlement currency (the same here: no FX).

- ``Settled`` (credit) per captured payment, its fees in Commission and Interchange;
- ``Refunded`` (Gross Debit, Net Debit) per refund: Modification Reference = the refund's pspReference,
  Modification Merchant Reference = the ``reference`` sent with the refund;
- ``RefundedReversed`` (credit) for a refund that failed (REFUND_FAILED) or was reversed
  (REFUNDED_REVERSED) after it succeeded: either way the money came back;
- per batch and currency, a ``Fee`` line (the refunds' transaction fees, booked at batch level) and a
  ``MerchantPayout`` line (what the batch pays out, when positive).

Times are the account's (Europe/Amsterdam, printed CET or CEST in TimeZone). One batch per merchant
account and day, cut off at local midnight; Batch Number counts days from 2020-01-01. This report covers
every batch so far, the current one as it stands.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from ..connections import Connections
from ..settlement import Line, Reports, exponent, major, payout_day, stable_id
from .notifications import PROCESSOR
from .wire import psp_reference

__all__ = ["COLUMNS", "FILENAME", "register", "report_csv"]

FILENAME: Final = "settlement_detail_report.csv"
ZONE: Final = ZoneInfo("Europe/Amsterdam")
COMPANY: Final = "RefundwatchSimulator"
_EPOCH: Final = date(2020, 1, 1)
COLUMNS: Final = (
    "Company Account",
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Payment Method",
    "Creation Date",
    "TimeZone",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Exchange Rate",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Commission (NC)",
    "Markup (NC)",
    "Scheme Fees (NC)",
    "Interchange (NC)",
    "Payment Method Variant",
    "Modification Merchant Reference",
    "Batch Number",
    *(f"Reserved{n}" for n in range(4, 11)),
)


def batch_number(day: date) -> int:
    return (day - _EPOCH).days


def refund_fee(currency: str) -> int:
    """Adyen's transaction fee for a refund (SentForRefund): 0.10 of the currency, at least one unit."""
    return max(int(10 ** exponent(currency)) // 10, 1)


def _local(moment: datetime) -> tuple[str, str]:
    return moment.strftime("%Y-%m-%d %H:%M:%S"), moment.tzname() or "UTC"


class _Batch:
    __slots__ = ("fees", "net", "refunds")

    def __init__(self) -> None:
        self.net = 0  # credits minus debits of the batch's transaction lines
        self.fees = 0
        self.refunds = 0


def report_csv(lines: list[Line], default_merchant: str) -> str:
    merchant_of: dict[str, str] = {}
    for line in lines:
        account = line.extra.get("merchant_account") if line.refund_id else None
        if account:
            merchant_of.setdefault(line.payment.reference, account)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    batches: dict[tuple[str, date, str], _Batch] = {}
    for line in lines:
        payment = line.payment
        merchant = merchant_of.get(payment.reference) or default_merchant
        day = payout_day(line.at, ZONE, line.shift)
        batch = batches.setdefault((merchant, day, line.currency), _Batch())
        created, zone_name = _local(datetime.fromtimestamp(line.at, ZONE))
        amount = major(line.amount, line.currency)
        gross_debit = gross_credit = net_debit = net_credit = commission = interchange = ""
        merchant_reference = ""
        if line.kind == "payment":
            kind, modification = "Settled", stable_id("", "capture", payment.reference, length=16, upper=True)
            fee_one, fee_two = line.amount * 6 // 1000, line.amount * 3 // 1000
            commission, interchange = major(fee_one, line.currency), major(fee_two, line.currency)
            gross_credit, net_credit = amount, major(line.amount - fee_one - fee_two, line.currency)
            batch.net += line.amount - fee_one - fee_two
        else:
            modification = line.refund_id or ""
            merchant_reference = str(line.extra.get("merchant_reference") or "")
            if line.kind == "refund":
                kind, gross_debit, net_debit = "Refunded", amount, amount
                batch.net -= line.amount
                batch.refunds += 1
                batch.fees += refund_fee(line.currency)
            else:
                kind, gross_credit, net_credit = "RefundedReversed", amount, amount
                batch.net += line.amount
        writer.writerow(
            [
                COMPANY,
                merchant,
                payment.reference,
                payment.reference,
                "visa",
                created,
                zone_name,
                kind,
                modification,
                line.currency,
                gross_debit,
                gross_credit,
                "1",
                line.currency,
                net_debit,
                net_credit,
                commission,
                "",
                "",
                interchange,
                "visaclassic",
                merchant_reference,
                str(batch_number(day)),
                *[""] * 7,
            ]
        )
    for (merchant, day, currency), batch in sorted(batches.items(), key=lambda item: (item[0][1], item[0])):
        number = batch_number(day)
        closed = datetime.combine(day + timedelta(days=1), time(), ZONE) - timedelta(seconds=1)
        created, zone_name = _local(closed)
        payout = batch.net - batch.fees
        batch_lines = []
        if batch.fees:
            batch_lines.append(("Fee", f"Transaction Fees {day:%B %Y}", batch.fees))
        if payout > 0:
            transfer = stable_id("TX", "payout", merchant, str(number), currency, length=12, upper=True)
            batch_lines.append(("MerchantPayout", f"{transfer}XT batch {number}, {merchant}", payout))
        for kind, modification, net in batch_lines:
            writer.writerow(
                [
                    COMPANY,
                    merchant,
                    "",
                    "",
                    "",
                    created,
                    zone_name,
                    kind,
                    modification,
                    "",
                    "",
                    "",
                    "",
                    currency,
                    major(net, currency),
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    str(number),
                    *[""] * 7,
                ]
            )
    return out.getvalue()


def register(reports: Reports, connections: Connections) -> None:
    """Offer Adyen's report under ``GET /_control/reports/adyen``. Payments carry no merchant account
    here: one with no refund yet is reported under the first Adyen connection's account."""
    accounts = [a for c in connections.for_processor(PROCESSOR) if (a := c.get("merchant_account"))]
    default = accounts[0] if accounts else "RefundwatchSimulatorECOM"

    def render(lines: list[Line]) -> str:
        return report_csv(lines, default)

    reports.register(PROCESSOR, render, psp_reference, filename=FILENAME)
