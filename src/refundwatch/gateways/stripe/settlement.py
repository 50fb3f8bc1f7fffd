"""Stripe's settlement data as SettlementLines: the itemized report CSV (file) and balance transactions (api).

Facts: RECONCILIATION.md §1.2-1.5 (docs.stripe.com/reports/payout-reconciliation, /reports/balance,
/api/balance_transactions/object, /reports/reporting-categories). The CSV is in major units with signed
gross/fee/net and may print the currency in lower case; the API is in minor units. Both classify by
``reporting_category``, which Stripe recommends over ``type`` for accounting.

line_key = the balance transaction id (``txn_…``), unique per balance movement.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC
from types import MappingProxyType
from typing import Any, BinaryIO, Final

from refundwatch.gateways.stripe.transformers import METADATA_REFUND_ID
from refundwatch.reconciliation.lines import (
    Direction,
    LineKind,
    LineSource,
    SettlementLine,
    direction_of,
    hash_row,
)
from refundwatch.reconciliation.parsing import FieldError, SettlementFormatError
from refundwatch.reconciliation.reading import CsvLayout, CsvRecord, Values, read_csv, read_json_list
from refundwatch.reconciliation.values import (
    currency_code,
    epoch_time,
    local_time,
    major_units,
    minor_units,
    zone,
)

PROCESSOR: Final = "stripe"

# reporting_category -> kind: the enum of the report-run parameter (§1.3). Anything else is unmapped.
KIND_BY_CATEGORY: Final[Mapping[str, LineKind]] = MappingProxyType(
    {
        "charge": LineKind.PAYMENT,
        "refund": LineKind.REFUND,
        "refund_failure": LineKind.REFUND_FAILURE,
        # Stripe files Connect platform-fee refunds under "fee" too; a credit there is a fee refund.
        "fee": LineKind.FEE,
        "network_cost": LineKind.FEE,
        "payout": LineKind.PAYOUT,
        "payout_reversal": LineKind.PAYOUT,  # a payout returned to the balance: a payout line, credit
        **dict.fromkeys(
            [
                "charge_failure",
                "dispute",
                "dispute_reversal",
                "partial_capture_reversal",
                "other_adjustment",
                "transfer",
                "transfer_reversal",
                "platform_earning",
                "platform_earning_refund",
                "connect_collection_transfer",
                "risk_reserved_funds",
                "unreconciled_customer_funds",
                "tax",
                "topup",
                "topup_reversal",
            ],
            LineKind.OTHER,
        ),
    }
)

REFUND_ID_COLUMN: Final = f"refund_metadata[{METADATA_REFUND_ID}]"
REPORT_LAYOUT: Final = CsvLayout(
    title="a Stripe itemized report (payout_reconciliation, balance_change_from_activity)",
    required=("balance_transaction_id", "source_id", "reporting_category", "currency", "gross", "net"),
    any_of=(("created_utc", "created"),),
    optional=(
        "fee",
        "charge_id",
        "payment_intent_id",
        "automatic_payout_id",
        "customer_facing_amount",
        "customer_facing_currency",
        REFUND_ID_COLUMN,
    ),
)


def classify(category: str, direction: Direction) -> LineKind:
    kind = KIND_BY_CATEGORY.get(category, LineKind.UNMAPPED)
    if kind is LineKind.FEE and direction is Direction.CREDIT:
        return LineKind.FEE_REFUND
    return kind


class StripeReportParser:
    """The itemized payout reconciliation / balance change CSV. Columns may come in any order; optional
    ones (fee, charge_id, payment_intent_id, automatic_payout_id, customer_facing_*, refund metadata)
    may be missing.

    ``report_timezone`` is the ``timezone`` the report was run with (Stripe's default ``Etc/UTC``); it is
    used only when the file has ``created`` without ``created_utc``."""

    processor = PROCESSOR

    def __init__(self, report_timezone: str = "Etc/UTC") -> None:
        self._zone = zone(report_timezone)
        self.report_timezone = report_timezone

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        for record in read_csv(stream, source_name, REPORT_LAYOUT):
            try:
                line = self._line(record)
            except FieldError as exc:
                raise SettlementFormatError(source_name, record.row_number, str(exc)) from None
            yield line

    def _line(self, record: CsvRecord) -> SettlementLine:
        v = record.values
        key = v["balance_transaction_id"]
        if not key:
            raise FieldError("balance_transaction_id is empty")
        settlement = currency_code(v["currency"], "currency")
        gross = major_units(v["gross"], settlement, "gross")
        net = major_units(v["net"], settlement, "net")
        fee_text = v["fee"]
        # Stripe defines net = gross - fee, so a file without the fee column still states it.
        fee = major_units(fee_text, settlement, "fee") if fee_text else gross - net
        currency, gross = self._transaction_amount(v, settlement, gross)
        direction = direction_of(gross, net)
        category = v["reporting_category"]
        kind = classify(category, direction)
        if v["created_utc"]:
            occurred_at, tz_name = local_time(v["created_utc"], UTC, "created_utc"), "UTC"
        else:
            occurred_at = local_time(v["created"], self._zone, "created")
            tz_name = self.report_timezone
        source_id = v["source_id"] or None
        return SettlementLine(
            processor=PROCESSOR,
            source=LineSource.FILE,
            row_number=record.row_number,
            raw=record.raw,
            row_hash=hash_row(record.raw),
            line_key=key,
            kind=kind,
            direction=direction,
            gross=gross,
            fee=fee,
            net=net,
            currency=currency,
            settlement_currency=settlement,
            gateway_refund_id=source_id if kind in _REFUND_KINDS else None,
            gateway_payment_id=(
                v["payment_intent_id"] or v["charge_id"] or (source_id if kind is LineKind.PAYMENT else None)
            ),
            merchant_reference=v[REFUND_ID_COLUMN] or None,
            payout_id=v["automatic_payout_id"] or (source_id if kind is LineKind.PAYOUT else None),
            occurred_at=occurred_at,
            source_timezone=tz_name,
            raw_type=category,
        )

    @staticmethod
    def _transaction_amount(v: Values, settlement: str, gross: int) -> tuple[str, int]:
        """gross/fee/net are in the settlement currency; with FX the customer saw another amount, and the
        transaction's own currency is what a refund is matched on (§7 M5)."""
        seen_currency = v["customer_facing_currency"]
        seen_amount = v["customer_facing_amount"]
        if not (seen_currency and seen_amount):
            return settlement, gross
        currency = currency_code(seen_currency, "customer_facing_currency")
        amount = abs(major_units(seen_amount, currency, "customer_facing_amount"))
        # The column's sign is not documented; the line's direction is gross's.
        return currency, -amount if gross < 0 else amount


_REFUND_KINDS: Final = frozenset({LineKind.REFUND, LineKind.REFUND_FAILURE})


class StripeBalanceTransactionsParser:
    """One page of ``GET /v1/balance_transactions`` (``{"object": "list", "data": [...]}``). Amounts are
    in the balance (settlement) currency; when ``source`` is expanded, its own amount and currency are
    taken as the transaction's. ``payout_id`` is the payout the page was listed for (``?payout=po_…``)."""

    processor = PROCESSOR

    def __init__(self, payout_id: str | None = None) -> None:
        self.payout_id = payout_id

    def parse(self, stream: BinaryIO, source_name: str) -> Iterator[SettlementLine]:
        for item in read_json_list(stream, source_name):
            try:
                line = self._line(item.row_number, item.raw, item.value)
            except FieldError as exc:
                raise SettlementFormatError(source_name, item.row_number, str(exc)) from None
            yield line

    def _line(self, row_number: int, raw: str, bt: Any) -> SettlementLine:
        if not isinstance(bt, dict) or bt.get("object") != "balance_transaction":
            raise FieldError("not a balance_transaction object")
        key = _text(bt, "id")
        if not key:
            raise FieldError("id is missing")
        settlement = currency_code(_text(bt, "currency"), "currency")
        gross = minor_units(bt.get("amount"), "amount")
        fee = minor_units(bt.get("fee"), "fee")
        net = minor_units(bt.get("net"), "net")
        source = bt.get("source")
        expanded: Mapping[str, Any] = source if isinstance(source, dict) else {}
        source_id = (_text(expanded, "id") if expanded else source if isinstance(source, str) else "") or None
        currency, gross = _expanded_amount(expanded, settlement, gross)
        direction = direction_of(gross, net)
        category = _text(bt, "reporting_category")
        kind = classify(category, direction)
        metadata = expanded.get("metadata")
        refund_id = _text(metadata, METADATA_REFUND_ID) if isinstance(metadata, dict) else ""
        return SettlementLine(
            processor=PROCESSOR,
            source=LineSource.API,
            row_number=row_number,
            raw=raw,
            row_hash=hash_row(raw),
            line_key=key,
            kind=kind,
            direction=direction,
            gross=gross,
            fee=fee,
            net=net,
            currency=currency,
            settlement_currency=settlement,
            gateway_refund_id=source_id if kind in _REFUND_KINDS else None,
            gateway_payment_id=_payment_of(expanded) or (source_id if kind is LineKind.PAYMENT else None),
            merchant_reference=refund_id or None,
            payout_id=self.payout_id or (source_id if kind is LineKind.PAYOUT else None),
            occurred_at=epoch_time(bt.get("created"), "created"),
            source_timezone="UTC",  # a Unix timestamp
            raw_type=category,
        )


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _expanded_amount(source: Mapping[str, Any], settlement: str, gross: int) -> tuple[str, int]:
    """An expanded refund or charge states the amount in its own currency (unsigned)."""
    if not source or not isinstance(source.get("currency"), str):
        return settlement, gross
    currency = currency_code(source["currency"], "source.currency")
    amount = abs(minor_units(source.get("amount"), "source.amount"))
    return currency, -amount if gross < 0 else amount


def _payment_of(source: Mapping[str, Any]) -> str | None:
    for name in ("payment_intent", "charge"):
        value = source.get(name)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, str) and value:
            return value
    return None
