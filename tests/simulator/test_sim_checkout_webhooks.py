"""The Checkout.com simulator's asynchronous life: signed webhooks after settle_ms, declines, retries.

Signatures are checked with the standard library only, as Checkout.com documents them: hex
HMAC-SHA256 of the raw body with the webhook's signature key, in ``Cko-Signature``.
"""

from __future__ import annotations

import hmac

from .checkout_kit import (
    PREVIOUS_KEY,
    PREVIOUS_SIGNATURE_KEY,
    SIGNATURE_KEY,
    WEBHOOK_AUTHORIZATION,
    CheckoutReceiver,
    checkout_receiver,
    checkout_simulator_process,
    csim,
    ledger,
    payment,
    read,
    refund,
    signature,
)
from .conftest import Simulator, wait_for

__all__ = ["checkout_receiver", "checkout_simulator_process", "csim"]


def _accepted_refund(sim: Simulator, amount: int = 1_000, **extra: object) -> tuple[str, str]:
    payment_id = payment(sim, 10_000)
    answer = refund(sim, payment_id, {"amount": amount, "reference": "rf-hook", **extra}, key="hook-key")
    assert answer.status_code == 202, answer.text
    action_id: str = answer.json()["action_id"]
    return payment_id, action_id


def test_payment_refunded_after_settle_signed_with_the_authorization_header(
    csim: Simulator, checkout_receiver: CheckoutReceiver
) -> None:
    csim.faults(processor="checkout", settle_ms=300)
    payment_id, action_id = _accepted_refund(csim, metadata={"refund_id": "rf-hook"})
    assert checkout_receiver.accepted() == []  # accepted only: no news yet
    [delivery] = wait_for(lambda: checkout_receiver.accepted("payment_refunded"), timeout=10)
    assert delivery.path == "/webhooks/checkout-eu"
    expected = hmac.new(SIGNATURE_KEY.encode(), delivery.body, "sha256").hexdigest()
    assert hmac.compare_digest(delivery.headers["cko-signature"], expected)
    assert delivery.headers["authorization"] == WEBHOOK_AUTHORIZATION
    event = delivery.json()
    assert event["id"].startswith("evt_")
    assert len(event["id"]) == 30
    data = event["data"]
    assert (data["id"], data["action_id"], data["reference"]) == (payment_id, action_id, "rf-hook")
    assert (data["amount"], data["currency"], data["response_code"]) == (1_000, "EUR", "10000")
    assert data["metadata"] == {"refund_id": "rf-hook"}
    assert data["balances"]["total_refunded"] == 1_000
    assert ledger(csim)[0]["status"] == "succeeded"


def test_previous_platform_connection_signs_with_its_own_key_without_authorization(
    csim: Simulator, checkout_receiver: CheckoutReceiver
) -> None:
    csim.faults(processor="checkout", settle_ms=100)
    payment_id = payment(csim)
    assert refund(csim, payment_id, {"amount": 10}, secret=PREVIOUS_KEY, bearer=False).status_code == 202
    [delivery] = wait_for(lambda: checkout_receiver.accepted("payment_refunded"), timeout=10)
    assert delivery.path == "/webhooks/checkout-prev"
    assert delivery.headers["cko-signature"] == signature(delivery.body, PREVIOUS_SIGNATURE_KEY)
    assert delivery.headers["cko-signature"] != signature(delivery.body, SIGNATURE_KEY)
    assert "authorization" not in delivery.headers


def test_pending_then_declined(csim: Simulator, checkout_receiver: CheckoutReceiver) -> None:
    csim.faults(processor="checkout", settle_ms=300, pending_rate=1.0, fail_later_rate=1.0)
    payment_id, action_id = _accepted_refund(csim, amount=2_000)
    wait_for(lambda: checkout_receiver.accepted("payment_refund_declined"), timeout=10)
    types = [d.json()["type"] for d in checkout_receiver.accepted()]
    assert types == ["payment_refund_pending", "payment_refund_declined"]
    declined = checkout_receiver.accepted("payment_refund_declined")[0].json()["data"]
    assert declined["response_code"] != "10000"
    [action] = [a for a in read(csim, f"/payments/{payment_id}/actions").json() if a["type"] == "Refund"]
    assert action["id"] == action_id
    assert action["approved"] is False
    assert action["response_code"] == declined["response_code"]
    assert read(csim, f"/payments/{payment_id}").json()["balances"]["available_to_refund"] == 10_000
    assert ledger(csim)[0]["status"] == "failed"


def test_approved_then_declined_after_all(csim: Simulator, checkout_receiver: CheckoutReceiver) -> None:
    csim.faults(processor="checkout", settle_ms=200, fail_later_rate=1.0, reversal_rate=1.0)
    _, action_id = _accepted_refund(csim)
    wait_for(lambda: checkout_receiver.accepted("payment_refund_declined"), timeout=10)
    types = [d.json()["type"] for d in checkout_receiver.accepted(action_id=action_id)]
    assert types == ["payment_refunded", "payment_refund_declined"]
    assert ledger(csim)[0]["status"] == "reversed"


def test_unanswered_webhooks_are_retried_on_the_scaled_schedule(
    csim: Simulator, checkout_receiver: CheckoutReceiver
) -> None:
    csim.faults(processor="checkout", settle_ms=50, webhook_retry_scale=0.0005)  # 60 s -> 30 ms
    checkout_receiver.fail_next = 3
    _accepted_refund(csim)
    wait_for(lambda: checkout_receiver.accepted("payment_refunded"), timeout=10)
    attempts = checkout_receiver.all()
    assert [d.answered for d in attempts] == [500, 500, 500, 200]
    assert len({d.body for d in attempts}) == 1  # the same event, signed the same way
    # The receiver records the request before its answer reaches the simulator: wait for that answer.
    [row] = wait_for(
        lambda: [
            d for d in csim.control("GET", "/webhooks?processor=checkout").json() if d["state"] != "pending"
        ]
    )
    assert (row["state"], row["attempts"]) == ("delivered", 4)
    assert [a["waited"] for a in row["attempt_log"]] == [0.0, 0.03, 0.06, 0.12]


def test_duplicates_carry_the_same_event_id(csim: Simulator, checkout_receiver: CheckoutReceiver) -> None:
    csim.faults(processor="checkout", settle_ms=50, webhook_duplicate_rate=1.0)
    _accepted_refund(csim)
    wait_for(lambda: len(checkout_receiver.accepted("payment_refunded")) == 2, timeout=10)
    first, second = checkout_receiver.accepted("payment_refunded")
    assert first.body == second.body


def test_dropped_webhooks_leave_the_actions_to_tell(
    csim: Simulator, checkout_receiver: CheckoutReceiver
) -> None:
    csim.faults(processor="checkout", settle_ms=50, webhook_drop_rate=1.0)
    payment_id, _ = _accepted_refund(csim)
    wait_for(lambda: ledger(csim)[0]["status"] == "succeeded", timeout=10)
    assert checkout_receiver.all() == []
    assert read(csim, f"/payments/{payment_id}").json()["status"] == "Partially Refunded"
