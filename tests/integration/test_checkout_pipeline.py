"""Checkout.com end to end: web, worker, database and the stack's simulator as real processes, on both
databases.

What Checkout.com brings beyond the shared pipeline tests (test_execution, test_crash, test_concurrency
run for it too): its idempotency keeps only 2xx answers, so a refund that executed behind a 5xx is
found among the payment's actions instead of being sent again; its own refundable balance is checked
before a refund goes out; and its webhooks are signed with a hex HMAC of the raw body (``Cko-Signature``),
built here with the standard library as Checkout.com documents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx2
import pytest

from processors import CHECKOUT_SIGNATURE_KEY, kit
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

CHECKOUT = kit("checkout")
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


def faults(stack: Stack, **values: Any) -> None:
    stack.faults("checkout", **values)


def refund(stack: Stack, payment: str, amount: int) -> str:
    response = stack.refund(payment, amount)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ledger(stack: Stack, payment: str) -> list[dict[str, Any]]:
    return [r for r in stack.ledger() if r["payment_reference"] == payment]


def details(refund: dict[str, Any]) -> list[str]:
    return [str(e["detail"]) for e in refund["events"]]


def test_a_refund_that_executed_behind_a_5xx_is_found_in_the_actions_not_sent_again(stack: Stack) -> None:
    """Checkout.com keeps a key only for 2xx answers: after a 5xx, the same key would execute again.
    The refund is looked up among the payment's actions first, and found."""
    faults(stack, error_rate=1.0, executed_error_share=1.0)
    try:
        payment = stack.payment(10_000, processor="checkout")
        refund_id = refund(stack, payment, 3_000)

        def cut() -> bool:
            return any("attempt 1 failed" in d for d in details(stack.get(refund_id)))

        wait_until(cut, timeout=20, what="the first attempt's 5xx")
        assert len(ledger(stack, payment)) == 1  # it did execute: the 5xx came after
    finally:
        faults(stack)
    done = stack.wait_status(refund_id, *FINAL, timeout=30)
    assert done["status"] == "succeeded", done
    rows = ledger(stack, payment)
    assert len(rows) == 1, rows
    assert done["gateway_refund_id"] == rows[0]["gateway_refund_id"]
    assert any("before any re-send" in d for d in details(done)), details(done)


def test_a_refund_a_webhook_settles_after_a_failed_attempt_carries_no_error(stack: Stack) -> None:
    """The attempt's 5xx left error_code gateway_unavailable on the refund; Checkout.com's signed
    payment_refunded then made it succeeded, and GET /api/v1/refunds/{id} showed a succeeded refund
    with that error (and the staff filter by error code listed it), where the worker's own answer
    clears it: an earlier attempt's error is history, on the timeline."""
    faults(stack, error_rate=1.0, executed_error_share=1.0)  # every call 5xx: only the webhook settles
    try:
        payment = stack.payment(10_000, processor="checkout")
        refund_id = refund(stack, payment, 3_000)
        done = stack.wait_status(refund_id, *FINAL, timeout=30)
    finally:
        faults(stack)
    assert done["status"] == "succeeded", done
    assert any("attempt 1 failed" in d for d in details(done)), details(done)
    assert (done["error_code"], done["error_message"]) == (None, None), done


def test_the_processors_own_balance_is_checked_before_a_refund_is_sent(stack: Stack) -> None:
    """refundwatch believes 10,000 were captured; Checkout.com has only 1,000 left to refund (say,
    refunded from its dashboard): the refund fails as over-refund without being sent, amount released."""
    payment = stack.payment(10_000, processor="checkout", simulator_amount=1_000)
    refund_id = refund(stack, payment, 5_000)
    done = stack.wait_status(refund_id, *FINAL)
    assert done["status"] == "failed", done
    assert done["error_code"] == "amount_exceeds_refundable"
    assert ledger(stack, payment) == []
    left = refund(stack, payment, 800)  # what the processor has left still goes
    assert stack.wait_status(left, *FINAL)["status"] == "succeeded"


def signed(body: bytes, key: str = CHECKOUT_SIGNATURE_KEY) -> dict[str, str]:
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Cko-Signature": signature}


def deliver(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(
        f"{stack.web_url}/webhooks/{CHECKOUT.connection}", content=body, headers=headers, timeout=30
    )


def processing_refund_and_its_event(stack: Stack, amount: object) -> tuple[str, dict[str, Any]]:
    """A Checkout.com refund of 2000 accepted and waiting, and the ``payment_refunded`` event that would
    settle it, reporting ``amount``."""
    faults(stack, settle_ms=600_000)  # Checkout.com stays silent: the test speaks for it
    try:
        payment = stack.payment(5_000, processor="checkout")
        refund_id = refund(stack, payment, 2_000)
        accepted = stack.wait_status(refund_id, "processing")
    finally:
        faults(stack)
    (sent,) = ledger(stack, payment)
    return refund_id, {
        "id": f"evt_{uuid.uuid4().hex[:26]}",
        "type": "payment_refunded",
        "created_on": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "id": payment,
            "action_id": accepted["gateway_refund_id"],
            "reference": refund_id,
            "amount": amount,
            "currency": "EUR",
            "response_code": "10000",
            "response_summary": "Approved",
            "metadata": {"refund_id": refund_id, "idempotency_key": sent["idempotency_key"]},
        },
    }


def test_webhooks_signed_as_checkout_does_are_applied_and_tampered_ones_refused(stack: Stack) -> None:
    refund_id, event = processing_refund_and_its_event(stack, 2_000)
    body = json.dumps(event).encode()
    refused = {
        "one byte changed": (body.replace(b'"amount": 2000', b'"amount": 9000'), signed(body)),
        "another key": (body, signed(body, "not-the-webhook-signature-key")),
        "unsigned": (body, {"Content-Type": "application/json"}),
    }
    for what, (content, headers) in refused.items():
        response = deliver(stack, content, headers)
        assert response.status_code in (400, 401), (what, response.text)
        assert response.json()["code"] == "invalid_signature", what
    assert stack.get(refund_id)["status"] == "processing"

    assert deliver(stack, body, signed(body)).status_code < 300
    assert stack.wait_status(refund_id, "succeeded")["status"] == "succeeded"
    assert deliver(stack, body, signed(body)).status_code < 300  # at least once: applied once
    assert db_rows(stack, "SELECT count(*) FROM webhook_events WHERE event_id = ?", event["id"]) == [(1,)]


def test_a_signed_success_whose_amount_cannot_be_read_is_refused_not_applied_unchecked(stack: Stack) -> None:
    """``"amount": "4999"`` for a refund of 2000: the amount was taken as not reported, so the event
    was applied as a success without the amount check (an integer 4999 sends it to manual review)."""
    refund_id, event = processing_refund_and_its_event(stack, "4999")
    body = json.dumps(event).encode()
    response = deliver(stack, body, signed(body))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "malformed_webhook"
    assert db_rows(stack, "SELECT count(*) FROM webhook_events WHERE event_id = ?", event["id"]) == [(0,)]
    assert stack.get(refund_id)["status"] == "processing"
