"""Checkout.com's error answers, walked one by one through the adapter: every 422 error code of the table,
the error types, every HTTP status the refund endpoint documents (401, 403, 404, 422, 502) and the ones
every API answers (409, 429 with Retry-After, 5xx). Only a 5xx, a timeout or an unreadable answer leaves
the outcome unknown; each refusal is final and never retried; 409 and 429 are retried."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from checkout_adapter_helpers import SECRET_KEY, CheckoutMock, answer, error_body, make_creds, make_request

from refundwatch.gateways.base import ErrorCode, GatewayError
from refundwatch.gateways.checkout import CheckoutGateway, errors

GATEWAY = CheckoutGateway()


async def refund_error(status: int, body: Any = None, headers: dict[str, str] | None = None) -> GatewayError:
    async with answer(status, body, headers).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    return caught.value


@pytest.mark.parametrize(("code", "expected"), sorted(errors.REFUND_422_CODES.items()))
@pytest.mark.parametrize("error_type", ["request_invalid", "processing_error"])
async def test_every_422_code_maps_as_the_table_says(code: str, expected: ErrorCode, error_type: str) -> None:
    err = await refund_error(422, error_body(code, error_type=error_type))
    assert err.code is expected
    assert err.processor_code == code
    assert err.status_code == 422
    assert f"{error_type}/{code}" in err.message
    assert "request_id 0HL80RJLS76I7" in err.message
    assert not err.retryable
    assert not err.outcome_unknown


def test_the_table_holds_the_codes_the_brief_names() -> None:
    assert errors.REFUND_422_CODES["refund_amount_exceeds_balance"] is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE
    assert errors.REFUND_422_CODES["refund_authorization_declined"] is ErrorCode.DECLINED


async def test_the_first_known_code_decides() -> None:
    err = await refund_error(
        422, error_body("something_new", "refund_amount_exceeds_balance", "amount_invalid")
    )
    assert err.code is ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE
    assert err.processor_code == "something_new"


@pytest.mark.parametrize(("error_type", "expected"), sorted(errors.ERROR_TYPES.items()))
async def test_unknown_codes_are_decided_by_the_error_type(error_type: str, expected: ErrorCode) -> None:
    err = await refund_error(422, error_body("a_code_nobody_documented", error_type=error_type))
    assert err.code is expected
    assert not err.retryable
    assert not err.outcome_unknown


@pytest.mark.parametrize("body", [None, {}, {"error_codes": "not a list"}, error_body(error_type="other")])
async def test_a_bare_422_is_an_invalid_request(body: Any) -> None:
    err = await refund_error(422, body)
    assert err.code is ErrorCode.INVALID_REQUEST
    assert not err.outcome_unknown


@pytest.mark.parametrize(("status", "expected"), sorted(errors.HTTP_STATUS_ERRORS.items()))
async def test_every_http_status_maps_as_the_table_says(status: int, expected: ErrorCode) -> None:
    err = await refund_error(status)
    assert err.code is expected
    assert err.status_code == status
    assert SECRET_KEY not in err.message


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(401, False), (403, False), (404, False), (409, True), (429, True), (400, False), (415, False)],
)
async def test_refusals_are_final_and_conflicts_retried(status: int, retryable: bool) -> None:
    err = await refund_error(status)
    assert err.retryable is retryable
    assert not err.outcome_unknown


async def test_403_is_refund_not_allowed() -> None:
    err = await refund_error(403)
    assert err.code is ErrorCode.DECLINED
    assert "refund not allowed" in err.message


async def test_429_honours_retry_after() -> None:
    err = await refund_error(429, headers={"Retry-After": "7"})
    assert err.code is ErrorCode.RATE_LIMITED
    assert err.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_leaves_the_outcome_unknown(status: int) -> None:
    """Only 2xx answers are cached: the refund may have executed. Never a refusal: looked up first."""
    err = await refund_error(status, {"error": "upstream"})
    assert err.code is ErrorCode.GATEWAY_UNAVAILABLE
    assert err.outcome_unknown
    assert err.retryable


@pytest.mark.parametrize("status", [418, 451, 499])
async def test_other_4xx_are_invalid_requests(status: int) -> None:
    assert (await refund_error(status)).code is ErrorCode.INVALID_REQUEST


def test_other_statuses_are_processor_errors() -> None:
    assert errors.map_error(302, errors.CheckoutErrorBody()) is ErrorCode.PROCESSOR_ERROR


async def test_the_request_id_header_is_kept_when_the_body_has_none() -> None:
    mock = CheckoutMock(lambda request: httpx2.Response(404, headers={"Cko-Request-Id": "req_123"}))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert "request_id req_123" in caught.value.message
    assert "payment not found" in caught.value.message
