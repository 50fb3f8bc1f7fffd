"""Stripe's wire types and the status, error and currency tables (STYLE rules 2-4).

Every fact here was checked against the official SDK, stripe 16.1.0: refund fields and statuses in
``stripe/_refund.py``, create parameters in ``stripe/params/_refund_create_params.py``, error shapes in
``stripe/_error_object.py`` and ``_api_requestor.specific_v1_api_error``, retry hints in ``_http_client.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeGuard

from refundwatch.gateways.base import ErrorCode, GatewayStatus, RefundRequest, WebhookEvent
from refundwatch.lib.money import exponent

# The API version stripe 16.1.0 pins (stripe/_api_version.py). Pinned so Stripe never changes shapes under us.
STRIPE_API_VERSION: Final = "2026-10-28.endive"

METADATA_REFUND_ID: Final = "refundwatch_refund_id"
METADATA_REASON: Final = "refundwatch_reason"
# The attempt's idempotency key, so a lookup can tell this attempt's refund from an earlier attempt's.
METADATA_IDEMPOTENCY_KEY: Final = "refundwatch_idempotency_key"


class MalformedError(ValueError):
    """Stripe sent something that is not the documented shape. The message is short and safe."""


# --- status table -------------------------------------------------------------------------------------

# Total over the statuses Refund.status documents. Anything else waits as PENDING: only an explicit
# success is success (GATEWAYS.md, known traps).
STATUS_TABLE: Final[Mapping[str, GatewayStatus]] = MappingProxyType(
    {
        "pending": GatewayStatus.PENDING,
        "requires_action": GatewayStatus.REQUIRES_ACTION,
        "succeeded": GatewayStatus.SUCCEEDED,
        "failed": GatewayStatus.FAILED,
        "canceled": GatewayStatus.CANCELED,
    }
)


def map_status(raw: str | None) -> GatewayStatus:
    return STATUS_TABLE.get(raw or "", GatewayStatus.PENDING)


# Refund.failure_reason values, worded for the refund's timeline.
FAILURE_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "lost_or_stolen_card": "the card was reported lost or stolen",
        "expired_or_canceled_card": "the card has expired or was canceled",
        "charge_for_pending_refund_disputed": "the charge was disputed while the refund was pending",
        "insufficient_funds": "the Stripe balance had insufficient funds",
        "declined": "the refund was declined by the card issuer or bank",
        "merchant_request": "the refund was canceled at the merchant's request",
        "unknown": "Stripe reported an unknown failure",
    }
)

# --- request ------------------------------------------------------------------------------------------

# refundwatch reason -> Stripe reason. Stripe accepts only its three; the original is kept in metadata.
REASON_TABLE: Final[Mapping[str, str]] = MappingProxyType(
    {
        "requested_by_customer": "requested_by_customer",
        "duplicate": "duplicate",
        "fraudulent": "fraudulent",
        "return": "requested_by_customer",
        "other": "requested_by_customer",
    }
)

# Where Stripe's amount exponent differs from ISO 4217 (lib/money.py): ISK stays two-decimal in Stripe's
# API (100 = 1 krona, amounts divisible by 100) and MGA is zero-decimal at Stripe.
STRIPE_EXPONENT_OVERRIDES: Final[Mapping[str, int]] = MappingProxyType({"ISK": 2, "MGA": 0})


def stripe_exponent(currency: str) -> int:
    return STRIPE_EXPONENT_OVERRIDES.get(currency.upper(), exponent(currency))


def _pow10(n: int) -> int:
    return int(10**n)


def to_stripe_amount(amount: int, currency: str) -> int:
    """refundwatch minor units -> Stripe's amount. ValueError when Stripe cannot represent it."""
    shift = stripe_exponent(currency) - exponent(currency)
    if shift >= 0:
        value = amount * _pow10(shift)
    else:
        value, rest = divmod(amount, _pow10(-shift))
        if rest:
            raise ValueError(f"{currency} amounts must be whole units at Stripe")
    if stripe_exponent(currency) == 3 and value % 10:
        # Stripe's three-decimal currencies require the last digit to be 0, refunds included.
        raise ValueError(f"{currency} amounts must end in 0 at Stripe")
    return value


def from_stripe_amount(amount: int, currency: str) -> int | None:
    """Stripe's amount -> refundwatch minor units, or None when it has no exact equivalent."""
    shift = exponent(currency) - stripe_exponent(currency)
    if shift >= 0:
        return amount * _pow10(shift)
    value, rest = divmod(amount, _pow10(-shift))
    return None if rest else value


def payment_param(payment_reference: str) -> str:
    """Which parameter names the payment: a PaymentIntent (``pi_``) or else a charge."""
    return "payment_intent" if payment_reference.startswith("pi_") else "charge"


def build_refund_form(request: RefundRequest) -> dict[str, str]:
    """The form body of ``POST /v1/refunds``. ValueError when the request cannot be sent as is."""
    if not request.idempotency_key or len(request.idempotency_key) > 255:
        # Without a key a retry could refund twice; Stripe caps keys at 255 characters.
        raise ValueError("an idempotency key of 1-255 characters is required")
    if request.amount <= 0:
        raise ValueError("the refund amount must be positive")
    if len(request.currency) != 3 or not (request.currency.isascii() and request.currency.isalpha()):
        raise ValueError("the currency must be a three-letter ISO 4217 code")
    if not request.payment_reference:
        raise ValueError("the payment reference is empty")
    target = payment_param(request.payment_reference)
    form = {
        target: request.payment_reference,
        "amount": str(to_stripe_amount(request.amount, request.currency)),
        # RefundCreateParams accepts currency (lower case); the answer's currency is checked all the same.
        "currency": request.currency.lower(),
        "reason": REASON_TABLE.get(request.reason, "requested_by_customer"),
    }
    metadata = dict(request.metadata)
    if form["reason"] != request.reason:
        metadata[METADATA_REASON] = request.reason
    # Last, so caller metadata cannot override them.
    metadata[METADATA_REFUND_ID] = request.refund_id
    metadata[METADATA_IDEMPOTENCY_KEY] = request.idempotency_key
    form.update({f"metadata[{key}]": value for key, value in metadata.items()})
    return form


# --- refund object ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StripeRefund:
    """The parts of Stripe's ``refund`` object refundwatch reads."""

    id: str
    status: str  # "" when Stripe sent null
    amount: int  # Stripe's units
    currency: str  # upper case
    charge: str | None = None
    payment_intent: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    failure_reason: str | None = None
    presentment_amount: int | None = None
    presentment_currency: str | None = None

    @property
    def minor_amount(self) -> int | None:
        return from_stripe_amount(self.amount, self.currency)

    @property
    def presentment_minor_amount(self) -> int | None:
        if self.presentment_amount is None or self.presentment_currency is None:
            return None
        return from_stripe_amount(self.presentment_amount, self.presentment_currency)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_of(value: object) -> str | None:
    """An expandable field: an id string, or an expanded object carrying ``id``."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def parse_refund(data: object) -> StripeRefund:
    """Validate a refund object. ValueError with a short message when it is not one."""
    if not isinstance(data, dict):
        raise MalformedError("not a JSON object")
    if data.get("object", "refund") != "refund":
        raise MalformedError(f"object is {str(data.get('object'))[:40]!r}, not 'refund'")
    refund_id, status, amount, currency = (data.get(k) for k in ("id", "status", "amount", "currency"))
    if not isinstance(refund_id, str) or not refund_id:
        raise MalformedError("refund has no id")
    if status is not None and not isinstance(status, str):
        raise MalformedError("refund status is not a string")
    if not _is_int(amount) or not isinstance(currency, str) or len(currency) != 3:
        raise MalformedError("refund has no integer amount and currency")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MalformedError("refund metadata is not an object")
    presentment = data.get("presentment_details")
    p_amount = p_currency = None
    if isinstance(presentment, dict) and _is_int(presentment.get("presentment_amount")):
        p_currency = presentment.get("presentment_currency")
        if isinstance(p_currency, str) and len(p_currency) == 3:
            p_amount, p_currency = presentment["presentment_amount"], p_currency.upper()
        else:
            p_currency = None
    failure_reason = data.get("failure_reason")
    return StripeRefund(
        id=refund_id,
        status=status or "",
        amount=amount,
        currency=currency.upper(),
        charge=_id_of(data.get("charge")),
        payment_intent=_id_of(data.get("payment_intent")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        failure_reason=failure_reason if isinstance(failure_reason, str) else None,
        presentment_amount=p_amount,
        presentment_currency=p_currency,
    )


def refund_mismatch(refund: StripeRefund, request: RefundRequest) -> str | None:
    """Why Stripe's answer is not the refund we asked for, or None when it is."""
    wanted = (request.amount, request.currency.upper())
    # With Adaptive Pricing, Stripe may report settlement money and the charged money in presentment_details.
    reported = {
        (refund.minor_amount, refund.currency),
        (refund.presentment_minor_amount, refund.presentment_currency),
    }
    if wanted not in reported:
        return (
            f"Stripe reported {refund.amount} {refund.currency} (Stripe units) "
            f"for a refund of {request.amount} {wanted[1]}"
        )
    echoed_id = refund.metadata.get(METADATA_REFUND_ID)
    if echoed_id is not None and echoed_id != request.refund_id:
        return "Stripe's refund carries another refundwatch refund id"
    target = refund.payment_intent if request.payment_reference.startswith("pi_") else refund.charge
    if target is not None and target != request.payment_reference:
        return "Stripe's refund belongs to another payment"
    return None


def failure_details(refund: StripeRefund, status: GatewayStatus) -> tuple[ErrorCode | None, str | None]:
    if status is not GatewayStatus.FAILED:
        return None, None
    reason = refund.failure_reason or "unknown"
    return ErrorCode.DECLINED, FAILURE_REASONS.get(reason, f"the refund failed: {reason}")


# --- errors -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StripeErrorBody:
    """Stripe's ``{"error": {...}}`` answer (ErrorObject)."""

    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    decline_code: str | None = None


def parse_error(data: Mapping[str, Any]) -> StripeErrorBody:
    error = data.get("error")
    if not isinstance(error, dict):
        return StripeErrorBody()

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    return StripeErrorBody(
        type=text("type"),
        code=text("code"),
        message=text("message"),
        param=text("param"),
        decline_code=text("decline_code"),
    )


# Decided by the HTTP status alone. Any 409 is a concurrent use of the same idempotency key (or object
# lock): the SDK retries every 409, and so may we, with the same key.
HTTP_STATUS_ERRORS: Final[Mapping[int, ErrorCode]] = MappingProxyType(
    {
        401: ErrorCode.AUTH_FAILED,
        403: ErrorCode.AUTH_FAILED,
        409: ErrorCode.IDEMPOTENCY_CONFLICT,
        429: ErrorCode.RATE_LIMITED,
    }
)

# Stripe's error ``code``, consulted next.
ERROR_CODES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "amount_too_large": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
        "charge_already_refunded": ErrorCode.ALREADY_REFUNDED,
        "idempotency_key_in_use": ErrorCode.IDEMPOTENCY_CONFLICT,
        "lock_timeout": ErrorCode.IDEMPOTENCY_CONFLICT,
        "rate_limit": ErrorCode.RATE_LIMITED,  # older 400 rate limits (see specific_v1_api_error)
        "api_key_expired": ErrorCode.AUTH_FAILED,
        "platform_api_key_expired": ErrorCode.AUTH_FAILED,
    }
)

# Stripe's error ``type``, consulted last. A 400 idempotency_error means the key was reused with other
# parameters: a bug to look at, never something a retry fixes.
ERROR_TYPES: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "invalid_request_error": ErrorCode.INVALID_REQUEST,
        "idempotency_error": ErrorCode.INVALID_REQUEST,
        "card_error": ErrorCode.DECLINED,
        "api_error": ErrorCode.PROCESSOR_ERROR,
    }
)

_PAYMENT_PARAMS: Final = frozenset({"charge", "payment_intent"})


def map_error(status_code: int, error: StripeErrorBody, *, payment_lookup: bool) -> ErrorCode:
    """Stripe's HTTP status, error code and type -> the standard vocabulary.

    ``payment_lookup`` is true when the request named a payment (create), so a missing resource without a
    ``param`` is that payment rather than a refund.
    """
    if status_code in HTTP_STATUS_ERRORS:
        return HTTP_STATUS_ERRORS[status_code]
    if status_code >= 500:
        return ErrorCode.GATEWAY_UNAVAILABLE
    if error.code == "resource_missing" and (
        error.param in _PAYMENT_PARAMS or (payment_lookup and error.param is None)
    ):
        return ErrorCode.PAYMENT_NOT_FOUND
    if error.code is not None and error.code in ERROR_CODES:
        return ERROR_CODES[error.code]
    if error.type == "invalid_request_error" and error.param == "currency":
        return ErrorCode.CURRENCY_MISMATCH
    if error.type is not None and error.type in ERROR_TYPES:
        return ERROR_TYPES[error.type]
    if status_code == 402:
        return ErrorCode.DECLINED
    if 400 <= status_code < 500:
        return ErrorCode.INVALID_REQUEST
    return ErrorCode.PROCESSOR_ERROR


# --- webhooks -----------------------------------------------------------------------------------------

# Events whose data.object is a refund. refund.failed is final whatever the object's status says.
REFUND_EVENT_TYPES: Final = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)


# A payout reached the bank: its balance transactions can be pulled (reconciliation.pulling).
PAYOUT_PAID: Final = "payout.paid"


def _paid_payout(container: object) -> str | None:
    """The id of the automatic payout a ``payout.paid`` event is about; None for a manual payout, whose
    transactions Stripe cannot list (RECONCILIATION.md §1.1)."""
    payout = container.get("object") if isinstance(container, dict) else None
    if not isinstance(payout, dict):
        raise MalformedError("payout.paid event has no payout object")
    payout_id = payout.get("id")
    if not isinstance(payout_id, str) or not payout_id.startswith("po_") or len(payout_id) > 255:
        raise MalformedError("payout.paid event has no payout id")
    return None if payout.get("automatic") is False else payout_id


def parse_event(body: bytes) -> WebhookEvent:
    """A Stripe Event -> WebhookEvent. ValueError with a short message when malformed."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("webhook body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedError("webhook body is not a JSON object")
    if data.get("object", "event") != "event":
        raise MalformedError("webhook body is not a Stripe event")
    event_id, event_type = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise MalformedError("event has no id or type")
    container = data.get("data")
    if event_type == PAYOUT_PAID:
        return WebhookEvent(
            event_id=event_id,
            event_type=event_type,
            gateway_refund_id=None,
            refund_id=None,
            status=None,
            settlement_ref=_paid_payout(container),
        )
    if event_type not in REFUND_EVENT_TYPES:
        return WebhookEvent(
            event_id=event_id, event_type=event_type, gateway_refund_id=None, refund_id=None, status=None
        )
    if not isinstance(container, dict):
        raise MalformedError("event has no data object")
    try:
        refund = parse_refund(container.get("object"))
    except ValueError as exc:
        raise MalformedError(f"event data.object is not a refund: {exc}") from None
    status = GatewayStatus.FAILED if event_type == "refund.failed" else map_status(refund.status)
    failure_code, failure_message = failure_details(refund, status)
    return WebhookEvent(
        event_id=event_id,
        event_type=event_type,
        gateway_refund_id=refund.id,
        refund_id=refund.metadata.get(METADATA_REFUND_ID),
        status=status,
        raw_status=refund.status,
        amount=refund.minor_amount,
        currency=refund.currency,
        failure_code=failure_code,
        failure_message=failure_message,
        processor_code=refund.failure_reason if failure_code else None,
        idempotency_key=refund.metadata.get(METADATA_IDEMPOTENCY_KEY),
    )
