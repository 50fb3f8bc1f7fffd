"""PayPal's error answers -> the standard vocabulary: every issue the spec lists for the refund call,
walked through the adapter, plus the HTTP statuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from paypal_adapter_helpers import REFUND_PP_ID, answer, error_body, make_creds, make_request

from refundwatch.gateways.base import ErrorCode, GatewayError
from refundwatch.gateways.paypal import PayPalGateway, errors
from refundwatch.gateways.tokens import TOKENS

SPEC = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "paypal" / "payments_payment_v2.json"
GATEWAY = PayPalGateway()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()


def _issues(schema: str) -> list[str]:
    spec = json.loads(SPEC.read_text())
    items = spec["components"]["schemas"][schema]["properties"]["details"]["items"]["anyOf"]
    return [item["properties"]["issue"]["enum"][0] for item in items]


EXPECTED_422 = {
    "CANNOT_BE_ZERO_OR_NEGATIVE": ErrorCode.INVALID_REQUEST,
    "DECIMAL_PRECISION": ErrorCode.INVALID_REQUEST,
    "DECIMALS_NOT_SUPPORTED": ErrorCode.INVALID_REQUEST,
    "INVALID_CURRENCY_CODE": ErrorCode.INVALID_REQUEST,
    "CURRENCY_MISMATCH": ErrorCode.CURRENCY_MISMATCH,
    "CANNOT_BE_NEGATIVE": ErrorCode.INVALID_REQUEST,
    "CAPTURE_FULLY_REFUNDED": ErrorCode.ALREADY_REFUNDED,
    "REFUND_CAPTURE_CURRENCY_MISMATCH": ErrorCode.CURRENCY_MISMATCH,
    "REFUND_NOT_ALLOWED": ErrorCode.DECLINED,
    "REFUND_TIME_LIMIT_EXCEEDED": ErrorCode.DECLINED,
    "REFUND_AMOUNT_EXCEEDED": ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
    "REFUND_AMOUNT_TOO_LOW": ErrorCode.INVALID_REQUEST,
    "REFUND_FAILED_INSUFFICIENT_FUNDS": ErrorCode.DECLINED,
    "PARTIAL_REFUND_NOT_ALLOWED": ErrorCode.INVALID_REQUEST,
    "MAX_NUMBER_OF_REFUNDS_EXCEEDED": ErrorCode.DECLINED,
    "PENDING_CAPTURE": ErrorCode.DECLINED,
    "DUPLICATE_INVOICE_ID": ErrorCode.OUTCOME_UNKNOWN,
    "PAYEE_ACCOUNT_LOCKED_OR_CLOSED": ErrorCode.DECLINED,
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": ErrorCode.DECLINED,
    "PAYEE_ACCOUNT_RESTRICTED": ErrorCode.DECLINED,
    "REFUND_NOT_PERMITTED_DUE_TO_CHARGEBACK": ErrorCode.DECLINED,
    "TRANSACTION_DISPUTED": ErrorCode.DECLINED,
    "PLATFORM_FEE_EXCEEDED": ErrorCode.INVALID_REQUEST,
    "REFUND_IS_RESTRICTED": ErrorCode.DECLINED,
    "PLATFORM_FEE_NOT_ENABLED": ErrorCode.INVALID_REQUEST,
}


def test_every_422_issue_of_the_spec_is_in_the_table_in_order() -> None:
    assert list(errors.REFUND_422_ISSUES) == _issues("captures.refund-422")
    assert dict(errors.REFUND_422_ISSUES) == EXPECTED_422


def test_every_other_answer_issue_of_the_spec_is_in_the_table() -> None:
    for schema in ("captures.refund-400", "401", "403", "404", "409"):
        for issue in _issues(schema):
            assert issue in errors.OTHER_ISSUES, (schema, issue)


@pytest.mark.parametrize(("issue", "code"), sorted(EXPECTED_422.items()))
async def test_each_422_issue_through_the_adapter(issue: str, code: ErrorCode) -> None:
    body = error_body(422, "UNPROCESSABLE_ENTITY", issue)
    async with answer(422, body).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    err = caught.value
    assert err.code is code
    assert err.processor_code == issue
    assert err.status_code == 422
    assert f"UNPROCESSABLE_ENTITY/{issue}" in err.message
    assert "debug_id 90957fca61718" in err.message
    # Only DUPLICATE_INVOICE_ID leaves the outcome open; nothing else is retried.
    assert err.outcome_unknown is (code is ErrorCode.OUTCOME_UNKNOWN)
    assert not err.retryable


@pytest.mark.parametrize(
    ("status", "name", "issue", "code", "retryable"),
    [
        (400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", ErrorCode.INVALID_REQUEST, False),
        (400, "INVALID_REQUEST", "INVALID_PARAMETER_SYNTAX", ErrorCode.INVALID_REQUEST, False),
        (400, "INVALID_REQUEST", "INVALID_STRING_LENGTH", ErrorCode.INVALID_REQUEST, False),
        (400, "INVALID_REQUEST", None, ErrorCode.INVALID_REQUEST, False),
        (401, "AUTHENTICATION_FAILURE", "INVALID_ACCOUNT_STATUS", ErrorCode.AUTH_FAILED, False),
        (403, "NOT_AUTHORIZED", "PERMISSION_DENIED", ErrorCode.AUTH_FAILED, False),
        (404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", ErrorCode.PAYMENT_NOT_FOUND, False),
        (409, "RESOURCE_CONFLICT", "PREVIOUS_REQUEST_IN_PROGRESS", ErrorCode.IDEMPOTENCY_CONFLICT, True),
        (409, "RESOURCE_CONFLICT", None, ErrorCode.IDEMPOTENCY_CONFLICT, True),
        (415, "UNSUPPORTED_MEDIA_TYPE", None, ErrorCode.INVALID_REQUEST, False),
        (422, "UNPROCESSABLE_ENTITY", "SOMETHING_NEW", ErrorCode.DECLINED, False),
        (422, "UNPROCESSABLE_ENTITY", "PAYPAL_REQUEST_ID_PREVIOUSLY_USED", ErrorCode.OUTCOME_UNKNOWN, False),
        (429, "RATE_LIMIT_REACHED", None, ErrorCode.RATE_LIMITED, True),
        (500, "INTERNAL_SERVER_ERROR", None, ErrorCode.GATEWAY_UNAVAILABLE, True),
        (503, "SERVICE_UNAVAILABLE", None, ErrorCode.GATEWAY_UNAVAILABLE, True),
    ],
)
async def test_http_statuses_through_the_adapter(
    status: int, name: str, issue: str | None, code: ErrorCode, retryable: bool
) -> None:
    async with answer(status, error_body(status, name, issue), **{"Retry-After": "7"}).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    err = caught.value
    assert err.code is code
    assert err.retryable is retryable
    assert err.retry_after == 7


async def test_409_is_never_a_failure() -> None:
    body = error_body(409, "RESOURCE_CONFLICT", "PREVIOUS_REQUEST_IN_PROGRESS")
    async with answer(409, body).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    assert caught.value.retryable


async def test_a_5xx_leaves_the_outcome_unknown() -> None:
    async with answer(500, b"").client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.outcome_unknown


async def test_a_404_on_a_read_is_about_the_refund() -> None:
    body = error_body(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID")
    async with answer(404, body).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.get_refund(client, make_creds(), REFUND_PP_ID)
    assert caught.value.code is ErrorCode.INVALID_REQUEST


def test_the_first_known_issue_decides() -> None:
    error = errors.parse_error(
        {
            "name": "UNPROCESSABLE_ENTITY",
            "details": [{"issue": "UNKNOWN_ONE"}, {"issue": "REFUND_AMOUNT_EXCEEDED"}],
        }
    )
    assert errors.map_error(422, error) is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE


def test_odd_error_bodies_do_not_break_parsing() -> None:
    for body in ({}, {"details": "nope"}, {"details": [1, None, {"issue": 5}]}, {"name": 3}):
        error = errors.parse_error(body)
        assert error.issues == ()
        assert errors.map_error(422, error) is ErrorCode.DECLINED
