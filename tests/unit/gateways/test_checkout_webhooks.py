"""Checkout.com webhooks: Cko-Signature (HMAC-SHA256 of the raw body, lowercase hex, made here with the
standard library as Checkout.com documents it), the optional Authorization header, and the events.

Tampered, wrongly keyed, unsigned and malformed deliveries are refused; every event type of
EventTypesObject.yaml is parsed, and only the three refund events carry a status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from checkout_adapter_helpers import (
    ACTION_ID,
    KEY,
    REFUND_ID,
    SIGNATURE_KEY,
    event_body,
    make_creds,
    sign,
)

from refundwatch.gateways.base import ErrorCode, GatewayStatus, WebhookVerificationError
from refundwatch.gateways.checkout import CheckoutGateway
from refundwatch.gateways.checkout import transformers as tx

SPECS = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "checkout"
GATEWAY = CheckoutGateway()
AUTH = "Bearer a-shared-webhook-secret"


def headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Cko-Signature": sign(body), **extra}


# --- signatures -----------------------------------------------------------------------------------------


def test_a_signed_delivery_is_accepted() -> None:
    body = event_body()
    items = GATEWAY.verify_items(make_creds(), headers(body), body)
    assert [item.payload for item in items] == [body]
    assert items[0].error is None
    assert items[0].replay_id is None
    GATEWAY.verify_webhook(make_creds(), headers(body), body)


def test_header_names_are_case_insensitive() -> None:
    body = event_body()
    GATEWAY.verify_webhook(make_creds(), {"cko-signature": sign(body)}, body)
    GATEWAY.verify_webhook(make_creds(), {"CKO-SIGNATURE": sign(body).upper()}, body)


def test_verification_is_local() -> None:
    """Checkout.com is verified with verify_items alone: the core never asks it to verify remotely."""
    body = event_body()
    assert not GATEWAY.capabilities.verifies_remotely
    assert [item.payload for item in GATEWAY.verify_items(make_creds(), headers(body), body)] == [body]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda body: ({}, body), "missing Cko-Signature"),
        (lambda body: ({"Cko-Signature": ""}, body), "missing Cko-Signature"),
        (lambda body: ({"Cko-Signature": "sha256=" + sign(body)}, body), "malformed"),
        (lambda body: ({"Cko-Signature": sign(body)[:-2]}, body), "malformed"),
        (lambda body: ({"Cko-Signature": sign(body)}, body.replace(b"1050", b"9050")), "does not match"),
        (lambda body: ({"Cko-Signature": sign(body)}, body + b" "), "does not match"),
        (lambda body: ({"Cko-Signature": sign(body, "another-key")}, body), "does not match"),
        (lambda body: ({"Cko-Signature": sign(body, SIGNATURE_KEY.upper())}, body), "does not match"),
    ],
    ids=["unsigned", "empty", "prefixed", "short", "tampered", "extra-byte", "wrong-key", "key-case"],
)
def test_bad_signatures_are_refused(make: Any, needle: str) -> None:
    sent_headers, body = make(event_body())
    with pytest.raises(WebhookVerificationError, match=needle):
        GATEWAY.verify_items(make_creds(), sent_headers, body)


def test_two_signature_headers_are_refused() -> None:
    body = event_body()
    sent = [("Cko-Signature", sign(body)), ("cko-signature", sign(body))]

    class Pairs(dict[str, str]):
        def items(self) -> Any:  # a multi-valued header as a raw header list shows it
            return sent

    with pytest.raises(WebhookVerificationError, match="missing Cko-Signature"):
        GATEWAY.verify_webhook(make_creds(), Pairs(), body)


def test_no_signature_key_configured_refuses_everything() -> None:
    body = event_body()
    with pytest.raises(WebhookVerificationError, match=r"no Checkout\.com webhook_signature_key"):
        GATEWAY.verify_webhook(make_creds(webhook_signature_key=""), headers(body), body)


def test_the_authorization_header_is_checked_when_configured() -> None:
    body = event_body()
    creds = make_creds(webhook_authorization=AUTH)
    GATEWAY.verify_webhook(creds, headers(body, Authorization=AUTH), body)
    GATEWAY.verify_webhook(creds, headers(body, authorization=f" {AUTH} "), body)
    with pytest.raises(WebhookVerificationError, match="missing Authorization"):
        GATEWAY.verify_webhook(creds, headers(body), body)
    with pytest.raises(WebhookVerificationError, match="Authorization header does not match"):
        GATEWAY.verify_webhook(creds, headers(body, Authorization="Bearer guessed"), body)
    # A right Authorization never stands in for the signature.
    with pytest.raises(WebhookVerificationError, match="Cko-Signature"):
        GATEWAY.verify_webhook(creds, {"Authorization": AUTH}, body)


def test_the_authorization_header_is_ignored_when_not_configured() -> None:
    body = event_body()
    GATEWAY.verify_webhook(make_creds(), headers(body, Authorization="anything"), body)


def test_refusals_never_show_a_secret() -> None:
    body = event_body()
    creds = make_creds(webhook_authorization=AUTH)
    for sent in ({"Authorization": "wrong", "Cko-Signature": sign(body)}, {"Authorization": AUTH}):
        with pytest.raises(WebhookVerificationError) as caught:
            GATEWAY.verify_webhook(creds, sent, body)
        assert AUTH not in str(caught.value)
        assert SIGNATURE_KEY not in str(caught.value)
        assert sign(body) not in str(caught.value)


# --- events ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("payment_refunded", GatewayStatus.SUCCEEDED),
        ("payment_refund_declined", GatewayStatus.FAILED),
        ("payment_refund_pending", GatewayStatus.PENDING),
    ],
)
def test_refund_events(event_type: str, status: GatewayStatus) -> None:
    changes: dict[str, Any] = {}
    if status is GatewayStatus.FAILED:
        changes = {"response_code": "20005", "response_summary": "Declined - Do Not Honour"}
    (event,) = GATEWAY.parse_webhook(event_body(event_type, **changes))
    assert event.event_id == "evt_az5sblvku4ge3dwpztvyizgcau"
    assert event.event_type == event_type
    assert event.status is status
    assert event.gateway_refund_id == ACTION_ID
    assert event.refund_id == REFUND_ID
    assert event.idempotency_key == KEY
    assert (event.amount, event.currency) == (1050, "EUR")
    if status is GatewayStatus.FAILED:
        assert event.failure_code is ErrorCode.DECLINED
        assert event.failure_message == "Checkout.com declined the refund: Declined - Do Not Honour"
        assert event.processor_code == "20005"
        assert event.raw_status == "payment_refund_declined 20005"
    else:
        assert event.failure_code is None
        assert event.processor_code is None


def test_every_event_type_of_the_spec_is_in_a_table() -> None:
    listed = yaml.safe_load((SPECS / "EventTypesObject.yaml").read_text())["properties"]["event_types"][
        "example"
    ]
    assert set(listed) == set(tx.EVENT_STATUS) | tx.OTHER_EVENTS
    assert not set(tx.EVENT_STATUS) & tx.OTHER_EVENTS


@pytest.mark.parametrize("event_type", sorted(tx.OTHER_EVENTS | {"payment_something_new"}))
def test_other_events_change_no_refund(event_type: str) -> None:
    (event,) = GATEWAY.parse_webhook(event_body(event_type))
    assert event.status is None
    assert event.event_type == event_type
    assert event.gateway_refund_id is None
    assert event.refund_id is None


def test_the_reference_names_the_refund_when_metadata_is_missing() -> None:
    (event,) = GATEWAY.parse_webhook(event_body(metadata=None))
    assert event.refund_id == REFUND_ID
    assert event.idempotency_key is None


def test_amount_and_currency_are_reported_for_the_core_to_check() -> None:
    (event,) = GATEWAY.parse_webhook(event_body(amount=999, currency="usd"))
    assert (event.amount, event.currency) == (999, "USD")
    (event,) = GATEWAY.parse_webhook(event_body(amount=None, currency=None))
    assert (event.amount, event.currency) == (None, None)


@pytest.mark.parametrize(
    "changes",
    [{"amount": "10.50"}, {"amount": "2000"}, {"amount": 20.5}, {"amount": True}, {"currency": 978}],
)
def test_an_amount_or_currency_that_cannot_be_read_is_malformed(changes: dict[str, Any]) -> None:
    """Not "not reported": the core would apply a success without checking its amount."""
    with pytest.raises(ValueError, match=r"data\.(amount|currency)"):
        GATEWAY.parse_webhook(event_body(**changes))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"type": "payment_refunded"}).encode(), "no id or type"),
        (json.dumps({"id": "evt_1"}).encode(), "no id or type"),
        (json.dumps({"id": "evt_1", "type": "payment_refunded"}).encode(), "no data object"),
        (json.dumps({"id": "evt_1", "type": "payment_refunded", "data": {}}).encode(), "no data.action_id"),
    ],
)
def test_malformed_events_are_refused(body: bytes, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GATEWAY.parse_webhook(body)
