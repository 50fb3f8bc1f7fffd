from __future__ import annotations

from stack import Stack


def test_refund_reaches_succeeded_once(stack: Stack) -> None:
    reference = stack.payment(10_000)
    response = stack.refund(reference, 2_500)
    assert response.status_code == 201, response.text
    refund = stack.wait_status(response.json()["id"], "succeeded")
    assert refund["gateway_refund_id"].startswith("re_")
    rows = [r for r in stack.ledger() if r["payment_reference"] == reference]
    assert len(rows) == 1
    assert rows[0]["amount"] == 2_500
