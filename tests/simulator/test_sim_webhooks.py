"""Signed Stripe webhooks, verified with the official SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import stripe

from .conftest import (
    EU_KEY,
    EU_SECRET,
    US_KEY,
    US_SECRET,
    Simulator,
    WebhookReceiver,
    stripe_client,
    wait_for,
)


def _types(receiver: WebhookReceiver, refund_id: str) -> list[str]:
    return sorted(r.json()["type"] for r in receiver.events(refund_id))


def test_refund_created_is_signed_like_stripe(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_hook", amount=2000)
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(
        params={"payment_intent": "pi_hook", "amount": 500, "metadata": {"order": "o-1"}},
        options={"idempotency_key": "hook-1"},
    )
    [delivery] = wait_for(lambda: webhook_receiver.events(refund.id))
    assert delivery.path == "/webhooks/stripe-eu"
    signature = delivery.headers["Stripe-Signature"]

    event = stripe.Webhook.construct_event(delivery.body, signature, EU_SECRET)
    assert event.type == "refund.created"
    assert event.id.startswith("evt_")
    assert event.object == "event"
    assert event.livemode is False
    assert event.data.object["id"] == refund.id
    assert event.data.object["amount"] == 500
    assert event.data.object["status"] == "succeeded"
    assert event.request is not None
    assert event.request.idempotency_key == "hook-1"
    assert event.request.id == refund.last_response.request_id  # type: ignore[union-attr]
    assert stripe.WebhookSignature.verify_header(delivery.body.decode(), signature, EU_SECRET, tolerance=300)

    # Exactly Stripe's scheme: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>")).
    parts = dict(item.split("=", 1) for item in signature.split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(
        EU_SECRET.encode(), parts["t"].encode() + b"." + delivery.body, hashlib.sha256
    ).hexdigest()
    assert parts["v1"] == expected

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body, signature, US_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body + b" ", signature, EU_SECRET)

    # The receiver records the body before its answer reaches the simulator: wait for that answer.
    [row] = wait_for(lambda: [d for d in wsim.webhooks() if d["event_id"] == event.id and d["status_code"]])
    assert row["type"] == "refund.created"
    assert row["connection"] == "stripe-eu"
    assert row["status_code"] == 200
    assert row["attempts"] == 1
    assert row["state"] == "delivered"


def test_each_connection_gets_its_own_events(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_us", amount=1000, currency="usd")
    refund = stripe_client(wsim.stripe_url, US_KEY).v1.refunds.create(params={"payment_intent": "pi_us"})
    [delivery] = wait_for(lambda: webhook_receiver.events(refund.id))
    assert delivery.path == "/webhooks/stripe-us"
    stripe.Webhook.construct_event(delivery.body, delivery.headers["Stripe-Signature"], US_SECRET)


def test_status_changes_send_updated_and_failed(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_hook_pending", amount=1000)
    wsim.faults(processor="stripe", pending_rate=1.0, fail_later_rate=1.0, settle_ms=150)
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(
        params={"payment_intent": "pi_hook_pending"}
    )
    wait_for(lambda: len(webhook_receiver.events(refund.id)) == 3)
    assert _types(webhook_receiver, refund.id) == ["refund.created", "refund.failed", "refund.updated"]
    events = {
        d.json()["type"]: stripe.Webhook.construct_event(d.body, d.headers["Stripe-Signature"], EU_SECRET)
        for d in webhook_receiver.events(refund.id)
    }
    assert events["refund.created"].data.object["status"] == "pending"
    updated = events["refund.updated"]
    assert updated.data.object["status"] == "failed"
    assert updated.data.previous_attributes is not None
    assert updated.data.previous_attributes["status"] == "pending"
    assert updated.request is not None
    assert updated.request.id is None
    failed = events["refund.failed"].data.object
    assert failed["failure_reason"] in {"expired_or_canceled_card", "lost_or_stolen_card", "declined"}


def test_succeeded_then_failed_sends_failed(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_hook_flip", amount=1000)
    wsim.faults(processor="stripe", fail_later_rate=1.0, settle_ms=150)
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(
        params={"payment_intent": "pi_hook_flip"}
    )
    wait_for(lambda: len(webhook_receiver.events(refund.id)) == 3)
    updated = next(
        d.json() for d in webhook_receiver.events(refund.id) if d.json()["type"] == "refund.updated"
    )
    assert updated["data"]["previous_attributes"] == {"status": "succeeded"}


def test_pending_then_succeeded_sends_updated(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_hook_ok", amount=1000)
    wsim.faults(processor="stripe", pending_rate=1.0, settle_ms=150)
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(params={"payment_intent": "pi_hook_ok"})
    wait_for(lambda: len(webhook_receiver.events(refund.id)) == 2)
    time.sleep(0.3)
    assert _types(webhook_receiver, refund.id) == ["refund.created", "refund.updated"]


def test_failed_deliveries_are_retried(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_retry", amount=1000)
    webhook_receiver.fail_next = 1
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(params={"payment_intent": "pi_retry"})
    [delivery] = wait_for(lambda: webhook_receiver.events(refund.id), timeout=10)
    stripe.Webhook.construct_event(delivery.body, delivery.headers["Stripe-Signature"], EU_SECRET)
    [row] = wait_for(lambda: [d for d in wsim.webhooks() if d["state"] == "delivered"])
    assert row["attempts"] == 2
    assert row["status_code"] == 200


def test_duplicate_deliveries_on_demand(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_dup", amount=1000)
    wsim.faults(processor="stripe", webhook_duplicate_rate=1.0)
    refund = stripe_client(wsim.stripe_url, EU_KEY).v1.refunds.create(params={"payment_intent": "pi_dup"})
    deliveries = wait_for(
        lambda: webhook_receiver.events(refund.id) if len(webhook_receiver.events(refund.id)) == 2 else None
    )
    assert len({json.loads(d.body)["id"] for d in deliveries}) == 1
    for delivery in deliveries:
        stripe.Webhook.construct_event(delivery.body, delivery.headers["Stripe-Signature"], EU_SECRET)


def test_idempotent_replay_sends_no_new_event(wsim: Simulator, webhook_receiver: WebhookReceiver) -> None:
    wsim.payment("pi_replay_hook", amount=1000)
    client = stripe_client(wsim.stripe_url, EU_KEY)
    for _ in range(3):
        client.v1.refunds.create(
            params={"payment_intent": "pi_replay_hook"}, options={"idempotency_key": "once"}
        )
    wait_for(webhook_receiver.events)
    time.sleep(0.3)
    assert len(webhook_receiver.events()) == 1


def test_only_connection_keys_are_accepted(wsim: Simulator) -> None:
    with pytest.raises(stripe.AuthenticationError):
        stripe_client(wsim.stripe_url, "sk_test_not_in_the_file").v1.balance.retrieve()
    assert stripe_client(wsim.stripe_url, EU_KEY).v1.balance.retrieve().object == "balance"
