"""Adyen's wire types and the notification and request tables (STYLE rules 2-4); errors in errors.py.

Facts checked against the official SDK, Adyen 16.0.0 (``Adyen/util.py`` for notification signatures,
``Adyen/client.py`` for URLs and headers, ``services/checkout/modifications_api.py`` for the refund path)
and Adyen's OpenAPI documents ``CheckoutService-v72.json`` and ``Webhooks-v1.json`` (shared/specs/adyen).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from refundwatch.gateways.adyen.errors import reason_code
from refundwatch.gateways.base import GatewayStatus, RefundRequest, WebhookEvent


class MalformedError(ValueError):
    """Adyen sent something that is not the documented shape. The message is short and safe."""


# --- request ------------------------------------------------------------------------------------------

# The Idempotency-Key header holds at most 64 characters (CheckoutService-v72 components/parameters).
IDEMPOTENCY_KEY_MAX: Final = 64
# PaymentRefundRequest.reference: "Maximum length: 80 characters".
REFERENCE_MAX: Final = 80

# refundwatch reason -> PaymentRefundRequest.merchantRefundReason (the spec's enum).
REASON_TABLE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "requested_by_customer": "CUSTOMER REQUEST",
        "duplicate": "DUPLICATE",
        "fraudulent": "FRAUD",
        "return": "RETURN",
        "other": "OTHER",
    }
)


def adyen_idempotency_key(key: str) -> str:
    """The key as Adyen may hold it: unchanged when it fits (``rw_<32 hex>`` is 35 characters,
    ``rw_<32 hex>_r<N>`` fits for any N below 10**26), else a stable 64-character digest of it, so every
    retry of the same attempt still sends the same header."""
    if 0 < len(key) <= IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable():
        return key
    return "rwh_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:60]


def build_refund_body(request: RefundRequest, merchant_account: str) -> dict[str, Any]:
    """The JSON body of ``POST /v72/payments/{psp}/refunds``. ValueError when it cannot be sent as is.

    Adyen's amounts are minor units with the ISO 4217 exponent, which refundwatch already uses.
    """
    if not request.idempotency_key:
        raise ValueError("an idempotency key is required")
    if request.amount <= 0:
        raise ValueError("the refund amount must be positive")
    if len(request.currency) != 3 or not (request.currency.isascii() and request.currency.isalpha()):
        raise ValueError("the currency must be a three-letter ISO 4217 code")
    if not request.payment_reference:
        raise ValueError("the payment reference is empty")
    if not request.refund_id or len(request.refund_id) > REFERENCE_MAX:
        raise ValueError(f"the refund id must be 1-{REFERENCE_MAX} characters (Adyen's reference)")
    if not merchant_account:
        raise ValueError("no merchant_account is configured")
    return {
        "merchantAccount": merchant_account,
        "amount": {"value": request.amount, "currency": request.currency.upper()},
        # Echoed as merchantReference in every notification: how a notification finds its refund.
        "reference": request.refund_id,
        "merchantRefundReason": REASON_TABLE.get(request.reason, "OTHER"),
    }


# --- the create answer --------------------------------------------------------------------------------

# PaymentRefundResponse.status: "This will always have the value received". Receipt is not success:
# the outcome comes in a REFUND notification. Anything else also waits as PENDING.
STATUS_TABLE: Final[Mapping[str, GatewayStatus]] = MappingProxyType({"received": GatewayStatus.PENDING})


def map_status(raw: str | None) -> GatewayStatus:
    return STATUS_TABLE.get(raw or "", GatewayStatus.PENDING)


@dataclass(frozen=True, slots=True)
class AdyenRefund:
    """The parts of PaymentRefundResponse refundwatch reads."""

    psp_reference: str
    status: str
    amount: int
    currency: str
    payment_psp_reference: str | None = None
    reference: str | None = None
    merchant_account: str | None = None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_amount(value: object) -> tuple[int, str] | None:
    """Adyen's ``{value, currency}`` -> (minor units, currency), or None when it is not one."""
    if not isinstance(value, dict):
        return None
    minor, currency = value.get("value"), value.get("currency")
    if not isinstance(minor, int) or isinstance(minor, bool) or not isinstance(currency, str):
        return None
    if len(currency) != 3:
        return None
    return minor, currency.upper()


def parse_refund(data: object) -> AdyenRefund:
    """Validate a PaymentRefundResponse. MalformedError with a short message when it is not one."""
    if not isinstance(data, dict):
        raise MalformedError("not a JSON object")
    psp, status = _text(data, "pspReference"), data.get("status")
    if psp is None:
        raise MalformedError("the answer has no pspReference")
    if not isinstance(status, str):
        raise MalformedError("the answer has no status")
    amount = parse_amount(data.get("amount"))
    if amount is None:
        raise MalformedError("the answer has no integer amount and currency")
    return AdyenRefund(
        psp_reference=psp,
        status=status,
        amount=amount[0],
        currency=amount[1],
        payment_psp_reference=_text(data, "paymentPspReference"),
        reference=_text(data, "reference"),
        merchant_account=_text(data, "merchantAccount"),
    )


def refund_mismatch(refund: AdyenRefund, request: RefundRequest, merchant_account: str) -> str | None:
    """Why Adyen's answer is not the refund we asked for, or None when it is."""
    if (refund.amount, refund.currency) != (request.amount, request.currency.upper()):
        return (
            f"Adyen reported {refund.amount} {refund.currency} "
            f"for a refund of {request.amount} {request.currency.upper()}"
        )
    if refund.reference is not None and refund.reference != request.refund_id:
        return "Adyen's refund carries another reference"
    if refund.payment_psp_reference is not None and refund.payment_psp_reference != request.payment_reference:
        return "Adyen's refund belongs to another payment"
    if refund.merchant_account is not None and refund.merchant_account != merchant_account:
        return "Adyen's refund belongs to another merchant account"
    return None


# --- notifications ------------------------------------------------------------------------------------

# The signing string's fields, in order (Adyen.util.generate_notification_sig; GATEWAYS.md).
SIGNED_FIELDS: Final = (
    "pspReference",
    "originalReference",
    "merchantAccountCode",
    "merchantReference",
    "value",
    "currency",
    "eventCode",
    "success",
)

# (eventCode, success) -> status, for the events that settle a refund. A succeeded refund can later
# fail (REFUND_FAILED) or be reversed (REFUNDED_REVERSED): both are ``reversed``. Those two events
# announce that something happened; one that says it did not (success "false") is a question for a
# person, never a silent no-op.
EVENT_STATUS_TABLE: Final[Mapping[tuple[str, str], GatewayStatus]] = MappingProxyType(
    {
        ("REFUND", "true"): GatewayStatus.SUCCEEDED,
        ("REFUND", "false"): GatewayStatus.FAILED,
        ("REFUND_FAILED", "true"): GatewayStatus.REVERSED,
        ("REFUND_FAILED", "false"): GatewayStatus.REQUIRES_ACTION,
        ("REFUNDED_REVERSED", "true"): GatewayStatus.REVERSED,
        ("REFUNDED_REVERSED", "false"): GatewayStatus.REQUIRES_ACTION,
    }
)
REFUND_EVENT_CODES: Final = frozenset({"REFUND", "REFUND_FAILED", "REFUNDED_REVERSED"})

# Every other eventCode the Webhooks-v1 enum documents: none changes a refundwatch refund's status.
# REFUND_WITH_DATA is an unreferenced refund (no payment, not made by refundwatch). CANCEL_OR_REFUND is
# decided by its modification action (map_event).
NON_REFUND_EVENT_CODES: Final = frozenset(
    {
        "AUTHENTICATION",
        "AUTHORISATION",
        "AUTHORISATION_ADJUSTMENT",
        "AUTORESCUE",
        "CANCELLATION",
        "CANCEL_AUTORESCUE",
        "CAPTURE",
        "CAPTURE_FAILED",
        "CHARGEBACK",
        "CHARGEBACK_REVERSED",
        "DISPUTE_DEFENSE_PERIOD_ENDED",
        "EXPIRE",
        "HANDLED_EXTERNALLY",
        "INFORMATION_SUPPLIED",
        "ISSUER_COMMENTS",
        "ISSUER_RESPONSE_TIMEFRAME_EXPIRED",
        "MANUAL_REVIEW_ACCEPT",
        "MANUAL_REVIEW_REJECT",
        "NOTIFICATION_OF_CHARGEBACK",
        "NOTIFICATION_OF_FRAUD",
        "OFFER_CLOSED",
        "ORDER_CLOSED",
        "ORDER_OPENED",
        "PAIDOUT_REVERSED",
        "PAYOUT_DECLINE",
        "PAYOUT_EXPIRE",
        "PAYOUT_THIRDPARTY",
        "POSTPONED_REFUND",
        "PREARBITRATION_ACCEPTED",
        "PREARBITRATION_DECLINED",
        "PREARBITRATION_ISSUER_WITHDRAWN",
        "PREARBITRATION_LOST",
        "PREARBITRATION_OPEN",
        "PREARBITRATION_WON",
        "RECURRING_CONTRACT",
        "REFUND_WITH_DATA",
        "REPORT_AVAILABLE",
        "REQUEST_FOR_INFORMATION",
        "SCHEME_ARBITRATION",
        "SCHEME_ARBITRATION_LOST",
        "SCHEME_ARBITRATION_WON",
        "SECOND_CHARGEBACK",
        "TECHNICAL_CANCEL",
        "VOID_PENDING_REFUND",
    }
)

CANCEL_OR_REFUND: Final = "CANCEL_OR_REFUND"
# The spec names the field ``modification.action``; ``modificationAction`` is also read (older docs).
_ACTION_KEYS: Final = ("modification.action", "modificationAction")


def map_event(
    event_code: str, success: str, additional: Mapping[str, Any]
) -> tuple[GatewayStatus | None, str]:
    """(status, raw_status) of a notification item. None: not a refund status change."""
    raw = f"{event_code} success={success}"
    if event_code == CANCEL_OR_REFUND:
        action = next((str(additional[k]) for k in _ACTION_KEYS if k in additional), "")
        if action.lower() == "refund":
            return EVENT_STATUS_TABLE.get(("REFUND", success), GatewayStatus.PENDING), raw
        # Adyen cancelled the authorisation instead of refunding: no refund money moved, yet the
        # payment is no longer what refundwatch recorded. A person must look.
        return GatewayStatus.REQUIRES_ACTION, (
            f"{raw} action={action or 'unknown'}: Adyen cancelled the payment instead of refunding it"
        )
    if event_code in REFUND_EVENT_CODES:
        # success neither "true" nor "false": undocumented, so wait, never succeed.
        return EVENT_STATUS_TABLE.get((event_code, success), GatewayStatus.PENDING), raw
    return None, raw


def parse_delivery(body: bytes) -> tuple[object, list[dict[str, Any]]]:
    """A notification delivery -> (live, [NotificationRequestItem, ...]). MalformedError when malformed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("notification body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedError("notification body is not a JSON object")
    wrappers = data.get("notificationItems")
    if not isinstance(wrappers, list) or not wrappers:
        raise MalformedError("notification body has no notificationItems")
    items: list[dict[str, Any]] = []
    for wrapper in wrappers:
        item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, dict) else None
        if not isinstance(item, dict):
            raise MalformedError("a notification item has no NotificationRequestItem object")
        items.append(item)
    return data.get("live"), items


def single_item_body(live: object, item: Mapping[str, Any]) -> bytes:
    """One item as a delivery of its own, so parse_webhook reads it like a whole delivery."""
    return json.dumps(
        {"live": live, "notificationItems": [{"NotificationRequestItem": item}]}, separators=(",", ":")
    ).encode()


def signing_string(item: Mapping[str, Any]) -> str:
    """As the SDK builds it: fields joined by ':' with no escaping, a missing one as ''."""
    amount = item.get("amount")
    amount = amount if isinstance(amount, dict) else {}
    values = {**item, "value": amount.get("value"), "currency": amount.get("currency")}
    return ":".join("" if values.get(name) is None else str(values.get(name)) for name in SIGNED_FIELDS)


def item_signature(item: Mapping[str, Any], hex_key: str) -> str:
    """base64(HMAC-SHA256(bytes.fromhex(key), signing string)). ValueError when the key is not hex."""
    try:
        key = binascii.a2b_hex(hex_key)
    except (binascii.Error, ValueError):
        raise ValueError("the hmac_key is not hex") from None
    digest = hmac.new(key, signing_string(item).encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


# REPORT_AVAILABLE announces every kind of report; pspReference is the file's name. Only the Settlement
# details report is settlement data (RECONCILIATION.md §2.1: settlement_detail_report_batch_<N>.csv).
REPORT_AVAILABLE: Final = "REPORT_AVAILABLE"
SETTLEMENT_REPORT_FILE: Final = re.compile(r"settlement_detail_report_batch_[0-9]{1,12}\.csv")


def settlement_report_url(psp: str, success: str, reason: str | None) -> str | None:
    """The download URL (``reason``) of a Settlement details report announced by REPORT_AVAILABLE, or
    None for any other report, or one not generated (success other than "true"). Where it may be
    downloaded from is decided by the puller (settlement_pull), not here."""
    if success != "true" or reason is None or not SETTLEMENT_REPORT_FILE.fullmatch(psp):
        return None
    return reason


def parse_item(item: Mapping[str, Any]) -> WebhookEvent:
    """One NotificationRequestItem -> WebhookEvent. MalformedError when it lacks what identifies it."""
    psp, event_code = _text(item, "pspReference"), _text(item, "eventCode")
    if psp is None or event_code is None:
        raise MalformedError("a notification item has no pspReference or eventCode")
    success = item.get("success")
    success_text = success if isinstance(success, str) else str(success).lower()
    if event_code == REPORT_AVAILABLE:
        # About a file, not a refund: pspReference is the file's name and reason its URL.
        return WebhookEvent(
            event_id=f"{psp}:{event_code}:{success_text}",
            event_type=event_code,
            gateway_refund_id=None,
            refund_id=None,
            status=None,
            raw_status=f"{event_code} success={success_text}",
            settlement_ref=settlement_report_url(psp, success_text, _text(item, "reason")),
        )
    additional = item.get("additionalData")
    status, raw = map_event(event_code, success_text, additional if isinstance(additional, dict) else {})
    amount = parse_amount(item.get("amount"))
    if status is not None and item.get("amount") is not None and amount is None:
        # A refund's news with an amount nobody can read is not applied: the amount is checked.
        raise MalformedError("a notification item's amount is not an integer value and a currency")
    reason = _text(item, "reason")
    failed = status in (GatewayStatus.FAILED, GatewayStatus.REVERSED)
    return WebhookEvent(
        # Adyen's documented dedupe key: a retried delivery repeats all three.
        event_id=f"{psp}:{event_code}:{success_text}",
        event_type=event_code,
        gateway_refund_id=psp,
        refund_id=_text(item, "merchantReference"),
        status=status,
        raw_status=raw,
        amount=amount[0] if amount else None,
        currency=amount[1] if amount else None,
        # The documented reasons that name a cause (errors.REFUND_REASONS); any other is "declined".
        failure_code=reason_code(reason) if failed else None,
        failure_message=reason,
        processor_code=event_code if failed else None,
        idempotency_key=None,
    )
