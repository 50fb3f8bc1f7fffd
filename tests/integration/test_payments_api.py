"""`GET /api/v1/payments/{payment_reference}` (CONTRACT §4): the payment, its ledger and its refunds;
and a refund naming a payment that exists on another connection says so."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2

from processors import kit
from stack import Stack


def _payment(stack: Stack, connection: str, reference: str, amount: int = 5_000) -> None:
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": connection,
                "payment_reference": reference,
                "amount": amount,
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
            },
        )
    assert response.status_code == 201, response.text


def _get(stack: Stack, reference: str, key: str | None = None, **params: str) -> httpx2.Response:
    with stack.api(key) as client:
        return client.get(f"/api/v1/payments/{reference}", params=params)


def _error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def test_a_payment_shows_its_ledger_and_its_refunds(stack: Stack) -> None:
    reference = stack.payment(100_000, order_id="order-ledger")
    done = stack.refund(reference, 1_000)
    assert done.status_code == 201, done.text
    stack.wait_status(done.json()["id"], "succeeded")
    waiting = stack.refund(reference, 60_000)  # at the approval threshold: reserved, in flight
    assert waiting.json()["status"] == "pending_approval"

    response = _get(stack, reference)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["payment_reference"] == reference
    assert body["connection"] == "stripe-test"
    assert (body["amount"], body["currency"], body["order_id"]) == (100_000, "EUR", "order-ledger")
    ledger = {k: body[k] for k in ("captured", "refunded", "in_flight", "reversed", "refundable")}
    assert ledger == {
        "captured": 100_000,
        "refunded": 1_000,
        "in_flight": 60_000,
        "reversed": 0,
        "refundable": 39_000,
    }
    assert [r["id"] for r in body["refunds"]] == [waiting.json()["id"], done.json()["id"]]
    assert body["refunds"][1]["status"] == "succeeded"
    assert body["refunds"][1]["events"], "each refund carries its timeline"
    # The refundable balance is exactly what intake lets a new refund take.
    over = stack.refund(reference, 39_001)
    assert _error(over, 422, "amount_exceeds_refundable")["refundable_amount"] == 39_000
    # The same answer when the connection is named.
    assert _get(stack, reference, connection="stripe-test").json()["refundable"] == 39_000


def test_unknown_payment_and_connection(stack: Stack) -> None:
    _error(_get(stack, f"pi_missing_{uuid.uuid4().hex}"), 404, "payment_not_found")
    _error(_get(stack, stack.payment(1_000), connection="nope"), 422, "unknown_connection")


def test_a_payment_on_another_connection_says_so(stack: Stack) -> None:
    stack.connect("adyen")
    other = kit("adyen").connection
    reference = stack.payment(5_000)  # on stripe-test
    found = _error(_get(stack, reference, connection=other), 404, "payment_on_other_connection")
    assert "stripe-test" in found["message"]
    with stack.api() as client:
        refused = client.post(
            "/api/v1/refunds",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={
                "payment_reference": reference,
                "connection": other,
                "amount": 500,
                "currency": "EUR",
                "reason": "return",
            },
        )
    body = _error(refused, 422, "payment_on_other_connection")
    assert "stripe-test" in body["message"]


def test_a_reference_on_two_connections_needs_the_connection(stack: Stack) -> None:
    stack.connect("adyen")
    reference = f"shared-{uuid.uuid4().hex[:12]}"
    _payment(stack, "stripe-test", reference, 5_000)
    _payment(stack, kit("adyen").connection, reference, 7_000)
    _error(_get(stack, reference), 422, "ambiguous_payment")
    assert _get(stack, reference, connection=kit("adyen").connection).json()["captured"] == 7_000
    assert _get(stack, reference, connection="stripe-test").json()["captured"] == 5_000


def test_reading_a_payment_needs_refunds_read(stack: Stack) -> None:
    reference = stack.payment(1_000)
    writer = stack.cli("apikeys", "create", "--name", "payments-only", "--scopes", "payments:write")
    _error(_get(stack, reference, key=writer.stdout.strip()), 403, "insufficient_scope")
    with httpx2.Client(base_url=stack.web_url, timeout=30) as anonymous:
        _error(anonymous.get(f"/api/v1/payments/{reference}"), 401, "unauthenticated")


def test_orders_and_invoices_have_a_ledger_over_all_their_payments(stack: Stack) -> None:
    """Returns systems think in orders and invoices: the payment's answer adds the same figures over
    every payment sharing its order and its invoice, per currency."""
    order, invoice = f"order-{uuid.uuid4().hex[:8]}", f"inv-{uuid.uuid4().hex[:8]}"
    first = stack.payment(10_000, order_id=order, invoice_id=invoice)
    second = stack.payment(4_000, order_id=order, invoice_id=invoice)
    other_currency = stack.payment(3_000, currency="USD", invoice_id=invoice)
    for reference, amount, currency in (
        (first, 2_500, "EUR"),
        (second, 4_000, "EUR"),
        (other_currency, 500, "USD"),
    ):
        done = stack.refund(reference, amount, currency=currency)
        assert done.status_code == 201, done.text
        stack.wait_status(done.json()["id"], "succeeded")
    body = _get(stack, second).json()
    assert body["order_ledger"] == [
        {
            "currency": "EUR",
            "payments": 2,
            "captured": 14_000,
            "refunded": 6_500,
            "in_flight": 0,
            "reversed": 0,
            "refundable": 7_500,
        }
    ]
    assert [
        (g["currency"], g["payments"], g["refunded"], g["refundable"]) for g in body["invoice_ledger"]
    ] == [
        ("EUR", 2, 6_500, 7_500),
        ("USD", 1, 500, 2_500),
    ]
    alone = _get(stack, stack.payment(1_000)).json()
    assert (alone["order_ledger"], alone["invoice_ledger"]) == (None, None)
