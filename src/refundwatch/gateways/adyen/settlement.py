"""Adyen's Settlement details report CSV as SettlementLines.

Facts: RECONCILIATION.md §2.2-2.4 (docs.adyen.com/reporting/settlement-detail-report and its journal
types; column list as in Wikimedia SmashPig's fixture). Amounts are unsigned, in major units, split into
debit and credit columns: the filled column gives the direction, not the Type (a third-party note says
some Settled rows carry gross in Gross Debit). Gross is in the transaction currency (GC), net and the fee
components in the settlement currency (NC).

line_key:
- a transaction line (it has a Psp Reference): ``Modification Reference|Type|Batch Number``. The
  modification reference is the PSP reference of that capture, refund or chargeback; Type tells a refund
  from its reversal, the batch a line settled again later.
- a batch line (Fee, MerchantPayout...: no Psp Reference; Modification Reference is free text such as
  "TX… batch 1300, Merchant"): ``batch|Merchant Account|Batch Number|Type|Net Currency|Creation Date|
  Modification Reference``. Batch numbers count per merchant account, and one batch may hold a fee line per
  currency. Two lines equal in all of these are treated as the same line.
"""

from __future__ import annotations

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
from refundwatch.reconciliation.values import currency_code, local_time, optional_major_units, zone

PROCESSOR: Final = "adyen"

# Journal type -> kind (§2.3). Anything else is unmapped: SmashPig throws on unknown types, and quietly
# ignores RefundedReversed, which is exactly the line reconciliation must not miss.
KIND_BY_TYPE: Final[Mapping[str, LineKind]] = MappingProxyType(
    {
        "Settled": LineKind.PAYMENT,
        "SettledExternally": LineKind.PAYMENT,
        "Refunded": LineKind.REFUND,
        "RefundedExternally": LineKind.REFUND,
        "RefundedReversed": LineKind.REFUND_FAILURE,
        "Fee": LineKind.FEE,
        "AuthorisationSchemeFee": LineKind.FEE,
        "MerchantPayout": LineKind.PAYOUT,
        "InternalCompanyPayout": LineKind.PAYOUT,
        "BankInstructionReturned": LineKind.PAYOUT,  # a payout that came back: a payout line, credit
        **dict.fromkeys(
            [
                "Chargeback",
                "SecondChargeback",
                "ChargebackReversed",
                "ChargebackExternally",
                "DepositCorrection",
                "InvoiceDeduction",
                "MiscCosts",
                "ManualCorrected",
                "MatchedStatement",
                "EpaPaid",
                "Balancetransfer",
                "PaymentCost",
                "PaidOut",  # payouts to shoppers (Adyen's payout product), not refunds
                "PaidOutReversed",
            ],
            LineKind.OTHER,
        ),
    }
)

FEE_COLUMNS: Final = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")

REPORT_LAYOUT: Final = CsvLayout(
    title="an Adyen Settlement details report",
    required=(
        "Merchant Account",
        "Psp Reference",
        "Creation Date",
        "TimeZone",
        "Type",
        "Modification Reference",
        "Gross Currency",
        "Gross Debit (GC)",
        "Gross Credit (GC)",
        "Net Currency",
        "Net Debit (NC)",
        "Net Credit (NC)",
        "Batch Number",
    ),
    optional=(*FEE_COLUMNS, "Modification Merchant Reference"),
)

_REFUND_KINDS: Final = frozenset({LineKind.REFUND, LineKind.REFUND_FAILURE})


class AdyenSettlementDetailsParser:
    """``settlement_detail_report_batch_<N>.csv``. The fee columns and Modification Merchant Reference
    may be missing; extra columns (Booking Date, Metadata, ...) are ignored."""

    processor = PROCESSOR

    def __init__(self, merchant_account: str | None = None) -> None:
        self.merchant_account = merchant_account

    def for_merchant_account(self, merchant_account: str) -> AdyenSettlementDetailsParser:
        """One that refuses another merchant account's report: a settlement details report is one
        merchant account's, and imported for the wrong connection each of its refunds would be a
        break (missing_local) and the connection's own ones missing."""
        return AdyenSettlementDetailsParser(merchant_account)

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        for record in read_csv(stream, source_name, REPORT_LAYOUT):
            account = record.values["Merchant Account"]
            if self.merchant_account and account and account != self.merchant_account:
                raise SettlementFormatError(
                    source_name,
                    record.row_number,
                    f"Merchant Account {account!r} is not this connection's ({self.merchant_account!r})",
                )
            try:
                line = _line(record)
            except FieldError as exc:
                raise SettlementFormatError(source_name, record.row_number, str(exc)) from None
            yield line


def _line(record: CsvRecord) -> SettlementLine:
    v = record.values
    journal_type = v["Type"]
    if not journal_type:
        raise FieldError("Type is empty")
    net_currency_text = v["Net Currency"]
    gross_currency_text = v["Gross Currency"]
    has_gross = bool(v["Gross Debit (GC)"] or v["Gross Credit (GC)"])
    if has_gross:
        currency = currency_code(gross_currency_text, "Gross Currency")
        gross, gross_side = _sided(v, "Gross Debit (GC)", "Gross Credit (GC)", currency)
    settlement = currency_code(net_currency_text or gross_currency_text, "Net Currency")
    net, net_side = _sided(v, "Net Debit (NC)", "Net Credit (NC)", settlement)
    if not has_gross:
        # Batch lines (Fee, MerchantPayout) state only their net: it is their gross too.
        currency, gross, gross_side = settlement, net, net_side
    direction = direction_of(gross, net, gross_side or net_side)
    kind = KIND_BY_TYPE.get(journal_type, LineKind.UNMAPPED)
    if kind is LineKind.FEE and direction is Direction.CREDIT:
        kind = LineKind.FEE_REFUND
    fee = sum(
        optional_major_units(v[column], settlement, column) or 0 for column in FEE_COLUMNS if column in v
    )
    tz_name = v["TimeZone"]
    psp = v["Psp Reference"]
    modification = v["Modification Reference"]
    return SettlementLine(
        processor=PROCESSOR,
        source=LineSource.FILE,
        row_number=record.row_number,
        raw=record.raw,
        row_hash=hash_row(record.raw),
        line_key=_line_key(v, journal_type, settlement),
        kind=kind,
        direction=direction,
        gross=gross,
        fee=fee,
        net=net,
        currency=currency,
        settlement_currency=settlement,
        gateway_refund_id=(modification or None) if kind in _REFUND_KINDS else None,
        gateway_payment_id=psp or None,
        merchant_reference=v["Modification Merchant Reference"] or None,
        payout_id=v["Batch Number"] or None,
        occurred_at=local_time(v["Creation Date"], zone(tz_name), "Creation Date"),
        source_timezone=tz_name,
        raw_type=journal_type,
    )


def _sided(v: Values, debit: str, credit: str, currency: str) -> tuple[int, Direction | None]:
    """Signed minor units from an unsigned debit/credit pair, and which side was filled (None: neither)."""
    debit_amount = optional_major_units(v[debit], currency, debit)
    credit_amount = optional_major_units(v[credit], currency, credit)
    for column, amount in ((debit, debit_amount), (credit, credit_amount)):
        if amount is not None and amount < 0:
            raise FieldError(f"{column} is negative; Adyen's debit and credit columns are unsigned")
    if debit_amount and credit_amount:
        raise FieldError(f"both {debit} and {credit} are filled")
    if debit_amount:
        return -debit_amount, Direction.DEBIT
    if credit_amount:
        return credit_amount, Direction.CREDIT
    # Zero or empty on both sides: a filled zero still says which side it was.
    if debit_amount is not None:
        return 0, Direction.DEBIT
    return 0, Direction.CREDIT if credit_amount is not None else None


def _line_key(v: Values, journal_type: str, settlement: str) -> str:
    psp = v["Psp Reference"]
    modification = v["Modification Reference"]
    batch = v["Batch Number"]
    if psp:
        return f"{modification or psp}|{journal_type}|{batch}"
    parts = (v["Merchant Account"], batch, journal_type, settlement, v["Creation Date"])
    return "|".join(("batch", *parts, modification))
