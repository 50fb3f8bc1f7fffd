"""PayPal's wire types, money conversion, the status table and the webhook table (STYLE rules 2-4).

Checked against PayPal's OpenAPI documents (shared/specs/paypal: ``payments_payment_v2.json`` 2.5 for the
refund request and resource, ``notifications_webhooks_v1.json`` 1.11 for the event envelope) and
PayPal's developer documentation (currency codes; webhook event names). Errors are in ``errors.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from refundwatch.gateways.base import ErrorCode, GatewayStatus, RefundRequest, WebhookEvent
from refundwatch.lib.money import exponent, to_decimal_string


class MalformedError(ValueError):
    """PayPal sent something that is not the documented shape. The message is short and safe."""


# --- money --------------------------------------------------------------------------------------------

# "Currencies that do not support decimals" (PayPal REST API reference, Currency codes): HUF, JPY, TWD.
# refundwatch keeps ISO 4217 minor units (HUF and TWD have exponent 2), so a HUF amount reaches PayPal
# only when it is a whole number of forints.
NO_DECIMAL_CURRENCIES: Final = frozenset({"HUF", "JPY", "TWD"})

# Money.value: "maxLength": 32, "pattern": "^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$".
VALUE_MAX: Final = 32


def paypal_exponent(currency: str) -> int:
    return 0 if currency.upper() in NO_DECIMAL_CURRENCIES else exponent(currency)


def amount_refusal(amount: int, currency: str) -> str | None:
    """Why PayPal cannot take ``amount`` minor units of ``currency`` as it is, or None when it can."""
    currency = currency.upper()
    shift = exponent(currency) - paypal_exponent(currency)
    if shift > 0 and amount % 10**shift:
        whole = 10**shift
        below, above = amount - amount % whole, amount - amount % whole + whole
        return (
            f"PayPal takes {currency} only in whole units: {to_decimal_string(amount, currency)} {currency} "
            f"cannot be refunded there (refund {to_decimal_string(below, currency)} or "
            f"{to_decimal_string(above, currency)})"
        )
    return None


def to_paypal_value(amount: int, currency: str) -> str:
    """Minor units -> PayPal's decimal string: 1050 EUR "10.50", 1500 JPY "1500", 1000 HUF "10",
    1050 KWD "1.050". ValueError when PayPal cannot take the amount (see amount_refusal)."""
    refusal = amount_refusal(amount, currency)
    if refusal is not None:
        raise ValueError(refusal)
    shift = exponent(currency) - paypal_exponent(currency)
    value = to_decimal_string(amount // 10**shift, currency) if shift == 0 else str(amount // 10**shift)
    if len(value) > VALUE_MAX:
        raise ValueError("the amount has more digits than PayPal's value field holds")
    return value


def from_paypal_value(value: object, currency: str) -> int | None:
    """PayPal's decimal string -> minor units, or None when it is not an exact amount in ``currency``."""
    if not isinstance(value, str) or not value or len(value) > VALUE_MAX:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    minor = number.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        return None
    return int(minor)


def parse_money(data: object) -> tuple[int, str] | None:
    """``{currency_code, value}`` -> (minor units, currency), or None when it is not one."""
    if not isinstance(data, dict):
        return None
    currency = data.get("currency_code")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return None
    minor = from_paypal_value(data.get("value"), currency.upper())
    return None if minor is None else (minor, currency.upper())


# --- request ------------------------------------------------------------------------------------------

# refund_request.invoice_id and custom_id: 1-127 characters. PayPal-Request-Id has no documented length
# in the spec; refundwatch's keys (``rw_<32 hex>[_r<N>]``) are far below every limit PayPal documents.
TEXT_MAX: Final = 127
NOTE_MAX: Final = 255

# refundwatch reason -> note_to_payer ("Appears in both the payer's transaction history and the emails
# that the payer receives"): plain words for the payer, never internal codes.
NOTE_TO_PAYER: Final[Mapping[str, str]] = MappingProxyType(
    {
        "requested_by_customer": "Refund at your request",
        "duplicate": "Refund of a duplicate payment",
        "fraudulent": "Refund of a payment you did not authorise",
        "return": "Refund for your returned items",
        "other": "Refund from the merchant",
    }
)


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable() and not any(c.isspace() for c in text)


def build_refund_body(request: RefundRequest) -> dict[str, Any]:
    """The JSON body of ``POST /v2/payments/captures/{id}/refund``. ValueError when it cannot be sent."""
    key = request.idempotency_key
    if not key or len(key) > TEXT_MAX or not _printable(key):
        # The key is both PayPal-Request-Id and invoice_id: without it a retry could refund twice.
        raise ValueError(f"an idempotency key of 1-{TEXT_MAX} printable characters is required")
    if request.amount <= 0:
        raise ValueError("the refund amount must be positive")
    if len(request.currency) != 3 or not (request.currency.isascii() and request.currency.isalpha()):
        raise ValueError("the currency must be a three-letter ISO 4217 code")
    if not request.payment_reference:
        raise ValueError("the capture id (payment reference) is empty")
    if not request.refund_id or len(request.refund_id) > TEXT_MAX:
        raise ValueError(f"the refund id must be 1-{TEXT_MAX} characters (PayPal's custom_id)")
    currency = request.currency.upper()
    return {
        "amount": {"currency_code": currency, "value": to_paypal_value(request.amount, currency)},
        # Echoed in the refund resource, webhooks and reports: how they find the attempt and the refund.
        "invoice_id": key,
        "custom_id": request.refund_id,
        "note_to_payer": NOTE_TO_PAYER.get(request.reason, NOTE_TO_PAYER["other"])[:NOTE_MAX],
    }


# --- the refund resource ------------------------------------------------------------------------------

# Total over refund_status.status (CANCELLED, FAILED, PENDING, COMPLETED). PENDING (status_details.reason
# e.g. ECHECK) is accepted, not final: the refund is processing. Anything else waits as PENDING too.
STATUS_TABLE: Final[Mapping[str, GatewayStatus]] = MappingProxyType(
    {
        "COMPLETED": GatewayStatus.SUCCEEDED,
        "PENDING": GatewayStatus.PENDING,
        "FAILED": GatewayStatus.FAILED,
        "CANCELLED": GatewayStatus.CANCELED,
    }
)

# refund_status_details.reason: "The reason why the refund has the PENDING or FAILED status".
STATUS_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {"ECHECK": "the payer paid by eCheck: the refund waits until the eCheck clears"}
)


def map_status(raw: str | None) -> GatewayStatus:
    return STATUS_TABLE.get(raw or "", GatewayStatus.PENDING)


@dataclass(frozen=True, slots=True)
class PayPalRefund:
    """The parts of PayPal's ``refund`` resource refundwatch reads."""

    id: str
    status: str  # "" when absent
    reason: str | None = None  # status_details.reason
    amount: int | None = None  # minor units; None when the answer carries no amount
    currency: str | None = None
    invoice_id: str | None = None
    custom_id: str | None = None
    capture_id: str | None = None  # from the "up" link

    @property
    def raw_status(self) -> str:
        return f"{self.status or 'no status'} ({self.reason})" if self.reason else self.status or "no status"


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _capture_of(links: object) -> str | None:
    """The capture id from the resource's ``up`` link (``.../v2/payments/captures/{id}``)."""
    if not isinstance(links, list):
        return None
    for link in links:
        if not isinstance(link, dict) or link.get("rel") != "up" or not isinstance(link.get("href"), str):
            continue
        parts = urlsplit(link["href"]).path.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "captures" and parts[-1]:
            return parts[-1]
    return None


def parse_refund(data: object) -> PayPalRefund:
    """Validate a refund resource. MalformedError with a short message when it is not one."""
    if not isinstance(data, dict):
        raise MalformedError("not a JSON object")
    refund_id = _text(data, "id")
    if refund_id is None:
        raise MalformedError("the refund has no id")
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise MalformedError("the refund status is not a string")
    money = None
    if data.get("amount") is not None:
        money = parse_money(data["amount"])
        if money is None:
            raise MalformedError("the refund amount is not a currency_code and an exact decimal value")
    details = data.get("status_details")
    reason = _text(details, "reason") if isinstance(details, dict) else None
    return PayPalRefund(
        id=refund_id,
        status=status or "",
        reason=reason,
        amount=money[0] if money else None,
        currency=money[1] if money else None,
        invoice_id=_text(data, "invoice_id"),
        custom_id=_text(data, "custom_id"),
        capture_id=_capture_of(data.get("links")),
    )


def refund_mismatch(refund: PayPalRefund, request: RefundRequest) -> str | None:
    """Why PayPal's answer is not the refund we asked for, or None when it is."""
    wanted = (request.amount, request.currency.upper())
    if (refund.amount, refund.currency) != wanted:
        reported = "no amount" if refund.amount is None else f"{refund.amount} {refund.currency}"
        return f"PayPal reported {reported} (minor units) for a refund of {wanted[0]} {wanted[1]}"
    if refund.custom_id is not None and refund.custom_id != request.refund_id:
        return "PayPal's refund carries another refundwatch refund id (custom_id)"
    if refund.invoice_id is not None and refund.invoice_id != request.idempotency_key:
        return "PayPal's refund carries another attempt's key (invoice_id)"
    if refund.capture_id is not None and refund.capture_id != request.payment_reference:
        return "PayPal's refund belongs to another capture"
    return None


def failure_details(refund: PayPalRefund, status: GatewayStatus) -> tuple[ErrorCode | None, str | None]:
    if status not in (GatewayStatus.FAILED, GatewayStatus.CANCELED, GatewayStatus.REVERSED):
        return None, None
    reason = STATUS_REASONS.get(refund.reason or "", refund.reason)
    what = {GatewayStatus.CANCELED: "cancelled", GatewayStatus.REVERSED: "reversed"}.get(status, "failed")
    return ErrorCode.DECLINED, f"PayPal {what} the refund" + (f": {reason}" if reason else "")


# --- webhooks -----------------------------------------------------------------------------------------

# Events about a refund resource (resource_type "refund"), and the status each announces. Names: PayPal's
# "Webhook event names" page, Payments v2 (PAYMENT.CAPTURE.REFUNDED "A merchant refunds a payment
# capture", PAYMENT.CAPTURE.REVERSED "PayPal reverses a payment capture"), and PAYMENT.REFUND.PENDING /
# PAYMENT.REFUND.FAILED, the refund events integrations subscribe to for pending and failed refunds
# (notifications_webhooks_v1.json names no event types at all). A FAILED or REVERSED event about a
# refund that had succeeded makes it ``reversed`` (refunds.states); about one still processing, failed.
# PAYMENT.CAPTURE.REFUNDED reads the resource's own status: only COMPLETED is success.
PENDING_EVENT: Final = "PAYMENT.REFUND.PENDING"
FAILED_EVENT: Final = "PAYMENT.REFUND.FAILED"
REFUNDED_EVENT: Final = "PAYMENT.CAPTURE.REFUNDED"
REVERSED_EVENT: Final = "PAYMENT.CAPTURE.REVERSED"
REFUND_RESOURCE: Final = "refund"  # the envelope's resource_type for a refund resource
EVENT_STATUS: Final[Mapping[str, GatewayStatus | None]] = MappingProxyType(
    {
        REFUNDED_EVENT: None,  # None here: the resource's status decides (map_status)
        PENDING_EVENT: GatewayStatus.PENDING,
        FAILED_EVENT: GatewayStatus.FAILED,
        REVERSED_EVENT: GatewayStatus.REVERSED,
    }
)


def parse_event(body: bytes) -> WebhookEvent:
    """A PayPal webhook event -> WebhookEvent. MalformedError with a short message when malformed.

    Event types that are not about a refund's state change nothing (status None), never success.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("webhook body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedError("webhook body is not a JSON object")
    event_id, event_type = _text(data, "id"), _text(data, "event_type")
    if event_id is None or event_type is None:
        raise MalformedError("event has no id or event_type")
    resource_type = data.get("resource_type")
    if event_type not in EVENT_STATUS or resource_type not in (None, REFUND_RESOURCE):
        # Not about a refund (e.g. PAYMENT.CAPTURE.REVERSED carrying the capture itself: PayPal took the
        # payment back, which moves none of refundwatch's refunds).
        return WebhookEvent(
            event_id=event_id, event_type=event_type, gateway_refund_id=None, refund_id=None, status=None
        )
    try:
        refund = parse_refund(data.get("resource"))
    except MalformedError as exc:
        raise MalformedError(f"event resource is not a refund: {exc}") from None
    announced = EVENT_STATUS[event_type]
    status = announced if announced is not None else map_status(refund.status)
    failure_code, failure_message = failure_details(refund, status)
    return WebhookEvent(
        # The event id is stable across PayPal's re-sends (the transmission id changes per attempt).
        event_id=event_id,
        event_type=event_type,
        gateway_refund_id=refund.id,
        refund_id=refund.custom_id,
        status=status,
        raw_status=f"{event_type} {refund.raw_status}",
        amount=refund.amount,
        currency=refund.currency,
        failure_code=failure_code,
        failure_message=failure_message,
        processor_code=(refund.reason or event_type) if failure_code else None,
        idempotency_key=refund.invoice_id,
    )


# --- finding an attempt's refund through the capture's order ----------------------------------------------


def order_of(capture: Mapping[str, Any]) -> str | None:
    """The order a capture belongs to (``supplementary_data.related_ids.order_id``), or None."""
    supplementary = capture.get("supplementary_data")
    related = supplementary.get("related_ids") if isinstance(supplementary, dict) else None
    return _text(related, "order_id") if isinstance(related, dict) else None


def order_refund(order: Mapping[str, Any], capture_id: str, invoice_id: str) -> PayPalRefund | None:
    """The refund of ``capture_id`` whose ``invoice_id`` is the attempt's key, among the order's
    purchase units' ``payments.refunds``; None when the order holds the capture and no such refund.
    MalformedError when the order does not show the capture: it cannot tell then."""
    units = order.get("purchase_units")
    if not isinstance(units, list):
        raise MalformedError("the order has no purchase units")
    holds_capture = False
    for unit in units:
        payments = unit.get("payments") if isinstance(unit, dict) else None
        if not isinstance(payments, dict):
            continue
        captures = payments.get("captures") or []
        refunds = payments.get("refunds") or []
        if not isinstance(captures, list) or not isinstance(refunds, list):
            raise MalformedError("the order's payments are not lists")
        holds_capture |= any(isinstance(c, dict) and c.get("id") == capture_id for c in captures)
        for item in refunds:
            if isinstance(item, dict) and item.get("invoice_id") == invoice_id:
                refund = parse_refund(item)
                if refund.capture_id not in (None, capture_id):
                    raise MalformedError("the attempt's refund belongs to another capture")
                return refund
    if not holds_capture:
        raise MalformedError("the order does not list the capture")
    return None
