"""Adyen's error codes and refund failure reasons, each as its source states it (gateways/adyen/errors.py
names the sources), mapped into refundwatch's error vocabulary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from adyen_helpers import notification_item

from refundwatch.gateways.adyen import AdyenGateway, errors
from refundwatch.gateways.base import ErrorCode, GatewayStatus

GATEWAY = AdyenGateway()


def body(status: int, code: str, message: str, error_type: str = "validation") -> errors.AdyenErrorBody:
    return errors.parse_error(
        {"status": status, "errorCode": code, "message": message, "errorType": error_type}
    )


# Real answers, verbatim from the sources named in errors.py, and what each means for a refund.
DOCUMENTED_ANSWERS = [
    # CheckoutService-v72 examples generic-401, generic-403, generic-400, generic-500.
    (body(401, "000", "HTTP Status Response - Unauthorized", "security"), 401, ErrorCode.AUTH_FAILED),
    (body(403, "901", "Invalid Merchant Account", "security"), 403, ErrorCode.AUTH_FAILED),
    (body(400, "702", 'Unexpected input: ", expected: }'), 400, ErrorCode.INVALID_REQUEST),
    (
        body(500, "905", "Payment details are not supported", "configuration"),
        500,
        ErrorCode.GATEWAY_UNAVAILABLE,
    ),
    # The SDK's own mocks (authorise-error-010, capture-error-167).
    (body(403, "010", "Not allowed", "security"), 403, ErrorCode.AUTH_FAILED),
    (body(422, "167", "Original pspReference required for this operation"), 422, ErrorCode.PAYMENT_NOT_FOUND),
    # A refund answered by Adyen (adyen-ruby-api-library#168).
    (body(422, "100", "Required object 'amount' is not provided."), 422, ErrorCode.INVALID_REQUEST),
    # Adyen's Go SDK integration test against its test environment.
    (body(422, "138", "Unsupported currency specified"), 422, ErrorCode.INVALID_REQUEST),
    # A concurrent duplicate, as Adyen answered it (VTEX known issue 884154).
    (
        body(409, "704", "request already processed or in progress"),
        409,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    (
        body(422, "704", "request already processed or in progress"),
        422,
        ErrorCode.IDEMPOTENCY_CONFLICT,
    ),
    # The documented list (error-codes page, as SmashPig's ExceptionMapper copies it).
    (body(422, "137", "Field 'amount' is not valid."), 422, ErrorCode.INVALID_REQUEST),
    (body(422, "166", "Amount not allowed for this operation"), 422, ErrorCode.INVALID_REQUEST),
    (
        body(422, "906", "Invalid Request: Original pspReference is invalid for this environment!"),
        422,
        ErrorCode.PAYMENT_NOT_FOUND,
    ),
    (
        body(503, "703", "Required resource temporarily unavailable", "internal"),
        503,
        ErrorCode.GATEWAY_UNAVAILABLE,
    ),
    (body(422, "905", "Payment details are not supported", "configuration"), 422, ErrorCode.PROCESSOR_ERROR),
    (
        body(413, "29_100", "The request is larger than the allowed maximum of 1048576 bytes"),
        413,
        ErrorCode.INVALID_REQUEST,
    ),
    # The refund failure reasons Adyen documents, when one comes back as an error message.
    (body(422, "000", "Insufficient balance on payment"), 422, ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE),
    (
        body(422, "000", "Modification in different currency than authorisation"),
        422,
        ErrorCode.CURRENCY_MISMATCH,
    ),
]


@pytest.mark.parametrize(("error", "status", "code"), DOCUMENTED_ANSWERS)
def test_documented_answers(error: errors.AdyenErrorBody, status: int, code: ErrorCode) -> None:
    assert errors.map_error(status, error) is code


def test_every_code_in_the_table_has_a_source() -> None:
    """The table and its source notes stay together: a code added without a source fails here."""
    assert set(errors.ERROR_CODES) == set(errors.ERROR_CODE_SOURCES)
    assert all(errors.ERROR_CODE_SOURCES.values())
    assert "000" not in errors.ERROR_CODES  # generic, many causes: decided by errorType and status


def test_704_is_retried_with_the_same_key() -> None:
    assert errors.ERROR_CODES["704"] is ErrorCode.IDEMPOTENCY_CONFLICT


def event_for(**changes: Any) -> Any:
    item = notification_item(**changes)
    (event,) = GATEWAY.parse_webhook(
        json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}).encode()
    )
    return event


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("Insufficient balance on payment", ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE),
        ("Modification in different currency than authorisation", ErrorCode.CURRENCY_MISMATCH),
        ("Transaction not found", ErrorCode.PAYMENT_NOT_FOUND),
        ("Only possible to refund the full amount", ErrorCode.INVALID_REQUEST),
        ("Transaction hasn't been captured, refund not possible", ErrorCode.DECLINED),
        ("Transaction is expired", ErrorCode.DECLINED),
        ("Operation not allowed", ErrorCode.DECLINED),
        ("", ErrorCode.DECLINED),
    ],
)
def test_a_refused_refund_says_why_in_the_vocabulary(reason: str, code: ErrorCode) -> None:
    event = event_for(success="false", reason=reason)
    assert event.status is GatewayStatus.FAILED
    assert event.failure_code is code
    assert event.failure_message == (reason or None)


def test_a_refund_failed_later_keeps_its_reason() -> None:
    """REFUND_FAILED's documented reason (the Webhooks-v1 example) is a scheme refusal: declined."""
    event = event_for(eventCode="REFUND_FAILED", success="true", reason="Refund Failed")
    assert event.status is GatewayStatus.REVERSED
    assert event.failure_code is ErrorCode.DECLINED
    assert event.failure_message == "Refund Failed"


def test_reason_table_entries_are_documented_reasons() -> None:
    for reason, code in errors.REFUND_REASONS.items():
        assert errors.reason_code(reason) is code
    assert errors.reason_code("Something new") is ErrorCode.DECLINED
