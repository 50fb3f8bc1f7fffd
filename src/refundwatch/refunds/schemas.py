"""Wire shapes of the refunds API (msgspec: fast, strict, and what Litestar validates natively)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Reason = Literal["requested_by_customer", "duplicate", "fraudulent", "return", "other"]

# The limits the API enforces, declared once: msgspec checks them while decoding a request body, and
# the OpenAPI document shows the same numbers (intake and payments re-check them for other callers).
MAX_AMOUNT = 10**15  # far beyond any real payment; keeps sums inside BIGINT
MAX_REFERENCE_LENGTH = 255
MAX_METADATA_KEYS, MAX_METADATA_KEY_LENGTH, MAX_METADATA_VALUE_LENGTH = 20, 40, 500
AMOUNT_RULE = "amount must be a JSON integer in minor units, e.g. 2500 for 25.00 EUR"

Amount = Annotated[
    int,
    Meta(
        ge=1,
        le=MAX_AMOUNT,
        description="Integer minor units (2500 EUR = 25.00 EUR). Only a JSON integer is an amount: "
        '"25.00", 25.0, "2500" and true are refused with 422 invalid_amount.',
        examples=[2500],
    ),
]
Currency = Annotated[
    str,
    Meta(
        pattern="^[A-Za-z]{3}$",
        description="ISO 4217 code; lower case is read as upper case.",
        examples=["EUR"],
    ),
]
# Not blank: at least one character that is not white space.
Reference = Annotated[str, Meta(min_length=1, max_length=MAX_REFERENCE_LENGTH, pattern=r"\S")]
OptionalId = Annotated[str, Meta(max_length=MAX_REFERENCE_LENGTH)]
MetadataKey = Annotated[str, Meta(min_length=1, max_length=MAX_METADATA_KEY_LENGTH)]
MetadataValue = Annotated[str, Meta(max_length=MAX_METADATA_VALUE_LENGTH)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=MAX_METADATA_KEYS)]


class RefundCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    payment_reference: Reference
    amount: Amount
    currency: Currency
    reason: Reason
    connection: str | None = None
    order_id: OptionalId | None = None
    invoice_id: OptionalId | None = None
    metadata: Metadata | None = None


class PaymentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    connection: str
    payment_reference: Reference
    amount: Amount
    currency: Currency
    captured_at: dt.datetime
    order_id: OptionalId | None = None
    invoice_id: OptionalId | None = None


CURRENCY_RULE = "currency must be a three-letter ISO 4217 code such as EUR"


def field_error(field: str | None, problem: str) -> tuple[str, str] | None:
    """The machine-readable code and message for a body field that failed the schema, where that field
    has its own code: any bad amount is ``invalid_amount``; a currency string that is not three letters
    is ``invalid_currency`` (a currency of the wrong JSON type stays ``validation_error``)."""
    if field == "amount":
        return "invalid_amount", f"{AMOUNT_RULE}; {problem}"
    if field == "currency" and "regex" in problem:
        return "invalid_currency", CURRENCY_RULE
    return None


def amount_type_problem(value: object) -> str | None:
    """Why a decoded JSON value is not an amount, or None when it is a JSON integer. Litestar decodes
    bodies leniently ("2500" and 25.0 would become 2500 and 25), so this runs on the raw JSON first."""
    if type(value) is int:
        return None
    kinds = {
        bool: "a boolean",
        str: "a string",
        float: "a number with a fraction or an exponent",
        list: "an array",
        dict: "an object",
    }
    kind = "null" if value is None else kinds.get(type(value), "something else")
    return f"{AMOUNT_RULE}; got {kind}"


class EventOut(msgspec.Struct):
    at: dt.datetime
    status: str
    source: str
    detail: str
    from_status: str | None = None


class RefundOut(msgspec.Struct):
    id: str
    status: str
    amount: int
    currency: str
    payment_reference: str
    connection: str
    reason: str
    gateway_refund_id: str | None
    attempts: int
    created_at: dt.datetime
    updated_at: dt.datetime
    events: list[EventOut]
    order_id: str | None = None
    invoice_id: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    gateway_status: str | None = None
    accepted_at: dt.datetime | None = None
    finalized_at: dt.datetime | None = None


class RefundList(msgspec.Struct):
    data: list[RefundOut]
    next_cursor: str | None
    has_more: bool


class PaymentOut(msgspec.Struct):
    id: str
    connection: str
    payment_reference: str
    amount: int
    currency: str
    captured_at: dt.datetime
    order_id: str | None
    invoice_id: str | None
    refunded_amount: int
    refundable_amount: int
    created_at: dt.datetime


class GroupLedgerOut(msgspec.Struct):
    """Every payment of an order or an invoice, in one currency (minor units)."""

    currency: str
    payments: int
    captured: int
    refunded: int
    in_flight: int
    reversed: int
    refundable: int


class PaymentDetail(msgspec.Struct):
    """A payment with its ledger (minor units) and its refunds, newest first."""

    id: str
    connection: str
    payment_reference: str
    amount: int
    currency: str
    captured_at: dt.datetime
    order_id: str | None
    invoice_id: str | None
    created_at: dt.datetime
    captured: int
    refunded: int
    in_flight: int
    reversed: int
    refundable: int
    refunds: list[RefundOut]
    # The same ledger over every payment sharing the order or the invoice, per currency.
    order_ledger: list[GroupLedgerOut] | None = None
    invoice_ledger: list[GroupLedgerOut] | None = None
