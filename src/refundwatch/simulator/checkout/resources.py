"""Checkout.com's resources as the simulator answers them: the payment, its actions, the refund's 202
and the webhook events. Pure renderers over the shared store's :class:`~..state.Payment` and
:class:`~..state.Refund` (STYLE rule 12: nothing from refundwatch's adapter).

Every refund is an action of type ``Refund`` (``refund.id`` is its ``act_`` id). A refund not yet
processed (store status ``pending``) is listed with ``approved: null`` and no response code (ours:
the API reference types ``approved`` as a boolean and says nothing of actions in progress; listing them
is what lets a client find a refund whose 202 was lost before it is processed). Approved refunds carry
``10000 Approved``; declined ones ``approved: false`` with their decline code. A refund declined after
its approval (``fail_later_rate``) reads declined from then on.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from ..state import Payment, Refund
from .wire import APPROVED, time_of

__all__ = [
    "actions",
    "balances",
    "event_body",
    "payment_resource",
    "refund_accepted",
]

_SUCCEEDED = "succeeded"


def _link(href: str) -> dict[str, str]:
    return {"href": href}


def balances(payment: Payment) -> dict[str, int]:
    """PaymentResponseBalances.yaml for a captured payment.

    ``total_refunded`` counts approved refunds; ``available_to_refund`` also holds back the refunds
    still being processed, so that no two requests can refund the same money (ours: Checkout.com does
    not say how a pending refund shows in the balances)."""
    approved = sum(r.amount for r in payment.refunds if r.status == _SUCCEEDED)
    return {
        "total_authorized": payment.amount,
        "total_voided": 0,
        "available_to_void": 0,
        "total_captured": payment.amount,
        "available_to_capture": 0,
        "total_refunded": approved,
        "available_to_refund": max(payment.refundable(), 0),
    }


def payment_status(payment: Payment) -> str:
    refunded = sum(r.amount for r in payment.refunds if r.status == _SUCCEEDED)
    if refunded <= 0:
        return "Captured"
    return "Refunded" if refunded >= payment.amount else "Partially Refunded"


def _derived_id(payment: Payment, kind: str) -> str:
    """A stable ``act_`` id for the payment's Authorization or Capture action."""
    digest = hashlib.sha256(f"{payment.reference}:{kind}".encode()).digest()
    return "act_" + base64.b32encode(digest).decode("ascii").lower()[:26]


def payment_resource(base: str, payment: Payment) -> dict[str, Any]:
    """``GET /payments/{id}``: the captured card payment with its balances and links."""
    href = f"{base}/payments/{payment.reference}"
    return {
        "id": payment.reference,
        "requested_on": time_of(payment.created),
        "source": {
            "type": "card",
            "scheme": "Visa",
            "last4": "4242",
            "expiry_month": 12,
            "expiry_year": 2030,
        },
        "amount": payment.amount,
        "currency": payment.currency,
        "payment_type": "Regular",
        "status": payment_status(payment),
        "approved": True,
        "balances": balances(payment),
        "_links": {
            "self": _link(href),
            "actions": _link(f"{href}/actions"),
            "refund": _link(f"{href}/refunds"),
        },
    }


def _refund_action(refund: Refund) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": refund.id,
        "type": "Refund",
        "processed_on": time_of(refund.extra.get("processed_on") or refund.created),
        "amount": refund.amount,
    }
    if refund.status == "pending":
        action["approved"] = None
    elif refund.status == _SUCCEEDED:
        action["approved"] = True
        action["response_code"], action["response_summary"] = APPROVED
    else:  # failed, reversed: declined
        action["approved"] = False
        action["response_code"], action["response_summary"] = refund.extra["decline"]
    if refund.extra.get("reference") is not None:
        action["reference"] = refund.extra["reference"]
    if refund.extra.get("metadata"):
        action["metadata"] = refund.extra["metadata"]
    return action


def actions(payment: Payment) -> list[dict[str, Any]]:
    """``GET /payments/{id}/actions``: latest first, the refunds then the Capture and Authorization."""
    authorization_id, capture_id = _derived_id(payment, "Authorization"), _derived_id(payment, "Capture")
    done = time_of(payment.created)
    listed = [_refund_action(r) for r in sorted(payment.refunds, key=lambda r: r.created, reverse=True)]
    code, summary = APPROVED
    listed.append(
        {
            "id": capture_id,
            "type": "Capture",
            "processed_on": done,
            "amount": payment.amount,
            "approved": True,
            "response_code": code,
            "response_summary": summary,
        }
    )
    listed.append(
        {
            "id": authorization_id,
            "type": "Authorization",
            "processed_on": done,
            "amount": payment.amount,
            "approved": True,
            "auth_code": "643381",
            "response_code": code,
            "response_summary": summary,
        }
    )
    return listed


def refund_accepted(base: str, refund: Refund) -> dict[str, Any]:
    """The 202 body (RefundAcceptedResponse.yaml)."""
    body: dict[str, Any] = {"action_id": refund.id}
    if refund.extra.get("reference") is not None:
        body["reference"] = refund.extra["reference"]
    body["_links"] = {"payment": _link(f"{base}/payments/{refund.payment.reference}")}
    return body


def event_body(base: str, event_id: str, event_type: str, refund: Refund, created: float) -> dict[str, Any]:
    """A ``payment_refunded`` / ``payment_refund_declined`` / ``payment_refund_pending`` event, shaped as
    Checkout.com's webhook examples (workflows), with the payment's balances at the time."""
    payment = refund.payment
    href = f"{base}/payments/{payment.reference}"
    data: dict[str, Any] = {
        "id": payment.reference,
        "action_id": refund.id,
        "amount": refund.amount,
        "currency": refund.currency,
        "processed_on": time_of(created),
    }
    if refund.extra.get("reference") is not None:
        data["reference"] = refund.extra["reference"]
    if event_type == "payment_refunded":
        data["response_code"], data["response_summary"] = APPROVED
    elif event_type == "payment_refund_declined":
        data["response_code"], data["response_summary"] = refund.extra["decline"]
    data["balances"] = balances(payment)
    data["metadata"] = refund.extra.get("metadata") or {}
    data["event_links"] = {"payment": href, "payment_actions": f"{href}/actions"}
    return {
        "id": event_id,
        "type": event_type,
        "version": "1.0.33",
        "created_on": time_of(created),
        "data": data,
        "_links": {
            "self": _link(f"{base}/workflows/events/{event_id}"),
            "subject": _link(f"{base}/workflows/events/subject/{payment.reference}"),
            "payment": _link(href),
            "payment_actions": _link(f"{href}/actions"),
        },
    }
