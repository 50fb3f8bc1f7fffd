"""Refunds that settle later: pending → succeeded/failed, and succeeded refunds that fail later."""

from __future__ import annotations

import pytest
import stripe

from .conftest import Simulator, wait_for


def _status(sim: Simulator, refund_id: str) -> str | None:
    return sim.client().v1.refunds.retrieve(refund_id).status


def test_pending_settles_to_succeeded(sim: Simulator) -> None:
    sim.payment("pi_pending", amount=1000)
    sim.faults(processor="stripe", pending_rate=1.0, settle_ms=200)
    refund = sim.client().v1.refunds.create(params={"payment_intent": "pi_pending", "amount": 300})
    assert refund.status == "pending"
    assert refund.to_dict()["pending_reason"] == "processing"
    assert sim.ledger()[0]["status"] == "pending"
    wait_for(lambda: _status(sim, refund.id) == "succeeded", timeout=5)
    assert sim.ledger()[0]["status"] == "succeeded"


def test_pending_settles_to_failed_and_releases_the_balance(sim: Simulator) -> None:
    sim.payment("pi_pending_fail", amount=1000)
    sim.faults(processor="stripe", pending_rate=1.0, fail_later_rate=1.0, settle_ms=200)
    client = sim.client()
    refund = client.v1.refunds.create(params={"payment_intent": "pi_pending_fail"})
    assert refund.status == "pending"
    # While pending, the amount is held: nothing is left to refund.
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": "pi_pending_fail", "amount": 1})
    assert caught.value.code == "charge_already_refunded"
    wait_for(lambda: _status(sim, refund.id) == "failed", timeout=5)
    failed = client.v1.refunds.retrieve(refund.id)
    assert failed.failure_reason in {"expired_or_canceled_card", "lost_or_stolen_card", "declined"}
    assert isinstance(failed.failure_balance_transaction, str)
    assert sim.ledger()[0]["status"] == "failed"
    # A failed refund no longer counts: the amount can be refunded again.
    sim.faults(processor="stripe", pending_rate=0.0, fail_later_rate=0.0)
    again = client.v1.refunds.create(params={"payment_intent": "pi_pending_fail"})
    assert again.amount == 1000
    assert [row["status"] for row in sim.ledger()] == ["failed", "succeeded"]


def test_succeeded_refund_can_fail_later(sim: Simulator) -> None:
    sim.payment("pi_flip", amount=1000)
    sim.faults(processor="stripe", fail_later_rate=1.0, settle_ms=200)
    refund = sim.client().v1.refunds.create(params={"payment_intent": "pi_flip", "amount": 500})
    assert refund.status == "succeeded"
    wait_for(lambda: _status(sim, refund.id) == "failed", timeout=5)
    assert sim.ledger()[0]["status"] == "failed"


def test_shares_are_roughly_respected(sim: Simulator) -> None:
    sim.payment("pi_mix", amount=1_000_000)
    sim.faults(processor="stripe", pending_rate=0.5, settle_ms=60_000)
    client = sim.client()
    statuses = [
        client.v1.refunds.create(params={"payment_intent": "pi_mix", "amount": 1}).status for _ in range(60)
    ]
    assert 10 <= statuses.count("pending") <= 50
    assert statuses.count("pending") + statuses.count("succeeded") == 60


def test_payments_report_what_is_refundable(sim: Simulator) -> None:
    sim.payment("pi_report", amount=1000)
    sim.client().v1.refunds.create(params={"payment_intent": "pi_report", "amount": 250})
    payments = sim.control("GET", "/payments?processor=stripe").json()
    assert payments == [
        {
            "processor": "stripe",
            "payment_reference": "pi_report",
            "amount": 1000,
            "currency": "EUR",
            "refunded": 250,
            "refundable": 750,
        }
    ]
