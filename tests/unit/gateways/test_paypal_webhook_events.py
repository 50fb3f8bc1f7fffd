"""PayPalGateway.parse_webhook: PayPal's event envelope (notifications_webhooks_v1.json ``event``) with
a refund resource -> WebhookEvent. Signatures are checked elsewhere (test_paypal_verification*)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from paypal_adapter_helpers import CAPTURE_ID, KEY, REFUND_ID, REFUND_PP_ID, refund_body

from refundwatch.gateways.base import ErrorCode, GatewayStatus
from refundwatch.gateways.paypal import PayPalGateway
from refundwatch.gateways.paypal import transformers as tx

GATEWAY = PayPalGateway()


def event(event_type: str, resource: object = None, **changes: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "WH-2WR32451HC0233532-67976317FL4543714",
        "event_version": "1.0",
        "create_time": "2026-12-06T18:30:00.000Z",
        "resource_type": "refund",
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": "A EUR 10.5 EUR capture payment was refunded",
        "resource": refund_body() if resource is None else resource,
        "links": [
            {
                "href": "https://api.paypal.com/v1/notifications/webhooks-events/WH-2WR32451HC0233532-67976317FL4543714",
                "rel": "self",
                "method": "GET",
            }
        ],
    }
    body.update(changes)
    return json.dumps(body).encode()


def parse(body: bytes) -> Any:
    (parsed,) = GATEWAY.parse_webhook(body)
    return parsed


def test_capture_refunded_completed_is_success_with_every_id() -> None:
    got = parse(event("PAYMENT.CAPTURE.REFUNDED"))
    assert got.event_id == "WH-2WR32451HC0233532-67976317FL4543714"
    assert got.event_type == "PAYMENT.CAPTURE.REFUNDED"
    assert got.status is GatewayStatus.SUCCEEDED
    assert got.gateway_refund_id == REFUND_PP_ID
    assert got.refund_id == REFUND_ID  # custom_id
    assert got.idempotency_key == KEY  # invoice_id
    assert (got.amount, got.currency) == (1050, "EUR")
    assert got.failure_code is None
    assert got.raw_status == "PAYMENT.CAPTURE.REFUNDED COMPLETED"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("PENDING", GatewayStatus.PENDING), ("REFUNDED", GatewayStatus.PENDING), (None, GatewayStatus.PENDING)],
)
def test_capture_refunded_is_success_only_when_the_refund_says_completed(
    status: str | None, expected: GatewayStatus
) -> None:
    resource = refund_body(status=status)
    assert parse(event("PAYMENT.CAPTURE.REFUNDED", resource)).status is expected


def test_refund_pending_keeps_its_reason() -> None:
    resource = refund_body(status="PENDING", status_details={"reason": "ECHECK"})
    got = parse(event("PAYMENT.REFUND.PENDING", resource))
    assert got.status is GatewayStatus.PENDING
    assert got.raw_status == "PAYMENT.REFUND.PENDING PENDING (ECHECK)"
    assert got.failure_code is None


def test_refund_failed_is_failed_whatever_the_resource_says() -> None:
    for status in ("FAILED", "COMPLETED", None):
        got = parse(event("PAYMENT.REFUND.FAILED", refund_body(status=status)))
        assert got.status is GatewayStatus.FAILED  # after success, the core makes it reversed
        assert got.failure_code is ErrorCode.DECLINED
        assert got.processor_code == "PAYMENT.REFUND.FAILED"


def test_capture_reversed_is_reversed() -> None:
    got = parse(event("PAYMENT.CAPTURE.REVERSED"))
    assert got.status is GatewayStatus.REVERSED
    assert got.failure_code is ErrorCode.DECLINED
    assert got.failure_message == "PayPal reversed the refund"
    assert got.gateway_refund_id == REFUND_PP_ID


def test_every_mapped_event_type_is_walked() -> None:
    expected = {
        "PAYMENT.CAPTURE.REFUNDED": GatewayStatus.SUCCEEDED,
        "PAYMENT.REFUND.PENDING": GatewayStatus.PENDING,
        "PAYMENT.REFUND.FAILED": GatewayStatus.FAILED,
        "PAYMENT.CAPTURE.REVERSED": GatewayStatus.REVERSED,
    }
    assert set(tx.EVENT_STATUS) == set(expected)
    for event_type, status in expected.items():
        assert parse(event(event_type)).status is status


@pytest.mark.parametrize(
    "event_type",
    [
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.DENIED",
        "CHECKOUT.ORDER.APPROVED",
        "PAYMENT.REFUND.COMPLETED",
        "X",
    ],
)
def test_other_event_types_change_nothing(event_type: str) -> None:
    got = parse(event(event_type, {"id": CAPTURE_ID, "status": "COMPLETED"}))
    assert got.status is None
    assert got.gateway_refund_id is None
    assert got.refund_id is None
    assert got.event_id.startswith("WH-")


def test_amounts_in_no_decimal_currencies_come_back_in_minor_units() -> None:
    resource = refund_body(amount={"currency_code": "HUF", "value": "1500"})
    got = parse(event("PAYMENT.CAPTURE.REFUNDED", resource))
    assert (got.amount, got.currency) == (150000, "HUF")
    resource = refund_body(amount={"currency_code": "JPY", "value": "1500"})
    assert parse(event("PAYMENT.CAPTURE.REFUNDED", resource)).amount == 1500


def test_a_resource_without_amount_or_ids_still_parses() -> None:
    got = parse(event("PAYMENT.REFUND.FAILED", {"id": REFUND_PP_ID, "status": "FAILED"}))
    assert got.status is GatewayStatus.FAILED
    assert (got.amount, got.currency, got.refund_id, got.idempotency_key) == (None, None, None, None)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"event_type": "PAYMENT.CAPTURE.REFUNDED"}).encode(), "no id"),
        (json.dumps({"id": "WH-1"}).encode(), "no id or event_type"),
        (event("PAYMENT.CAPTURE.REFUNDED", "not an object"), "not a refund"),
        (event("PAYMENT.CAPTURE.REFUNDED", {"status": "COMPLETED"}), "no id"),
        (
            event("PAYMENT.CAPTURE.REFUNDED", refund_body(amount={"currency_code": "EUR", "value": "1,0"})),
            "amount",
        ),
        (event("PAYMENT.CAPTURE.REFUNDED", refund_body(status=3)), "status"),
    ],
)
def test_malformed_events_are_refused(body: bytes, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GATEWAY.parse_webhook(body)


def test_an_event_about_another_resource_type_changes_nothing() -> None:
    capture = {"id": CAPTURE_ID, "status": "REVERSED", "custom_id": "merchant-order-7"}
    got = parse(event("PAYMENT.CAPTURE.REVERSED", capture, resource_type="capture"))
    assert got.status is None
    assert got.gateway_refund_id is None
    assert got.refund_id is None


def test_an_envelope_without_resource_type_is_read_as_a_refund() -> None:
    raw = json.loads(event("PAYMENT.CAPTURE.REFUNDED"))
    del raw["resource_type"]
    assert parse(json.dumps(raw).encode()).status is GatewayStatus.SUCCEEDED
