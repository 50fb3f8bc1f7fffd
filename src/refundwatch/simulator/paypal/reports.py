"""PayPal's Settlement report (STL) as a CSV, for ``GET /_control/reports/paypal``.

Written from PayPal's Settlement Report Specification (developer.paypal.com/docs/reports/sftp-reports/
settlement-report; RECONCILIATION.md §3): every record starts with its type (``RH`` report header, ``FH``
file header, ``SH`` section header with the reporting window and the account, ``CH`` column names,
``SB`` body rows, ``SF``/``SC`` section footer and count, ``RF``/``RC`` report footer and count, ``FF``
file footer); text fields are quoted, numbers and dates are not; amounts are unsigned integers **x100
whatever the currency** (``10000`` is 100.00 EUR and 100 JPY), with ``DR``/``CR`` beside each.

- ``T0006`` (PayPal Checkout APIs) CR per captured payment: Transaction ID = the capture id, PayPal's fee
  taken (DR);
- ``T1107`` (payment refund, initiated by merchant) DR per refund: Transaction ID = the refund id,
  PayPal Reference ID = the capture (type ``TXN``), Invoice ID and Custom Field = the refund's
  ``invoice_id`` and ``custom_id`` as sent (``Refund.extra``). No fee comes back, as the refund's
  ``seller_payable_breakdown.paypal_fee`` says (the simulator's refunds keep PayPal's fee);
- ``T1106`` (payment reversal, initiated by PayPal) CR for a refund that failed or was reversed after it
  succeeded: the money comes back in its own movement (PayPal has no "reversed" refund), whose PayPal
  Reference ID is the refund.

The report is cumulative ("everything in the ledger so far"): one section per day of the reporting
window (America/Los_Angeles, as PayPal's ``-0800`` windows), oldest first, each line in the section of
its own day; ``shift_cutoff`` moves a line to the next day's section. Every body row is the same text in
every later report. Generation time is the latest line's, so an unchanged ledger gives the same file.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Final
from zoneinfo import ZoneInfo

from ..settlement import Line, Reports, exponent, payout_day, stable_id

__all__ = [
    "ACCOUNT_ID",
    "COLUMNS",
    "FILENAME",
    "ZONE",
    "checkout_fee",
    "new_refund_id",
    "register",
    "report_csv",
    "stl_amount",
]

PROCESSOR: Final = "paypal"
FILENAME: Final = "STL-settlement.01.009.CSV"
ZONE: Final = ZoneInfo("America/Los_Angeles")
ACCOUNT_ID: Final = "RWSIMPAYPAL01"  # the merchant's PayPal account id (13 characters, as PayPal's)
REPORTING_WINDOW: Final = "A"
REPORT_VERSION: Final = "009"
COLUMNS: Final = (
    "Transaction ID",
    "Invoice ID",
    "PayPal Reference ID",
    "PayPal Reference ID Type",
    "Transaction Event Code",
    "Transaction Initiation Date",
    "Transaction Completion Date",
    "Transaction Debit or Credit",
    "Gross Transaction Amount",
    "Gross Transaction Currency",
    "Fee Debit or Credit",
    "Fee Amount",
    "Fee Currency",
    "Custom Field",
    "Consumer ID",
    "Payment Tracking ID",
    "Store ID",
    "Bank Reference ID",
    "Credit Transactional Fee",
    "Credit Promotional Fee",
    "Credit Term",
)
_ALNUM: Final = string.ascii_uppercase + string.digits


def new_refund_id() -> str:
    """A PayPal transaction id: 17 upper-case letters and digits (``1JU08902781691411``)."""
    return "".join(random.choices(_ALNUM, k=17))


def stl_amount(minor: int, currency: str) -> str:
    """Minor units as STL prints money: the major amount x100, unsigned. PayPal carries no currency with
    three decimals; for one, the third decimal is dropped."""
    places = exponent(currency)
    if places <= 2:
        return str(abs(minor) * 10 ** (2 - places))
    return str(abs(minor) // 10 ** (places - 2))


def checkout_fee(amount: int, currency: str) -> int:
    """PayPal's standard Checkout fee: 3.49 % plus a fixed 0.49 (49 units without decimals)."""
    places = exponent(currency)
    return amount * 349 // 10_000 + (49 * 10 ** (places - 2) if places >= 2 else 49)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _local(at: int) -> str:
    return datetime.fromtimestamp(at, ZONE).strftime("%Y/%m/%d %H:%M:%S %z")


def _window(day: date) -> tuple[str, str]:
    start = datetime.combine(day, time(), ZONE)
    end = datetime.combine(day, time(23, 59, 59), ZONE)
    return start.strftime("%Y/%m/%d %H:%M:%S %z"), end.strftime("%Y/%m/%d %H:%M:%S %z")


class _Totals:
    __slots__ = ("fee_cr", "fee_dr", "gross_cr", "gross_dr")

    def __init__(self) -> None:
        self.gross_cr = self.gross_dr = self.fee_cr = self.fee_dr = 0

    def add(self, side: str, gross: int, fee_side: str, fee: int) -> None:
        if side == "CR":
            self.gross_cr += gross
        else:
            self.gross_dr += gross
        if fee_side == "CR":
            self.fee_cr += fee
        elif fee_side == "DR":
            self.fee_dr += fee


def _body(line: Line) -> tuple[list[str], str, int, str, int]:
    """The SB row's fields after "SB", and (side, gross, fee side, fee) in STL units for the totals."""
    payment, currency = line.payment, line.currency
    invoice = str(line.extra.get("invoice_id") or "")
    custom = str(line.extra.get("custom_id") or "")
    refund_id = line.refund_id or ""
    fee_side, fee = "", 0
    if line.kind == "payment":
        transaction, reference, code, side = payment.reference, "", "T0006", "CR"
        invoice = custom = ""
        fee_side, fee = "DR", checkout_fee(line.amount, currency)
    elif line.kind == "refund":
        transaction, reference, code, side = refund_id, payment.reference, "T1107", "DR"
    else:  # refund_failure: PayPal gives the money back in a reversal of its own
        transaction = stable_id("", "reversal", refund_id, str(line.at), length=17, upper=True)
        reference, code, side = refund_id, "T1106", "CR"
    booked = _local(line.at)
    gross = stl_amount(line.amount, currency)
    fee_text = stl_amount(fee, currency) if fee else ""
    fields = [
        _quoted(transaction),
        _quoted(invoice),
        _quoted(reference),
        _quoted("TXN" if reference else ""),
        _quoted(code),
        booked,
        booked,
        _quoted(side),
        gross,
        _quoted(currency),
        _quoted(fee_side),
        fee_text,
        _quoted(currency if fee else ""),
        _quoted(custom),
        _quoted(""),
        _quoted(""),
        _quoted(""),
        _quoted(""),
        "",
        "",
        "",
    ]
    return fields, side, int(gross), fee_side, int(fee_text or 0)


def _footers(kind: str, totals: dict[str, _Totals]) -> Iterable[str]:
    for currency in sorted(totals):
        t = totals[currency]
        amounts = (t.gross_cr, t.gross_dr, t.fee_cr, t.fee_dr)
        yield ",".join([_quoted(kind), _quoted(currency), *map(str, amounts)])


def report_csv(lines: list[Line]) -> str:
    sections: dict[date, list[Line]] = defaultdict(list)
    for line in lines:
        sections[payout_day(line.at, ZONE, line.shift)].append(line)
    generated = _local(max((line.at for line in lines), default=0))
    out = [
        ",".join([_quoted("RH"), generated, _quoted(REPORTING_WINDOW), _quoted(ACCOUNT_ID), REPORT_VERSION]),
        ",".join([_quoted("FH"), "01"]),
    ]
    report_totals: dict[str, _Totals] = defaultdict(_Totals)
    count = 0
    for day in sorted(sections):
        start, end = _window(day)
        out.append(",".join([_quoted("SH"), start, end, _quoted(ACCOUNT_ID)]))
        out.append(",".join([_quoted("CH"), *map(_quoted, COLUMNS)]))
        totals: dict[str, _Totals] = defaultdict(_Totals)
        for line in sections[day]:
            fields, side, gross, fee_side, fee = _body(line)
            out.append(",".join([_quoted("SB"), *fields]))
            totals[line.currency].add(side, gross, fee_side, fee)
            report_totals[line.currency].add(side, gross, fee_side, fee)
        out.extend(_footers("SF", totals))
        out.append(",".join([_quoted("SC"), str(len(sections[day]))]))
        count += len(sections[day])
    out.extend(_footers("RF", report_totals))
    out.append(",".join([_quoted("RC"), str(count)]))
    out.append(",".join([_quoted("FF"), str(count)]))
    return "\n".join(out) + "\n"


def register(reports: Reports) -> None:
    """Offer PayPal's STL under ``GET /_control/reports/paypal`` (and its discrepancies)."""
    reports.register(PROCESSOR, report_csv, new_refund_id, filename=FILENAME)
