"""Adyen's notifications: the asynchronous life of a refund, checked against Adyen's Webhooks spec
(jsonschema) and the Adyen SDK's own HMAC verification."""

from __future__ import annotations

import base64
import copy
from typing import Any

import httpx2
from Adyen.util import generate_notification_sig, is_valid_hmac_notification

from .adyen_receiver import AdyenReceiver, Notification
from .adyen_schema import validate_notification
from .conftest import (
    ADYEN_HMAC,
    ADYEN_KEY,
    ADYEN_MERCHANT,
    ADYEN_US_HMAC,
    ADYEN_US_KEY,
    ADYEN_US_MERCHANT,
    ADYEN_WEBHOOK_PASSWORD,
    ADYEN_WEBHOOK_USER,
    Simulator,
    adyen_payment,
    wait_for,
)


def refund(
    sim: Simulator,
    psp: str,
    value: int,
    reference: str = "order-1",
    key: str = ADYEN_KEY,
    merchant: str = ADYEN_MERCHANT,
) -> str:
    body = {
        "merchantAccount": merchant,
        "amount": {"value": value, "currency": "EUR"},
        "reference": reference,
    }
    response = sim.http.post(
        f"{sim.url}/adyen/v72/payments/{psp}/refunds", json=body, headers={"X-API-Key": key}
    )
    assert response.status_code == 201, response.text
    refund_psp: str = response.json()["pspReference"]
    return refund_psp


# Documented refund error messages (Adyen's RefundWithData result file) that name no particular cause.
REFUSAL_REASONS = {"Transaction is expired", "Operation not allowed", "Operation failed"}


def ledger_status(sim: Simulator, refund_psp: str) -> str:
    rows = [row for row in sim.ledger("adyen") if row["gateway_refund_id"] == refund_psp]
    status: str = rows[0]["status"]
    return status


def check(notifications: list[Notification], hmac_key: str) -> None:
    """Every delivery validates against Adyen's spec; every item's signature is Adyen's."""
    for note in notifications:
        assert note.headers["Content-Type"].startswith("application/json")
        body = note.json()
        validate_notification(body)
        assert body["live"] == "false"
        for item in note.items():
            assert is_valid_hmac_notification(item, hmac_key) is True
            unsigned = {k: v for k, v in item.items() if k != "additionalData"}
            expected = generate_notification_sig(unsigned, hmac_key).decode()
            assert item["additionalData"]["hmacSignature"] == expected


def delivered(sim: Simulator) -> list[dict[str, Any]]:
    """The deliveries, once every one is acknowledged (the receiver records a body before its answer
    reaches the simulator)."""

    def done() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = sim.control("GET", "/webhooks?processor=adyen").json()
        return rows if rows and all(d["state"] == "delivered" for d in rows) else []

    return list(wait_for(done))


def items_of(receiver: AdyenReceiver, refund_psp: str, count: int) -> list[dict[str, Any]]:
    return list(wait_for(lambda: (found := receiver.items(refund_psp)) and len(found) >= count and found))


def test_refund_succeeds_with_a_signed_refund_notification(
    asim: Simulator, adyen_receiver: AdyenReceiver
) -> None:
    asim.faults(processor="adyen", settle_ms=100)
    payment = adyen_payment(asim, 10_000)
    refund_psp = refund(asim, payment, 2_500, reference="order-77")
    assert ledger_status(asim, refund_psp) == "pending"  # Adyen's "received" is never final
    (item,) = items_of(adyen_receiver, refund_psp, 1)
    assert {k: v for k, v in item.items() if k not in {"additionalData", "eventDate"}} == {
        "amount": {"currency": "EUR", "value": 2_500},
        "eventCode": "REFUND",
        "merchantAccountCode": ADYEN_MERCHANT,
        "merchantReference": "order-77",
        "originalReference": payment,
        "paymentMethod": "visa",
        "pspReference": refund_psp,
        "reason": "",
        "success": "true",
    }
    note = adyen_receiver.notifications()[0]
    assert note.path == "/webhooks/adyen-eu"
    assert "Authorization" not in note.headers  # this connection has no webhook credentials
    check(adyen_receiver.notifications(), ADYEN_HMAC)
    assert ledger_status(asim, refund_psp) == "succeeded"
    tampered = copy.deepcopy(item)
    tampered["amount"]["value"] = 1
    assert is_valid_hmac_notification(tampered, ADYEN_HMAC) is False


def test_refused_refund_is_a_refund_notification_with_success_false(
    asim: Simulator, adyen_receiver: AdyenReceiver
) -> None:
    asim.faults(processor="adyen", settle_ms=100, pending_rate=1.0, fail_later_rate=1.0)
    payment = adyen_payment(asim, 10_000)
    refund_psp = refund(asim, payment, 10_000)
    (item,) = items_of(adyen_receiver, refund_psp, 1)
    assert (item["eventCode"], item["success"]) == ("REFUND", "false")
    assert item["reason"] in REFUSAL_REASONS
    check(adyen_receiver.notifications(), ADYEN_HMAC)
    assert ledger_status(asim, refund_psp) == "failed"
    asim.faults(processor="adyen", pending_rate=0.0, fail_later_rate=0.0)
    refund(asim, payment, 10_000)  # the refused refund released the balance


def test_refund_failed_after_success(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=100, fail_later_rate=1.0)
    refund_psp = refund(asim, adyen_payment(asim), 3_000)
    first, second = items_of(adyen_receiver, refund_psp, 2)
    assert (first["eventCode"], first["success"]) == ("REFUND", "true")
    assert (second["eventCode"], second["success"]) == ("REFUND_FAILED", "true")
    assert second["reason"] == "Refund Failed"  # the Webhooks-v1 example's reason
    check(adyen_receiver.notifications(), ADYEN_HMAC)
    assert ledger_status(asim, refund_psp) == "failed"


def test_refund_reversed_after_success(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=100, fail_later_rate=1.0, reversal_rate=1.0)
    payment = adyen_payment(asim, 5_000)
    refund_psp = refund(asim, payment, 5_000)
    first, second = items_of(adyen_receiver, refund_psp, 2)
    assert (first["eventCode"], first["success"]) == ("REFUND", "true")
    assert (second["eventCode"], second["success"]) == ("REFUNDED_REVERSED", "true")
    check(adyen_receiver.notifications(), ADYEN_HMAC)
    assert ledger_status(asim, refund_psp) == "reversed"
    payments = asim.control("GET", "/payments?processor=adyen").json()
    assert payments[0]["refundable"] == 5_000  # the reversed money is back on the payment


def test_webhook_credentials_are_sent_as_basic_auth(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=50)
    refund_psp = refund(asim, adyen_payment(asim), 100, key=ADYEN_US_KEY, merchant=ADYEN_US_MERCHANT)
    (item,) = items_of(adyen_receiver, refund_psp, 1)
    assert item["merchantAccountCode"] == ADYEN_US_MERCHANT
    note = adyen_receiver.notifications()[0]
    assert note.path == "/webhooks/adyen-us"
    credentials = base64.b64encode(f"{ADYEN_WEBHOOK_USER}:{ADYEN_WEBHOOK_PASSWORD}".encode()).decode()
    assert note.headers["Authorization"] == f"Basic {credentials}"
    check(adyen_receiver.notifications(), ADYEN_US_HMAC)


def test_items_due_while_a_delivery_is_retried_travel_together(
    asim: Simulator, adyen_receiver: AdyenReceiver
) -> None:
    # Adyen's first retries wait 9 s each: at 0.05 of real time, 0.45 s, long enough for the others.
    asim.faults(processor="adyen", settle_ms=100, webhook_retry_scale=0.05)
    adyen_receiver.fail_next = 2  # the first batch goes through at its third attempt
    payment = adyen_payment(asim, 10_000)
    refunds = [refund(asim, payment, 1_000, reference=f"order-{n}") for n in range(4)]
    wait_for(lambda: all(adyen_receiver.items(psp) for psp in refunds), timeout=20)
    notes = adyen_receiver.notifications()
    assert max(len(note.items()) for note in notes) >= 2
    assert sorted(i["pspReference"] for note in notes for i in note.items()) == sorted(refunds)
    check(notes, ADYEN_HMAC)
    deliveries = delivered(asim)
    assert deliveries[0]["attempts"] == 3


def test_an_answer_without_accepted_is_retried(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=50, webhook_retry_scale=0.01)
    adyen_receiver.fail_with = "unaccepted"  # 200, but not "[accepted]"
    adyen_receiver.fail_next = 1
    refund_psp = refund(asim, adyen_payment(asim), 100)
    items_of(adyen_receiver, refund_psp, 1)
    (delivery,) = delivered(asim)
    assert delivery["attempts"] == 2
    assert len(adyen_receiver.refused) == 1
    assert adyen_receiver.refused[0].body == adyen_receiver.notifications()[0].body


def test_duplicated_and_dropped_notifications(asim: Simulator, adyen_receiver: AdyenReceiver) -> None:
    asim.faults(processor="adyen", settle_ms=50, webhook_duplicate_rate=1.0)
    twice = refund(asim, adyen_payment(asim), 100)
    first, second = items_of(adyen_receiver, twice, 2)
    assert first == second  # the same item, eventDate and signature included: dedupe on it
    asim.faults(processor="adyen", webhook_duplicate_rate=0.0, webhook_drop_rate=1.0)
    lost = refund(asim, adyen_payment(asim), 100)
    wait_for(lambda: ledger_status(asim, lost) == "succeeded")
    deliveries = asim.control("GET", "/webhooks?processor=adyen").json()
    assert all(lost not in d["event_id"] for d in deliveries)


def test_no_notifications_without_a_connections_file(sim: Simulator) -> None:
    sim.faults(processor="adyen", settle_ms=10)
    psp = adyen_payment(sim)
    response = httpx2.post(
        f"{sim.url}/adyen/v72/payments/{psp}/refunds",
        json={"merchantAccount": "AnyMerchant", "amount": {"value": 100, "currency": "EUR"}},
        headers={"X-API-Key": "any-key"},
    )
    assert response.status_code == 201
    wait_for(lambda: sim.ledger("adyen")[0]["status"] == "succeeded")
    assert sim.control("GET", "/webhooks?processor=adyen").json() == []
