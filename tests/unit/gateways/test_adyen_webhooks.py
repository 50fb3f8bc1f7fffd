"""Adyen notifications: items signed by the official SDK's helper (Adyen 16.0.0, Adyen.util) are accepted
one by one; tampered, wrongly keyed and unsigned items are refused on their own; every eventCode and
success combination maps as the tables say."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification
from adyen_helpers import HMAC_KEY, MERCHANT, REFUND_ID, REFUND_PSP, make_creds, notification_item

from refundwatch.gateways.adyen import AdyenGateway
from refundwatch.gateways.adyen import transformers as tx
from refundwatch.gateways.base import ErrorCode, GatewayStatus, WebhookVerificationError

GATEWAY = AdyenGateway()
OTHER_KEY = "A" * 64


def signed(item: dict[str, Any], key: str = HMAC_KEY) -> dict[str, Any]:
    item = copy.deepcopy(item)
    unsigned = {k: v for k, v in item.items() if k != "additionalData"}
    item["additionalData"] = {
        **item.get("additionalData", {}),
        "hmacSignature": generate_notification_sig(unsigned, key).decode(),
    }
    return item


def delivery(*items: dict[str, Any]) -> bytes:
    return json.dumps(
        {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
    ).encode()


def test_sdk_signed_items_are_accepted() -> None:
    items = [signed(notification_item()), signed(notification_item(eventCode="REFUND_FAILED"))]
    verified = GATEWAY.verify_items(make_creds(), {}, delivery(*items))
    assert [item.error for item in verified] == [None, None]
    for item in items:  # the SDK's verifier agrees
        assert is_valid_hmac_notification(item, HMAC_KEY) is True
    GATEWAY.verify_webhook(make_creds(), {}, delivery(*items))
    # Each payload is a delivery of one item that parse_webhook reads.
    events = [GATEWAY.parse_webhook(item.payload) for item in verified]
    assert [[e.event_type for e in evs] for evs in events] == [["REFUND"], ["REFUND_FAILED"]]


def test_bad_items_are_refused_one_by_one() -> None:
    good = signed(notification_item())
    tampered = signed(notification_item(pspReference="993617894906499B"))
    tampered["amount"] = {"currency": "EUR", "value": 250000}
    wrong_key = signed(notification_item(pspReference="993617894906500C"), OTHER_KEY)
    unsigned = notification_item(pspReference="993617894906511D")
    verified = GATEWAY.verify_items(make_creds(), {}, delivery(good, tampered, wrong_key, unsigned))
    assert [item.error for item in verified] == [
        None,
        "hmacSignature does not match",
        "hmacSignature does not match",
        "missing hmacSignature",
    ]
    # The SDK agrees on the first three, and says None (not False) for the unsigned one: only True is
    # valid, and our verifier refuses it.
    assert is_valid_hmac_notification(tampered, HMAC_KEY) is False
    assert is_valid_hmac_notification(wrong_key, HMAC_KEY) is False
    assert (
        is_valid_hmac_notification({k: v for k, v in unsigned.items() if k != "additionalData"}, HMAC_KEY)
        is None
    )
    with pytest.raises(WebhookVerificationError, match="item 1"):
        GATEWAY.verify_webhook(make_creds(), {}, delivery(good, tampered))


def test_signing_string_matches_the_sdk_with_missing_fields() -> None:
    item = notification_item()
    del item["originalReference"], item["reason"]
    unsigned = {k: v for k, v in item.items() if k != "additionalData"}
    assert tx.item_signature(unsigned, HMAC_KEY) == generate_notification_sig(unsigned, HMAC_KEY).decode()
    assert tx.signing_string(unsigned) == f"{REFUND_PSP}::{MERCHANT}:{REFUND_ID}:2500:EUR:REFUND:true"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"notificationItems": []}', b'{"notificationItems": [{"x": 1}]}'],
)
def test_malformed_deliveries_are_value_errors(body: bytes) -> None:
    with pytest.raises(tx.MalformedError):  # a ValueError: the webhook service answers 400
        GATEWAY.verify_items(make_creds(), {}, body)
    with pytest.raises(WebhookVerificationError):
        GATEWAY.verify_webhook(make_creds(), {}, body)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        (basic("adyen", "s3cret"), True),
        (basic("adyen", "wrong"), False),
        (basic("other", "s3cret"), False),
        ({}, False),
        ({"Authorization": "Bearer s3cret"}, False),
        ({"Authorization": "Basic !!!"}, False),
    ],
)
def test_basic_auth_guards_the_whole_delivery(headers: dict[str, str], accepted: bool) -> None:
    creds = make_creds(webhook_username="adyen", webhook_password="s3cret")
    body = delivery(signed(notification_item()))
    if accepted:
        assert [i.error for i in GATEWAY.verify_items(creds, headers, body)] == [None]
    else:
        with pytest.raises(WebhookVerificationError):
            GATEWAY.verify_items(creds, headers, body)


def test_no_hmac_key_refuses_everything() -> None:
    with pytest.raises(WebhookVerificationError, match="hmac_key"):
        GATEWAY.verify_items(make_creds(hmac_key=""), {}, delivery(signed(notification_item())))


# --- mapping ------------------------------------------------------------------------------------------


def event_for(**changes: Any) -> Any:
    (event,) = GATEWAY.parse_webhook(delivery(notification_item(**changes)))
    return event


def test_event_fields() -> None:
    event = event_for(success="false", reason="Insufficient balance on payment")
    assert event.event_id == f"{REFUND_PSP}:REFUND:false"
    assert event.event_type == "REFUND"
    assert event.gateway_refund_id == REFUND_PSP
    assert event.refund_id == REFUND_ID
    assert (event.amount, event.currency) == (2500, "EUR")
    assert event.raw_status == "REFUND success=false"
    assert event.status is GatewayStatus.FAILED
    # Adyen's documented reason for a refund above what is left (errors.REFUND_REASONS).
    assert event.failure_code is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE
    assert event.failure_message == "Insufficient balance on payment"
    assert event.idempotency_key is None


@pytest.mark.parametrize(("key", "status"), sorted(tx.EVENT_STATUS_TABLE.items()))
def test_every_refund_event_entry(key: tuple[str, str], status: GatewayStatus) -> None:
    event_code, success = key
    assert event_for(eventCode=event_code, success=success).status is status


@pytest.mark.parametrize("event_code", sorted(tx.REFUND_EVENT_CODES))
def test_undocumented_success_waits(event_code: str) -> None:
    assert event_for(eventCode=event_code, success="maybe").status is GatewayStatus.PENDING


@pytest.mark.parametrize("event_code", [*sorted(tx.NON_REFUND_EVENT_CODES), "SOMETHING_NEW"])
@pytest.mark.parametrize("success", ["true", "false"])
def test_other_events_change_no_status(event_code: str, success: str) -> None:
    event = event_for(eventCode=event_code, success=success)
    assert event.status is None
    assert event.event_type == event_code


@pytest.mark.parametrize("key", ["modification.action", "modificationAction"])
@pytest.mark.parametrize(
    ("action", "success", "status"),
    [
        ("refund", "true", GatewayStatus.SUCCEEDED),
        ("refund", "false", GatewayStatus.FAILED),
        ("cancel", "true", GatewayStatus.REQUIRES_ACTION),
        ("cancel", "false", GatewayStatus.REQUIRES_ACTION),
    ],
)
def test_cancel_or_refund(key: str, action: str, success: str, status: GatewayStatus) -> None:
    event = event_for(eventCode="CANCEL_OR_REFUND", success=success, additionalData={key: action})
    assert event.status is status
    if action == "cancel":
        assert "cancelled the payment" in (event.raw_status or "")


def test_cancel_or_refund_without_action_needs_a_person() -> None:
    assert event_for(eventCode="CANCEL_OR_REFUND").status is GatewayStatus.REQUIRES_ACTION


def test_the_tables_cover_the_spec_enum() -> None:
    """Every eventCode of Webhooks-v1's NotificationRequestItem enum is in one of the tables."""
    from pathlib import Path

    spec = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "adyen" / "Webhooks-v1.json"
    schema = json.loads(spec.read_text())["components"]["schemas"]["NotificationRequestItem"]
    documented = set(schema["properties"]["eventCode"]["enum"])
    covered = tx.REFUND_EVENT_CODES | tx.NON_REFUND_EVENT_CODES | {tx.CANCEL_OR_REFUND}
    assert documented <= covered
