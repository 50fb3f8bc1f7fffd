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

Times are the account's (Europe/Amsterdam, printed CET or CEST in TimeZone). A merchant account's
batch closes at local midnight, or earlier when it is published (``POST /_control/reports/adyen/publish``,
module ``reports``): Batch Number is the days from 2020-01-01 plus the publications of that account
before the line, so numbers only grow and a closed batch keeps its number and lines. This report covers
every batch so far, the current one as it stands; ``batch_file`` is one closed batch's own file.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from ..connections import Connections
from ..settlement import Line, Reports, exponent, major, stable_id
from .notifications import PROCESSOR
from .wire import psp_reference

__all__ = [
    "COLUMNS",
    "FILENAME",
    "Cuts",
    "batch_file",
    "batch_filename",
    "batch_of",
    "register",
    "report_csv",
]

FILENAME: Final = "settlement_detail_report.csv"
# Per merchant account, the Unix seconds at which a publication closed its batch early, ascending.
Cuts = Mapping[str, Sequence[int]]
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


def batch_filename(number: int) -> str:
    """A batch's own file, as Adyen names it (RECONCILIATION.md §2.1)."""
    return f"settlement_detail_report_batch_{number}.csv"


def _midnight(day: date) -> int:
    return int(datetime.combine(day, time(), ZONE).timestamp())


def batch_of(at: int, shift: int, cuts: Sequence[int]) -> tuple[int, datetime]:
    """(Batch Number, closing moment) of a line booked at ``at`` (Unix seconds), ``shift`` batches late.

    A batch runs from local midnight or a cut (inclusive) to the next of either (exclusive); a shifted
    line (``shift_cutoff``) belongs to the first batch of the day after its own. ``cuts`` are one merchant
    account's, ascending. Without cuts: the day's number and its last second, as before any publication.
    """
    day = datetime.fromtimestamp(at, ZONE).date()
    moment = at if not shift else _midnight(day + timedelta(days=shift))
    if shift:
        day += timedelta(days=shift)
    before = bisect.bisect_right(cuts, moment)  # cuts at or before the moment closed earlier batches
    end = _midnight(day + timedelta(days=1))
    if before < len(cuts):
        end = min(end, cuts[before])
    return batch_number(day) + before, datetime.fromtimestamp(end - 1, ZONE)


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


def report_csv(lines: list[Line], default_merchant: str, cuts: Cuts | None = None) -> str:
    cuts = cuts or {}
    merchant_of: dict[str, str] = {}
    for line in lines:
        account = line.extra.get("merchant_account") if line.refund_id else None
        if account:
            merchant_of.setdefault(line.payment.reference, account)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    batches: dict[tuple[datetime, str, int, str], _Batch] = {}
    for line in lines:
        payment = line.payment
        merchant = merchant_of.get(payment.reference) or default_merchant
        number, closed = batch_of(line.at, line.shift, cuts.get(merchant, ()))
        batch = batches.setdefault((closed, merchant, number, line.currency), _Batch())
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
                str(number),
                *[""] * 7,
            ]
        )
    for (closed, merchant, number, currency), batch in sorted(batches.items(), key=lambda item: item[0]):
        day = closed.date()
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


def batch_file(report: str, merchant: str, number: int) -> str:
    """One closed batch's own file, cut from ``report`` (the account's cumulative report as
    ``GET /_control/reports/adyen`` renders it): the header and that merchant account's rows of that
    batch, byte for byte, so a download and the control report never disagree."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    rows = csv.reader(io.StringIO(report, newline=""))
    header = next(rows, None)
    if header is None:
        return ""
    writer.writerow(header)
    merchant_at, batch_at = header.index("Merchant Account"), header.index("Batch Number")
    for row in rows:
        if row[merchant_at] == merchant and row[batch_at] == str(number):
            writer.writerow(row)
    return out.getvalue()


def register(reports: Reports, connections: Connections, cuts: Cuts | None = None) -> None:
    """Offer Adyen's report under ``GET /_control/reports/adyen``. Payments carry no merchant account
    here: one with no refund yet is reported under the first Adyen connection's account. ``cuts`` (kept
    up to date by the publications, module ``reports``) close batches before midnight."""
    accounts = [a for c in connections.for_processor(PROCESSOR) if (a := c.get("merchant_account"))]
    default = accounts[0] if accounts else "RefundwatchSimulatorECOM"

    def render(lines: list[Line]) -> str:
        return report_csv(lines, default, cuts)

    reports.register(PROCESSOR, render, psp_reference, filename=FILENAME)
