"""Checkout.com's Financial actions report (CSV) as SettlementLines.

Facts: RECONCILIATION.md §4 (checkout.com/docs/.../financial-actions-by-payout-id-report and
.../breakdown-types; the field model of ``checkout-sdk-java`` ``FinancialAction``/``ActionBreakdown``).
The *by payout ID* and *by date range* reports share their field names, so one parser reads both.

- One row is one **breakdown** of one financial action: a refund action gives a ``Refund`` row (the money
  back to the cardholder) and one row per fee (``Refund Fixed Fee`` ...), all with the refund's Action ID.
- Amounts are decimals in **major units, up to 8 decimal places**, signed from the merchant's balance
  (capture positive, fees negative: third-party parsers of Checkout.com's published sample; a refund's sign
  is UNCONFIRMED officially, §4.3). They are converted exactly with the currency's ISO exponent: padding
  zeros are accepted (``12.50000000`` EUR), any other digit beyond it (``12.5`` JPY, ``1.2345`` KWD) is an
  error, never rounded.
- ``Processing Currency Amount`` is the action's own amount (line ``gross``, in the processing currency);
  ``Holding Currency Amount`` is what moved in the sub-account's currency (line ``net``, in the holding
  currency), the one column Checkout.com says is additive. A row that fills only one of them (fixed fees
  are booked in the holding currency) uses it for both.
- Times: ``Processed On`` (else ``Requested On``), ISO 8601. Checkout.com's report field tables state their
  datetimes "in ISO format in UTC"; a value without an offset is read in the parser's ``zone`` (UTC unless
  told otherwise) and one that carries an offset keeps it. ``source_timezone`` names which.

Kinds, from Breakdown Type (Action Type where it tells more), and the direction (fail closed, §7 M10):
- ``Refund`` under a ``Refund``/``Partial Refund`` action, debit: a refund. Anything else carrying a
  ``Refund`` breakdown (a credit, another action type) is unmapped.
- ``Clearing Failed`` under a refund action, credit: "a failed refund will be credited back to your
  balance" → refund failure, named by the refund's Action ID (UNCONFIRMED whether Checkout.com reuses the
  refund's action id or gives the reversal its own; either way the row's Action ID is what the refund id
  is compared with). ``Clearing Failed`` under a capture, debit, is a payment that failed to clear → other.
- ``Capture``/``Partial Capture``, credit → payment.
- ``... Fixed Fee``/``... Variable Fee`` and the named fees, and their ``... Tax`` → fee (debit) or fee
  refund (credit).
- ``Payout`` → payout; chargebacks, reserves and the documented adjustments → other.
- Anything else is unmapped.

Ids: line_key = ``Action ID|Breakdown Type`` (an action has one row per breakdown; identical fee rows that
Checkout.com says can legitimately repeat keep their row numbers apart). For refund lines the processor's
refund id is the Action ID and the original payment the Payment ID; refundwatch sends its refund id as the
refund's ``reference``, which the ``Reference`` column carries (as written). payout_id = ``Payout ID``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import BinaryIO, Final

from refundwatch.reconciliation.lines import (
    Direction,
    LineKind,
    LineSource,
    SettlementLine,
    direction_of,
    hash_row,
)
from refundwatch.reconciliation.parsing import FieldError, SettlementFormatError
from refundwatch.reconciliation.reading import CsvLayout, CsvRecord, Values, read_csv
from refundwatch.reconciliation.values import currency_code, local_time, major_units, zone

PROCESSOR: Final = "checkout"

REPORT_LAYOUT: Final = CsvLayout(
    title="a Checkout.com Financial actions report",
    required=(
        "Action Type",
        "Action ID",
        "Payment ID",
        "Breakdown Type",
        "Processing Currency",
        "Processing Currency Amount",
        "Holding Currency",
        "Holding Currency Amount",
    ),
    any_of=(("Processed On", "Requested On"),),
    optional=("Reference", "Payout ID"),
)

REFUND_ACTIONS: Final = frozenset({"Refund", "Partial Refund"})
CAPTURE_ACTIONS: Final = frozenset({"Capture", "Partial Capture"})

# Breakdown types that are fees though their names do not end in "Fixed Fee" / "Variable Fee".
NAMED_FEES: Final = frozenset(
    {
        "Minimum Billing Fee",
        "Merchant Payout Fee",
        "Payout To Card Fee",
        "Account Updater Fee",
        "Network Token Fee",
        "FX Markup",
    }
)
_FEE: Final = re.compile(r".+ (?:Fixed|Variable) Fee(?: Tax)?")

# Breakdown type -> kind for the documented types that are not about refunds, fees or captures.
KIND_BY_BREAKDOWN: Final[Mapping[str, LineKind]] = MappingProxyType(
    {
        "Payout": LineKind.PAYOUT,
        **dict.fromkeys(
            [
                "Chargeback (ADJM)",
                "Chargeback (CBRV)",
                "Chargeback (RPDW)",
                "Chargeback (ARBW)",
                "Chargeback (ARBL)",
                "Chargeback (ARWS)",
                "Chargeback (AUTO)",
                "Cover Negative Position",
                "Invoice Settlement",
                "Operational Funding Release",
                "Operational Funding Reservation",
                "Security Deposit Release",
                "Security Deposit Reservation",
                "Top Up",
                "Transaction Amount Discrepancy",
                "Rolling Reserve Held",
                "Rolling Reserve Released",
            ],
            LineKind.OTHER,
        ),
    }
)

_REFUND_KINDS: Final = frozenset({LineKind.REFUND, LineKind.REFUND_FAILURE})


def is_fee(breakdown: str) -> bool:
    return breakdown in NAMED_FEES or _FEE.fullmatch(breakdown) is not None


def classify(action_type: str, breakdown: str, direction: Direction) -> LineKind:
    """The kind of a row; anything refundwatch does not know, or a known type booked the wrong way, is
    unmapped."""
    debit = direction is Direction.DEBIT
    if breakdown == "Refund":
        return LineKind.REFUND if action_type in REFUND_ACTIONS and debit else LineKind.UNMAPPED
    if breakdown == "Clearing Failed":
        if action_type in REFUND_ACTIONS and not debit:
            return LineKind.REFUND_FAILURE
        return LineKind.OTHER if action_type in CAPTURE_ACTIONS and debit else LineKind.UNMAPPED
    if breakdown in CAPTURE_ACTIONS:
        return LineKind.PAYMENT if action_type in CAPTURE_ACTIONS and not debit else LineKind.UNMAPPED
    if is_fee(breakdown):
        return LineKind.FEE if debit else LineKind.FEE_REFUND
    return KIND_BY_BREAKDOWN.get(breakdown, LineKind.UNMAPPED)


class CheckoutFinancialActionsParser:
    """``financial-actions_{EntityID}_{Payout date}_{PayoutID}_1.csv`` (or the date-range file). Columns
    are found by name; Reference and Payout ID may be missing, and extra columns are kept only in the raw
    text. ``zone``: the zone of times written without an offset (UTC, as Checkout.com documents)."""

    processor = PROCESSOR

    def __init__(self, zone_name: str = "UTC") -> None:
        self.zone_name = zone_name
        self._zone = zone(zone_name)

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        for record in read_csv(stream, source_name, REPORT_LAYOUT):
            try:
                line = self._line(record)
            except FieldError as exc:
                raise SettlementFormatError(source_name, record.row_number, str(exc)) from None
            yield line

    def _line(self, record: CsvRecord) -> SettlementLine:
        v = record.values
        action_id, action_type, breakdown = v["Action ID"], v["Action Type"], v["Breakdown Type"]
        for column in ("Action ID", "Action Type", "Breakdown Type"):
            if not v[column]:
                raise FieldError(f"{column} is empty")
        currency, gross, settlement, net = _amounts(v)
        if gross and net and (gross < 0) != (net < 0):
            raise FieldError("Processing Currency Amount and Holding Currency Amount have opposite signs")
        direction = direction_of(gross, net)
        kind = classify(action_type, breakdown, direction)
        column = "Processed On" if v["Processed On"] else "Requested On"
        occurred_at = local_time(v[column], self._zone, column)
        payment_id = v["Payment ID"] or None
        return SettlementLine(
            processor=PROCESSOR,
            source=LineSource.FILE,
            row_number=record.row_number,
            raw=record.raw,
            row_hash=hash_row(record.raw),
            line_key=f"{action_id}|{breakdown}",
            kind=kind,
            direction=direction,
            gross=gross,
            fee=0,  # fees are rows of their own (kind fee), never netted into another row
            net=net,
            currency=currency,
            settlement_currency=settlement,
            gateway_refund_id=action_id if kind in _REFUND_KINDS else None,
            gateway_payment_id=payment_id,
            merchant_reference=v["Reference"] or None,
            payout_id=v["Payout ID"] or None,
            occurred_at=occurred_at,
            source_timezone=_source_zone(v[column], self.zone_name),
            raw_type=f"{action_type}/{breakdown}",
        )


def _amounts(v: Values) -> tuple[str, int, str, int]:
    """(processing currency, gross, holding currency, net); one side mirrors the other when empty."""
    processing_text, holding_text = v["Processing Currency Amount"], v["Holding Currency Amount"]
    if not processing_text and not holding_text:
        raise FieldError("Processing Currency Amount and Holding Currency Amount are both empty")
    processing = holding = ""
    gross = net = 0
    if processing_text:
        processing = currency_code(v["Processing Currency"], "Processing Currency")
        gross = major_units(processing_text, processing, "Processing Currency Amount")
    if holding_text:
        holding = currency_code(v["Holding Currency"], "Holding Currency")
        net = major_units(holding_text, holding, "Holding Currency Amount")
    if not processing_text:
        processing, gross = holding, net
    if not holding_text:
        holding, net = processing, gross
    return processing, gross, holding, net


def _source_zone(text: str, default: str) -> str:
    """The zone a time was stated in: its own offset when it carries one, else the parser's zone."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        return "UTC"
    found = re.search(r"[+-]\d{2}:?\d{2}$", value[10:])
    return found.group() if found else default
