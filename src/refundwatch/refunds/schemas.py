"""Wire shapes of the refunds API (msgspec: fast, strict, and what Litestar validates natively)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

Reason = Literal["requested_by_customer", "duplicate", "fraudulent", "return", "other"]


class RefundCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    payment_reference: str = msgspec.field()
    amount: int
    currency: str
    reason: Reason
    connection: str | None = None
    order_id: str | None = None
    invoice_id: str | None = None
    metadata: dict[str, str] | None = None


class PaymentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    connection: str
    payment_reference: str
    amount: int
    currency: str
    captured_at: dt.datetime
    order_id: str | None = None
    invoice_id: str | None = None


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
