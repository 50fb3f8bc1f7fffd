"""Adyen's wire format (Checkout API v72, standard webhooks), written from Adyen's OpenAPI specs and
checked against the Adyen Python SDK 16.0.0. Pure functions and types only.

Error answers, each with the Adyen source it was read from (the simulator keeps its own notes: it never
imports the adapter's tables, STYLE rule 12):

- ``000`` "HTTP Status Response - Unauthorized" (401, security): CheckoutService-v72 example generic-401.
- ``901`` "Invalid Merchant Account" (403, security): generic-403; the Python SDK's
  ``paymentmethods-error-forbidden-403.json``; Adyen's Go SDK integration tests.
- ``702`` for an unreadable body (400): generic-400 ("Unexpected input: ..."); unknown fields as
  "Structure of <Type> contains the following unknown fields: [...]" (Adyen's Ruby SDK tests,
  commercetools-adyen-integration). A missing merchantAccount: ``702`` "Required field
  'merchantAccount' is null", as the Python SDK's ``payout/confirm-missing-reference.json`` has it
  (there with HTTP 500; 422 here is unconfirmed for Checkout).
- ``100`` "Required object 'amount' is not provided." (422): Adyen's error-code page; a refund answered
  so in adyen-ruby-api-library issue #168.
- ``137`` "Field 'amount' is not valid." (422) and ``138`` "Unsupported currency specified" (422): the
  error-code list (second hand, via wikimedia SmashPig's copy); 138's text and status also in Adyen's
  Go SDK integration tests.
- ``167`` "Original pspReference required for this operation" (422): the SDK's ``capture-error-167.json``.
- ``704`` "request already processed or in progress": answered so in production (409); the idempotency
  page (quoted second hand) documents 422 or 409 for a duplicate sent before the first completed.
- ``903`` "Internal error" and ``29_100`` "The request is larger than the allowed maximum of {0} bytes":
  the error-code list (second hand); the HTTP statuses used with them here are unconfirmed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import random
import string
from dataclasses import dataclass
from typing import Any

import msgspec

from ..asgi import decode_json

__all__ = [
    "AMOUNT_INVALID",
    "AMOUNT_MISSING",
    "CURRENCY_UNSUPPORTED",
    "MAX_IDEMPOTENCY_KEY",
    "AdyenError",
    "RefundRequest",
    "error_body",
    "event_date",
    "notification_item",
    "parse_refund_request",
    "psp_reference",
    "refund_response",
    "report_item",
    "sign_item",
    "signing_string",
]

MAX_IDEMPOTENCY_KEY = 64  # "a maximum of 64 characters" (CheckoutService-v72, Idempotency-Key)
AMOUNT_MISSING = "Required object 'amount' is not provided."
AMOUNT_INVALID = "Field 'amount' is not valid."
CURRENCY_UNSUPPORTED = "Unsupported currency specified"
REFUND_REASONS = ("FRAUD", "CUSTOMER REQUEST", "RETURN", "DUPLICATE", "OTHER")
_REQUEST_FIELDS = frozenset(
    {
        "amount",
        "applicationInfo",
        "capturePspReference",
        "enhancedSchemeData",
        "lineItems",
        "merchantAccount",
        "merchantRefundReason",
        "reference",
        "splits",
        "store",
    }
)
_PSP_ALPHABET = string.digits + string.ascii_uppercase


class AdyenError(Exception):
    """An error answer in Adyen's ``ServiceError`` shape.

    ``saved`` tells whether an idempotent request keeps this answer: only requests that reached the
    payment (checked against it) do; unreadable or unauthorised requests do not.
    """

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        error_type: str = "validation",
        *,
        saved: bool = False,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.error_type = error_type
        self.saved = saved
        self.transient = transient

    def body(self, psp: str | None = None) -> dict[str, Any]:
        return error_body(self.status, self.error_code, self.message, self.error_type, psp)


def error_body(
    status: int, error_code: str, message: str, error_type: str, psp: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": status,
        "errorCode": error_code,
        "message": message,
        "errorType": error_type,
    }
    if psp is not None:
        body["pspReference"] = psp
    return body


def psp_reference() -> str:
    """A new 16-character PSP reference, digits and capitals like ``993617894906488A``."""
    return "".join(random.choices(_PSP_ALPHABET, k=16))


def event_date() -> str:
    """Now, ISO 8601 with its offset (``2026-12-06T02:51:15+00:00``), as notifications carry it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- the refund request -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefundRequest:
    merchant_account: str
    value: int
    currency: str
    reference: str | None
    reason: str | None
    fingerprint: str  # the body, canonical: an idempotent repeat must carry the same one


def _unreadable(message: str) -> AdyenError:
    return AdyenError(400, "702", message)


def parse_refund_request(body: bytes) -> RefundRequest:
    """The refund request in ``body``, or the :class:`AdyenError` Adyen answers for it."""
    try:
        data = decode_json(body)
    except msgspec.DecodeError as exc:
        raise _unreadable(f"Unexpected input: {exc}") from exc
    if not isinstance(data, dict):
        raise _unreadable("Unexpected input: expected a JSON object")
    unknown = sorted(set(data) - _REQUEST_FIELDS)
    if unknown:
        raise _unreadable(
            f"Structure of PaymentRefundRequest contains the following unknown fields: [{', '.join(unknown)}]"
        )
    merchant = data.get("merchantAccount")
    if merchant is None or merchant == "":
        raise AdyenError(422, "702", "Required field 'merchantAccount' is null")
    if not isinstance(merchant, str):
        raise _unreadable("Unexpected input: merchantAccount must be a string")
    value, currency = _amount(data.get("amount"))
    reference = data.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise _unreadable("Unexpected input: reference must be a string")
    reason = data.get("merchantRefundReason")
    if reason is not None and reason not in REFUND_REASONS:
        raise _unreadable(
            f"Unexpected input: merchantRefundReason must be one of {', '.join(REFUND_REASONS)}"
        )
    fingerprint = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return RefundRequest(merchant, value, currency, reference, reason, fingerprint)


def _amount(amount: object) -> tuple[int, str]:
    if amount is None:
        raise AdyenError(422, "100", AMOUNT_MISSING)
    if not isinstance(amount, dict) or set(amount) - {"value", "currency"}:
        raise _unreadable("Unexpected input: amount must be an object with value and currency")
    value, currency = amount.get("value"), amount.get("currency")
    if value is None:
        raise AdyenError(422, "100", AMOUNT_MISSING)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _unreadable("Unexpected input: amount.value must be an integer")
    if value <= 0:
        raise AdyenError(422, "137", AMOUNT_INVALID)
    if (
        not isinstance(currency, str)
        or len(currency) != 3
        or not currency.isalpha()
        or not currency.isascii()
    ):
        raise AdyenError(422, "138", CURRENCY_UNSUPPORTED)
    return value, currency.upper()


def refund_response(
    *, merchant_account: str, payment_psp: str, psp: str, reference: str | None, value: int, currency: str
) -> dict[str, Any]:
    """The ``201`` answer (``PaymentRefundResponse``): Adyen received the refund, nothing more."""
    body: dict[str, Any] = {
        "merchantAccount": merchant_account,
        "paymentPspReference": payment_psp,
        "pspReference": psp,
    }
    if reference is not None:
        body["reference"] = reference
    body["status"] = "received"
    body["amount"] = {"currency": currency, "value": value}
    return body


# -- notifications ----------------------------------------------------------------------------------
def notification_item(
    *,
    event_code: str,
    success: bool,
    psp: str,
    original_reference: str,
    merchant_account: str,
    merchant_reference: str,
    value: int,
    currency: str,
    reason: str,
) -> dict[str, Any]:
    """One unsigned ``NotificationRequestItem``."""
    return {
        "amount": {"currency": currency, "value": value},
        "eventCode": event_code,
        "eventDate": event_date(),
        "merchantAccountCode": merchant_account,
        "merchantReference": merchant_reference,
        "originalReference": original_reference,
        "paymentMethod": "visa",
        "pspReference": psp,
        "reason": reason,
        "success": "true" if success else "false",
    }


def report_item(*, file_name: str, url: str, merchant_account: str) -> dict[str, Any]:
    """One unsigned ``REPORT_AVAILABLE`` item: ``pspReference`` the report's file name, ``reason`` its
    download URL (docs.adyen.com/reporting/automatically-get-reports; Webhooks-v1
    ``ReportAvailableNotificationRequestItem``, which requires an amount: EUR 0 here, the spec's example
    carries a meaningless one)."""
    return {
        "amount": {"currency": "EUR", "value": 0},
        "eventCode": "REPORT_AVAILABLE",
        "eventDate": event_date(),
        "merchantAccountCode": merchant_account,
        "merchantReference": "",
        "pspReference": file_name,
        "reason": url,
        "success": "true",
    }


def signing_string(item: dict[str, Any]) -> str:
    """``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``,
    an absent field standing as an empty string (Adyen's HMAC for standard notifications)."""
    amount = item.get("amount") or {}
    parts = (
        item.get("pspReference"),
        item.get("originalReference"),
        item.get("merchantAccountCode"),
        item.get("merchantReference"),
        amount.get("value"),
        amount.get("currency"),
        item.get("eventCode"),
        item.get("success"),
    )
    return ":".join("" if part is None else str(part) for part in parts)


def sign_item(item: dict[str, Any], hmac_key_hex: str) -> dict[str, Any]:
    """``item`` with ``additionalData.hmacSignature``: base64 HMAC-SHA256 of :func:`signing_string`,
    keyed with the bytes the hex key spells."""
    digest = hmac.new(bytes.fromhex(hmac_key_hex), signing_string(item).encode(), hashlib.sha256).digest()
    signed = dict(item)
    signed["additionalData"] = {"hmacSignature": base64.b64encode(digest).decode("ascii")}
    return signed
