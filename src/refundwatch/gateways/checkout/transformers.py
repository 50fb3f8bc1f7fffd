"""Checkout.com's wire types, the status table and the webhook table (STYLE rules 2-4).

Checked against Checkout.com's API reference (shared/specs/checkout: ``RefundRequest.yaml``,
``RefundAcceptedResponse.yaml``, ``PaymentResponseBalances.yaml``, ``EventTypesObject.yaml``, and the
same repository's ``PaymentAction.yaml`` for ``GET /payments/{id}/actions``) and checkout-sdk 4.8.1
(``payments/payments.py`` RefundRequest, ``api_client.py`` headers, the secret key patterns of
``default_sdk.py`` and ``previous/previous_sdk.py``). Errors are in ``errors.py``.

Money: Checkout.com takes and reports integer minor units (``amount``), so refundwatch's amounts go as
they are; a payment's currency is read back (``GET /payments/{id}``) and webhooks carry one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from refundwatch.gateways.base import ErrorCode, GatewayStatus, RefundRequest, WebhookEvent


class MalformedError(ValueError):
    """Checkout.com sent something that is not the documented shape. The message is short and safe."""


# RefundRequest.reference: "maxLength: 50" (Amex: 30, says the newer reference; refundwatch's ids are
# 36-character UUIDs, so an Amex acquirer may truncate the reference: metadata carries the id too).
REFERENCE_MAX: Final = 50
# Metadata keys refundwatch sets on every refund (one level of primitives, RefundRequest.metadata).
META_REFUND_ID: Final = "refund_id"
META_KEY: Final = "idempotency_key"
REFUND_ACTION: Final = "Refund"  # PaymentAction.type

# Secret keys as checkout-sdk 4.8.1 accepts them: default_sdk.py (current platform, "Bearer sk_…") and
# previous/previous_sdk.py (previous platform, the bare key).
DEFAULT_KEY: Final = re.compile(r"^sk_(sbox_)?[a-z2-7]{26}[a-z2-7*#$=]$")
PREVIOUS_KEY: Final = re.compile(r"^sk_(test_)?(\w{8})-(\w{4})-(\w{4})-(\w{4})-(\w{12})$")
PLATFORMS: Final = ("default", "previous")


# --- the status table ---------------------------------------------------------------------------------

# A Refund action's ``approved`` (PaymentAction.yaml: "Whether the action was successful"). A refund the
# processor still works on is either not listed yet or listed without a verdict: pending, never success.
ACTION_STATUS: Final[Mapping[bool | None, GatewayStatus]] = MappingProxyType(
    {True: GatewayStatus.SUCCEEDED, False: GatewayStatus.FAILED, None: GatewayStatus.PENDING}
)
# The 202 answer: "Refund accepted" — accepted only, the outcome comes later.
ACCEPTED_STATUS: Final = GatewayStatus.PENDING


def map_action_status(approved: object) -> GatewayStatus:
    """Total: anything but an explicit ``true``/``false`` is pending."""
    if isinstance(approved, bool):
        return ACTION_STATUS[approved]
    return ACTION_STATUS[None]


# --- webhooks -----------------------------------------------------------------------------------------

# The refund events (EventTypesObject.yaml) and the status each announces. A declined refund that had
# succeeded becomes ``reversed`` in the state machine (refunds.states), never backwards.
EVENT_STATUS: Final[Mapping[str, GatewayStatus]] = MappingProxyType(
    {
        "payment_refunded": GatewayStatus.SUCCEEDED,
        "payment_refund_declined": GatewayStatus.FAILED,
        "payment_refund_pending": GatewayStatus.PENDING,
    }
)
# Every other event type EventTypesObject.yaml lists: about payments, captures, voids or disputes, never
# a refund's status (status None). Unlisted types are treated the same way.
OTHER_EVENTS: Final = frozenset(
    {
        "card_verification_declined",
        "card_verified",
        "dispute_canceled",
        "dispute_evidence_required",
        "dispute_expired",
        "dispute_lost",
        "dispute_resolved",
        "dispute_won",
        "payment_approved",
        "payment_risk_matched",
        "payment_pending",
        "payment_declined",
        "payment_expired",
        "payment_cancelled",
        "payment_voided",
        "payment_void_declined",
        "payment_captured",
        "payment_capture_declined",
        "payment_capture_pending",
        "payment_chargeback",
        "payment_retrieval",
    }
)


# --- wire types ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The 202 answer to a refund (RefundAcceptedResponse.yaml)."""

    action_id: str
    reference: str | None


@dataclass(frozen=True, slots=True)
class Action:
    """One entry of ``GET /payments/{id}/actions`` (PaymentAction.yaml)."""

    id: str
    type: str
    amount: int | None
    approved: bool | None
    response_code: str | None = None
    response_summary: str | None = None
    reference: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def raw_status(self) -> str:
        verdict = "pending" if self.approved is None else ("approved" if self.approved else "declined")
        code = f" {self.response_code}" if self.response_code else ""
        return f"Refund {verdict}{code}"


@dataclass(frozen=True, slots=True)
class Payment:
    """What ``GET /payments/{id}`` says about what is still refundable."""

    id: str | None
    status: str | None
    currency: str | None
    available_to_refund: int | None


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def build_refund_body(request: RefundRequest) -> dict[str, Any]:
    """The refund request body. ValueError (nothing sent) when refundwatch's values cannot go as they are."""
    if request.amount < 1:
        # "If not specified, the full payment amount will be refunded": never send 0 or nothing.
        raise ValueError("the amount must be at least 1 minor unit")
    if not request.refund_id or len(request.refund_id) > REFERENCE_MAX:
        raise ValueError(f"the reference (refund id) must be 1 to {REFERENCE_MAX} characters")
    return {
        "amount": request.amount,
        "reference": request.refund_id,
        "metadata": {META_REFUND_ID: request.refund_id, META_KEY: request.idempotency_key},
    }


def parse_accepted(data: object) -> Accepted:
    if not isinstance(data, dict):
        raise MalformedError("the answer is not a JSON object")
    action_id = _text(data, "action_id")
    if action_id is None:
        raise MalformedError("the answer has no action_id")
    return Accepted(action_id=action_id, reference=_text(data, "reference"))


def parse_actions(data: object) -> list[Action]:
    """The payment's actions, latest first as Checkout.com lists them. Entries without an id or type are
    skipped (never a refund refundwatch can match)."""
    if not isinstance(data, list):
        raise MalformedError("the payment's actions are not a JSON array")
    actions = []
    for item in data:
        if not isinstance(item, dict):
            continue
        action_id, kind = _text(item, "id"), _text(item, "type")
        if action_id is None or kind is None:
            continue
        approved = item.get("approved")
        metadata = item.get("metadata")
        actions.append(
            Action(
                id=action_id,
                type=kind,
                amount=_int(item, "amount"),
                approved=approved if isinstance(approved, bool) else None,
                response_code=_text(item, "response_code"),
                response_summary=_text(item, "response_summary"),
                reference=_text(item, "reference"),
                metadata=metadata if isinstance(metadata, dict) else {},
            )
        )
    return actions


# Amex acquirers take at most 30 characters of a reference (the newer API reference): a reference cut to
# at least this many characters of the refund's id still names it.
TRUNCATED_REFERENCE_MIN: Final = 30


def reference_names(reference: str | None, refund_id: str) -> bool:
    """Whether a reference Checkout.com echoes is the refund's id, whole or cut to the Amex limit."""
    if not reference:
        return False
    return reference == refund_id or (
        len(reference) >= TRUNCATED_REFERENCE_MIN and refund_id.startswith(reference)
    )


def names_refund(action: Action, refund_id: str) -> bool:
    """Whether ``action`` is a Refund action of refundwatch's refund ``refund_id`` (metadata first)."""
    if action.type != REFUND_ACTION:
        return False
    meta = action.metadata.get(META_REFUND_ID)
    if isinstance(meta, str) and meta:
        return meta == refund_id
    return reference_names(action.reference, refund_id)


def attempt_action(actions: list[Action], request: RefundRequest) -> Action | None:
    """The Refund action this attempt created: the latest of the refund's actions carrying this attempt's
    metadata key; failing that, one carrying no key at all (an acquirer that dropped the metadata),
    never one carrying another attempt's key."""
    loose = None
    for action in actions:  # latest first
        if not names_refund(action, request.refund_id):
            continue
        key = action.metadata.get(META_KEY)
        if key == request.idempotency_key:
            return action
        if key is None and loose is None:
            loose = action
    return loose


def parse_payment(data: object) -> Payment:
    if not isinstance(data, dict):
        raise MalformedError("the payment is not a JSON object")
    balances = data.get("balances")
    currency = _text(data, "currency")
    return Payment(
        id=_text(data, "id"),
        status=_text(data, "status"),
        currency=currency.upper() if currency else None,
        available_to_refund=_int(balances, "available_to_refund") if isinstance(balances, dict) else None,
    )


def failure_details(status: GatewayStatus, summary: str | None) -> tuple[ErrorCode | None, str | None]:
    if status is not GatewayStatus.FAILED:
        return None, None
    return ErrorCode.DECLINED, "Checkout.com declined the refund" + (f": {summary}" if summary else "")


def parse_event(body: bytes) -> WebhookEvent:
    """A Checkout.com webhook -> WebhookEvent. MalformedError with a short message when malformed.

    Event types that are not about a refund change nothing (status None), never success.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("webhook body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedError("webhook body is not a JSON object")
    event_id, event_type = _text(data, "id"), _text(data, "type")
    if event_id is None or event_type is None:
        raise MalformedError("event has no id or type")
    if event_type not in EVENT_STATUS:
        return WebhookEvent(
            event_id=event_id, event_type=event_type, gateway_refund_id=None, refund_id=None, status=None
        )
    payload = data.get("data")
    if not isinstance(payload, dict):
        raise MalformedError("refund event has no data object")
    action_id = _text(payload, "action_id")
    if action_id is None:
        raise MalformedError("refund event has no data.action_id")
    metadata = payload.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    refund_id = metadata.get(META_REFUND_ID)
    refund_id = refund_id if isinstance(refund_id, str) and refund_id else _text(payload, "reference")
    key = metadata.get(META_KEY)
    # What the core checks against the refund: absent is "not reported", anything but an integer
    # amount and a text currency cannot be read, and a report whose amount cannot be checked is not
    # applied as if it had none.
    amount, currency = payload.get("amount"), payload.get("currency")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise MalformedError("refund event data.amount is not an integer in minor units")
    if currency is not None and not isinstance(currency, str):
        raise MalformedError("refund event data.currency is not a currency code")
    status = EVENT_STATUS[event_type]
    summary = _text(payload, "response_summary")
    failure_code, failure_message = failure_details(status, summary)
    code = _text(payload, "response_code")
    return WebhookEvent(
        event_id=event_id,  # stable across Checkout.com's re-sends: the dedupe key
        event_type=event_type,
        gateway_refund_id=action_id,
        refund_id=refund_id,
        status=status,
        raw_status=f"{event_type}" + (f" {code}" if code else ""),
        amount=amount,
        currency=currency.upper() if currency else None,
        failure_code=failure_code,
        failure_message=failure_message,
        processor_code=(code or event_type)[:128] if failure_code else None,
        idempotency_key=key if isinstance(key, str) and key else None,
    )
