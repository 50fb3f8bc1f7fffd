"""Stripe webhook verification and parsing, with signatures made by the official SDK (stripe 16.1.0).

``stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=...)`` exists in 16.1.0, so
every signature here comes from it; ``Webhook.construct_event`` is a second witness for parsing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import stripe

from refundwatch.gateways.base import Credentials, ErrorCode, GatewayStatus, WebhookVerificationError
from refundwatch.gateways.stripe import WEBHOOK_TOLERANCE_SECONDS, StripeGateway
from refundwatch.gateways.stripe import transformers as tx
from refundwatch.lib.crypto import Secret

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "whsec_test_5v8a9Kq2ZmCurrent"
OLD_SECRET = "whsec_test_1a2b3c4d5ePrevious"
NOW = 1_721_948_600

gateway = StripeGateway()


def creds(secret: str = SECRET) -> Credentials:
    secrets = {"api_key": Secret("sk_test_x")} | ({"webhook_secret": Secret(secret)} if secret else {})
    return Credentials("stripe-test", "stripe", "https://api.stripe.com", secrets)


def event(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "stripe_event_refund_updated.json").read_text())
    refund_changes = changes.pop("refund", {})
    data.update(changes)
    if refund_changes:
        data["data"]["object"].update(refund_changes)
    return data


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def sdk_header(body: bytes, secret: str = SECRET, timestamp: int = NOW) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp))


def verify(headers: dict[str, str], body: bytes, *, secret: str = SECRET, now: float = NOW) -> None:
    gateway.verify_webhook(creds(secret), headers, body, now=now)


# --- verification -------------------------------------------------------------------------------------

BODY = body_of(event())


@pytest.mark.parametrize("name", ["Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE"])
def test_sdk_signature_verifies_under_any_header_case(name: str) -> None:
    verify({name: sdk_header(BODY), "Content-Type": "application/json"}, BODY)


def test_non_ascii_body_is_signed_over_its_raw_bytes() -> None:
    data = event(refund={"metadata": {"refundwatch_refund_id": "rf_0001", "note": "Zoë, 東京"}})
    body = json.dumps(data, ensure_ascii=False).encode()
    assert "Zoë".encode() in body
    verify({"Stripe-Signature": sdk_header(body)}, body)


def test_any_v1_may_match_during_secret_rotation() -> None:
    old = sdk_header(BODY, OLD_SECRET).split(",")[1]
    new = sdk_header(BODY, SECRET).split(",")[1]
    header = f"t={NOW},{old},{new}"
    verify({"Stripe-Signature": header}, BODY, secret=SECRET)
    verify({"Stripe-Signature": header}, BODY, secret=OLD_SECRET)
    with pytest.raises(WebhookVerificationError):
        verify({"Stripe-Signature": header}, BODY, secret="whsec_unrelated")


def test_other_schemes_and_spaces_are_tolerated() -> None:
    t, v1 = sdk_header(BODY).split(",")
    verify(
        {"Stripe-Signature": f"{t}, v0={'6f' * 32}, {v1}"},
        BODY,
    )


@pytest.mark.parametrize("offset", [-WEBHOOK_TOLERANCE_SECONDS, WEBHOOK_TOLERANCE_SECONDS, 0])
def test_timestamps_inside_the_tolerance(offset: int) -> None:
    verify({"Stripe-Signature": sdk_header(BODY, timestamp=NOW + offset)}, BODY)


@pytest.mark.parametrize("offset", [-WEBHOOK_TOLERANCE_SECONDS - 1, WEBHOOK_TOLERANCE_SECONDS + 1, -86_400])
def test_stale_or_future_timestamps_are_rejected(offset: int) -> None:
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify({"Stripe-Signature": sdk_header(BODY, timestamp=NOW + offset)}, BODY)


def test_now_defaults_to_the_clock() -> None:
    header = sdk_header(BODY, timestamp=int(time.time()))
    gateway.verify_webhook(creds(), {"Stripe-Signature": header}, BODY)
    with pytest.raises(WebhookVerificationError):
        gateway.verify_webhook(creds(), {"Stripe-Signature": sdk_header(BODY)}, BODY)  # NOW is long past


def test_tampered_body_is_rejected() -> None:
    header = sdk_header(BODY)
    tampered = BODY.replace(b'"amount": 1050', b'"amount": 9050')
    assert tampered != BODY
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify({"Stripe-Signature": header}, tampered)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify({"Stripe-Signature": sdk_header(BODY, OLD_SECRET)}, BODY)


def test_timestamp_is_part_of_the_signed_message() -> None:
    v1 = sdk_header(BODY).split(",")[1]
    with pytest.raises(WebhookVerificationError):
        verify({"Stripe-Signature": f"t={NOW + 1},{v1}"}, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "application/json"},
        {"Stripe-Signature": ""},
        {"Stripe-Signature": "garbage"},
        {"Stripe-Signature": "v1=abc"},
        {"Stripe-Signature": f"t={NOW}"},
        {"Stripe-Signature": f"t=abc,v1={'0' * 64}"},
        {"Stripe-Signature": f"t={NOW},t={NOW},v1={'0' * 64}"},
        {"Stripe-Signature": f"t=-{NOW},v1={'0' * 64}"},
        {"Stripe-Signature": f"t={'9' * 40},v1={'0' * 64}"},
        {"Stripe-Signature": f"t=١٢٣,v1={'0' * 64}"},  # non-ASCII digits
    ],
)
def test_missing_or_malformed_header(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookVerificationError) as info:
        verify(headers, BODY)
    assert len(str(info.value)) < 100


def test_duplicate_headers_are_rejected() -> None:
    header = sdk_header(BODY)
    with pytest.raises(WebhookVerificationError, match="more than one"):
        verify({"Stripe-Signature": header, "stripe-signature": header}, BODY)


def test_unconfigured_secret_rejects_everything() -> None:
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify({"Stripe-Signature": sdk_header(BODY, "")}, BODY, secret="")


@pytest.mark.parametrize(
    ("body", "secret", "age"),
    [
        (BODY, SECRET, 0),
        (BODY, SECRET, WEBHOOK_TOLERANCE_SECONDS - 5),
        (BODY + b" ", SECRET, 0),
        (BODY, OLD_SECRET, 0),
        (BODY, SECRET, WEBHOOK_TOLERANCE_SECONDS + 5),
    ],
)
def test_verdicts_agree_with_the_sdk(body: bytes, secret: str, age: int) -> None:
    """Same verdict as the SDK's own verify_header (which judges age against the real clock)."""
    now = int(time.time())
    header = sdk_header(BODY, secret, now - age)
    try:
        stripe.WebhookSignature.verify_header(body, header, SECRET, tolerance=WEBHOOK_TOLERANCE_SECONDS)
        sdk_ok = True
    except stripe.SignatureVerificationError:
        sdk_ok = False
    try:
        gateway.verify_webhook(creds(), {"Stripe-Signature": header}, body, now=now)
        ours_ok = True
    except WebhookVerificationError:
        ours_ok = False
    assert sdk_ok is ours_ok


# --- parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "raw", "expected"),
    [
        ("refund.created", "pending", GatewayStatus.PENDING),
        ("refund.created", "requires_action", GatewayStatus.REQUIRES_ACTION),
        ("refund.updated", "succeeded", GatewayStatus.SUCCEEDED),
        ("refund.updated", "canceled", GatewayStatus.CANCELED),
        ("refund.updated", "failed", GatewayStatus.FAILED),
        ("refund.updated", "mystery", GatewayStatus.PENDING),
        ("charge.refund.updated", "succeeded", GatewayStatus.SUCCEEDED),
        ("charge.refund.updated", "failed", GatewayStatus.FAILED),
    ],
)
def test_refund_events(event_type: str, raw: str, expected: GatewayStatus) -> None:
    (parsed,) = gateway.parse_webhook(body_of(event(type=event_type, refund={"status": raw})))
    assert parsed.event_id == "evt_1Pgc76B7WZ01zgkWwyRHS12y"
    assert parsed.event_type == event_type
    assert parsed.gateway_refund_id == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert parsed.refund_id == "rf_0001"
    assert (parsed.status, parsed.raw_status) == (expected, raw)
    assert (parsed.amount, parsed.currency) == (1050, "EUR")


def test_refund_failed_event_is_failed_with_details() -> None:
    data = event(type="refund.failed", refund={"status": "failed", "failure_reason": "lost_or_stolen_card"})
    (parsed,) = gateway.parse_webhook(body_of(data))
    assert parsed.status is GatewayStatus.FAILED
    assert parsed.failure_code is ErrorCode.DECLINED
    assert parsed.processor_code == "lost_or_stolen_card"
    assert parsed.failure_message == "the card was reported lost or stolen"


def test_refund_failed_wins_over_a_stale_object_status() -> None:
    (parsed,) = gateway.parse_webhook(body_of(event(type="refund.failed", refund={"status": "succeeded"})))
    assert parsed.status is GatewayStatus.FAILED
    assert parsed.failure_message == "Stripe reported an unknown failure"


def test_refund_without_our_metadata() -> None:
    (parsed,) = gateway.parse_webhook(body_of(event(refund={"metadata": {}})))
    assert parsed.refund_id is None
    assert parsed.gateway_refund_id == "re_1Pgc72B7WZ01zgkWqPvrRrPE"


@pytest.mark.parametrize(
    "event_type", ["charge.refunded", "payment_intent.succeeded", "charge.dispute.created"]
)
def test_other_events_change_no_status(event_type: str) -> None:
    (parsed,) = gateway.parse_webhook(body_of(event(type=event_type)))
    assert (parsed.event_id, parsed.event_type) == ("evt_1Pgc76B7WZ01zgkWwyRHS12y", event_type)
    assert parsed.status is None
    assert parsed.gateway_refund_id is None
    assert parsed.refund_id is None


def test_parse_agrees_with_the_sdk() -> None:
    header = sdk_header(BODY, timestamp=int(time.time()))
    sdk_event = stripe.Webhook.construct_event(BODY, header, SECRET)
    (parsed,) = gateway.parse_webhook(BODY)
    assert (parsed.event_id, parsed.event_type) == (sdk_event.id, sdk_event.type)
    refund = sdk_event.data.object
    assert parsed.gateway_refund_id == refund["id"]
    assert tx.map_status(refund["status"]) is parsed.status
    assert parsed.currency == refund["currency"].upper()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"event"',
        body_of({k: v for k, v in event().items() if k != "id"}),
        body_of({k: v for k, v in event().items() if k != "type"}),
        body_of(event(object="v2.core.event")),
        body_of(event(data=None)),
        body_of(event(data={"object": "re_1"})),
        body_of(event(data={"object": {"object": "charge", "id": "ch_1"}})),
        body_of(event(refund={"amount": None})),
        body_of(event(refund={"id": None})),
    ],
)
def test_malformed_events_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"^(webhook body|event) ") as info:
        gateway.parse_webhook(body)
    assert len(str(info.value)) < 120
