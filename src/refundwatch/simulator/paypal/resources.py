"""PayPal's resources as it renders them: the refund, the capture, the webhook event and the webhook.

A refund's PayPal fields live in the shared store's ``Refund.extra``: ``invoice_id``, ``custom_id``,
``note_to_payer`` (as sent), ``updated`` (Unix time of the last status change), ``reason``
(``status_details.reason``, ``ECHECK`` for eCheck refunds). Settlement reports read the same keys.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from ..state import Payment, Refund
from .wire import format_value, money, new_id, now_time, time_of

__all__ = [
    "EVENT_TYPES",
    "STATUSES",
    "capture_resource",
    "event_body",
    "minimal_refund",
    "order_id_for",
    "order_resource",
    "refund_resource",
    "webhook_resource",
]

# The simulator's generic statuses in PayPal's refund vocabulary (refund_status: CANCELLED, FAILED,
# PENDING, COMPLETED). PayPal has no "reversed" refund: the reversal is its own movement on the capture,
# announced by PAYMENT.CAPTURE.REVERSED; the refund itself reads COMPLETED.
STATUSES: Mapping[str, str] = {
    "pending": "PENDING",
    "succeeded": "COMPLETED",
    "failed": "FAILED",
    "canceled": "CANCELLED",
    "reversed": "COMPLETED",
}
# The event types this simulator sends (resource_type "refund", resource_version "2.0"), with the
# summary PayPal writes. PAYMENT.CAPTURE.REFUNDED and PAYMENT.CAPTURE.REVERSED: PayPal's event-names page
# (Payments v2); PAYMENT.REFUND.PENDING and PAYMENT.REFUND.FAILED: the refund events integrations
# subscribe to for pending and failed refunds (not in that page's Payments v2 table as we read it, nor in
# notifications_webhooks_v1.json, which names no refund events at all).
EVENT_TYPES: Mapping[str, str] = {
    "PAYMENT.CAPTURE.REFUNDED": "A {amount} {currency} capture payment was refunded",
    "PAYMENT.CAPTURE.REVERSED": "A {amount} {currency} capture payment was reversed",
    "PAYMENT.REFUND.PENDING": "A {amount} {currency} refund is pending",
    "PAYMENT.REFUND.FAILED": "A {amount} {currency} refund failed",
}


def _links(base: str, refund: Refund) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/v2/payments/refunds/{refund.id}", "rel": "self", "method": "GET"},
        {"href": f"{base}/v2/payments/captures/{refund.payment.reference}", "rel": "up", "method": "GET"},
    ]


def refund_resource(base: str, refund: Refund) -> dict[str, Any]:
    """The full refund (``Prefer: return=representation``, ``GET /v2/payments/refunds/{id}``, webhooks)."""
    extra = refund.extra
    currency = refund.currency
    status = STATUSES.get(refund.status, "PENDING")
    body: dict[str, Any] = {"id": refund.id, "amount": money(currency, refund.amount)}
    for name in ("invoice_id", "custom_id", "note_to_payer"):
        if extra.get(name) is not None:
            body[name] = extra[name]
    body["seller_payable_breakdown"] = {
        "gross_amount": money(currency, refund.amount),
        "paypal_fee": money(currency, 0),  # PayPal keeps its fee on refunds in most markets
        "net_amount": money(currency, refund.amount),
        "total_refunded_amount": money(currency, refund.payment.refunded),
    }
    body["status"] = status
    if status in {"PENDING", "FAILED"} and extra.get("reason"):
        body["status_details"] = {"reason": extra["reason"]}
    body["create_time"] = time_of(refund.created)
    body["update_time"] = time_of(extra.get("updated", refund.created))
    body["links"] = _links(base, refund)
    return body


def minimal_refund(base: str, refund: Refund) -> dict[str, Any]:
    """``Prefer: return=minimal`` (PayPal's default): ``id``, ``status`` and the HATEOAS links."""
    body: dict[str, Any] = {"id": refund.id, "status": STATUSES.get(refund.status, "PENDING")}
    body["links"] = _links(base, refund)
    return body


def order_id_for(capture_id: str) -> str:
    """The id of the order a registered capture belongs to (one capture per order here)."""
    return "5O" + hashlib.sha256(capture_id.encode()).hexdigest()[:15].upper()


def capture_resource(base: str, payment: Payment) -> dict[str, Any]:
    """``GET /v2/payments/captures/{id}``: COMPLETED, PARTIALLY_REFUNDED or REFUNDED by what refunds hold."""
    currency = payment.currency
    if payment.refunded <= 0:
        status = "COMPLETED"
    elif payment.refunded < payment.amount:
        status = "PARTIALLY_REFUNDED"
    else:
        status = "REFUNDED"
    body: dict[str, Any] = {
        "id": payment.reference,
        "amount": money(currency, payment.amount),
        "final_capture": True,
        "seller_protection": {
            "status": "ELIGIBLE",
            "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
        },
        "seller_receivable_breakdown": {
            "gross_amount": money(currency, payment.amount),
            "paypal_fee": money(currency, 0),
            "net_amount": money(currency, payment.amount),
        },
        "status": status,
    }
    if status == "REFUNDED":
        body["status_details"] = {"reason": "REFUNDED"}
    body["supplementary_data"] = {"related_ids": {"order_id": order_id_for(payment.reference)}}
    body["create_time"] = time_of(payment.created)
    updated = max((r.extra.get("updated", r.created) for r in payment.refunds), default=payment.created)
    body["update_time"] = time_of(updated)
    body["links"] = [
        {"href": f"{base}/v2/payments/captures/{payment.reference}", "rel": "self", "method": "GET"},
        {
            "href": f"{base}/v2/payments/captures/{payment.reference}/refund",
            "rel": "refund",
            "method": "POST",
        },
    ]
    return body


def order_resource(base: str, payment: Payment) -> dict[str, Any]:
    """``GET /v2/checkout/orders/{id}``: the order, its capture and every refund of it (PayPal's one
    place that lists a capture's refunds, with their ``invoice_id`` and ``custom_id``)."""
    order_id = order_id_for(payment.reference)
    return {
        "id": order_id,
        "intent": "CAPTURE",
        "status": "COMPLETED",
        "purchase_units": [
            {
                "reference_id": "default",
                "amount": money(payment.currency, payment.amount),
                "payments": {
                    "captures": [capture_resource(base, payment)],
                    "refunds": [refund_resource(base, refund) for refund in payment.refunds],
                },
            }
        ],
        "create_time": time_of(payment.created),
        "update_time": capture_resource(base, payment)["update_time"],
        "links": [{"href": f"{base}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"}],
    }


def event_body(base: str, event_type: str, refund: Refund) -> dict[str, Any]:
    """A webhook event (``event`` of notifications_webhooks_v1.json) about ``refund``; its ``id`` stays
    the same on every re-send."""
    event_id = f"WH-{new_id()}-{new_id()}"
    summary = EVENT_TYPES[event_type].format(
        amount=format_value(refund.currency, refund.amount), currency=refund.currency
    )
    return {
        "id": event_id,
        "event_version": "1.0",
        "create_time": now_time(millis=True),
        "resource_type": "refund",
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": summary,
        "resource": refund_resource(base, refund),
        "links": [
            {"href": f"{base}/v1/notifications/webhooks-events/{event_id}", "rel": "self", "method": "GET"},
            {
                "href": f"{base}/v1/notifications/webhooks-events/{event_id}/resend",
                "rel": "resend",
                "method": "POST",
            },
        ],
    }


def webhook_resource(base: str, webhook_id: str, url: str) -> dict[str, Any]:
    """``GET /v1/notifications/webhooks/{webhook_id}`` (``webhook`` of notifications_webhooks_v1.json)."""
    return {
        "id": webhook_id,
        "url": url,
        "event_types": [
            {"name": name, "description": text.split(" ", 3)[-1]} for name, text in EVENT_TYPES.items()
        ],
        "links": [
            {"href": f"{base}/v1/notifications/webhooks/{webhook_id}", "rel": "self", "method": "GET"},
            {"href": f"{base}/v1/notifications/webhooks/{webhook_id}", "rel": "update", "method": "PATCH"},
            {"href": f"{base}/v1/notifications/webhooks/{webhook_id}", "rel": "delete", "method": "DELETE"},
        ],
    }


def touch(refund: Refund) -> None:
    refund.extra["updated"] = time.time()
