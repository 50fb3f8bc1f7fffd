"""AdyenGateway against Adyen-shaped answers served by httpx2.MockTransport.

Every request it sends is validated against Adyen's own OpenAPI document (CheckoutService-v72.json)
with openapi-core; answers follow the spec's examples and the SDK (Adyen 16.0.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from adyen_helpers import (
    API_KEY,
    HMAC_KEY,
    MERCHANT,
    PAYMENT_PSP,
    REFUND_ID,
    REFUND_PSP,
    Recorder,
    answer,
    make_creds,
    make_request,
    received_body,
)
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import InvalidRequestBody, SecurityValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from refundwatch.gateways.adyen import AdyenGateway, errors, live_base_url
from refundwatch.gateways.adyen import transformers as tx
from refundwatch.gateways.base import ErrorCode, GatewayError, GatewayStatus
from refundwatch.gateways.registry import get_gateway

SPEC = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "adyen" / "CheckoutService-v72.json"
GATEWAY = AdyenGateway()


@pytest.fixture(scope="module")
def checkout_spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC))


class SpecRequest:
    """An httpx2 request as openapi-core reads one (openapi_core.protocols.Request)."""

    def __init__(self, request: httpx2.Request, host_url: str) -> None:
        self.method = request.method.lower()
        self.host_url = host_url
        self.path = request.url.path
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )


def validate(spec: OpenAPI, request: httpx2.Request) -> None:
    spec.validate_request(SpecRequest(request, "https://checkout-test.adyen.com"))


def test_registered() -> None:
    gateway = get_gateway("adyen")
    assert isinstance(gateway, AdyenGateway)
    assert gateway.capabilities.reads_refunds is False
    assert gateway.capabilities.first_answer_final is False
    assert gateway.capabilities.webhook_ack == "[accepted]"
    assert gateway.idempotency_retention_seconds == 31 * 24 * 3600


@pytest.mark.parametrize("reason", sorted(tx.REASON_TABLE))
async def test_refund_request_matches_the_spec(checkout_spec: OpenAPI, reason: str) -> None:
    recorder = answer(201, received_body())
    async with recorder.client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request(reason=reason))
    (sent,) = recorder.requests
    validate(checkout_spec, sent)
    assert sent.method == "POST"
    assert str(sent.url) == f"https://checkout-test.adyen.com/v72/payments/{PAYMENT_PSP}/refunds"
    assert sent.headers["X-API-Key"] == API_KEY
    assert sent.headers["Idempotency-Key"] == "rw_0b9f6f3c7d524f0e9a432c1d7e5b8a10"
    assert json.loads(sent.content) == {
        "merchantAccount": MERCHANT,
        "amount": {"value": 2500, "currency": "EUR"},
        "reference": REFUND_ID,
        "merchantRefundReason": tx.REASON_TABLE[reason],
    }
    # "received" is receipt only: pending, never succeeded.
    assert result.status is GatewayStatus.PENDING
    assert result.gateway_refund_id == REFUND_PSP
    assert result.raw_status == "received"
    assert (result.amount, result.currency) == (2500, "EUR")


async def test_health_check_request_matches_the_spec(checkout_spec: OpenAPI) -> None:
    recorder = answer(200, {"paymentMethods": []})
    async with recorder.client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert health.ok
    (sent,) = recorder.requests
    validate(checkout_spec, sent)
    assert sent.url.path == "/v72/paymentMethods"
    assert json.loads(sent.content) == {"merchantAccount": MERCHANT}
    assert sent.headers["X-API-Key"] == API_KEY


async def test_health_check_reports_auth_failure() -> None:
    body = {"status": 401, "errorCode": "000", "message": "HTTP Status Response - Unauthorized"}
    async with answer(401, body).client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert "401" in health.error


def test_the_validator_refuses_a_request_off_the_spec(checkout_spec: OpenAPI) -> None:
    """The witness has teeth: a body field the spec does not know, or no credentials, is refused."""
    url = f"https://checkout-test.adyen.com/v72/payments/{PAYMENT_PSP}/refunds"
    body = {"merchantAccount": MERCHANT, "amount": {"value": 1, "currency": "EUR"}, "metadata": 1}
    with pytest.raises(InvalidRequestBody):
        validate(checkout_spec, httpx2.Request("POST", url, json=body, headers={"X-API-Key": API_KEY}))
    del body["metadata"]
    with pytest.raises(SecurityValidationError):
        validate(checkout_spec, httpx2.Request("POST", url, json=body))


@pytest.mark.parametrize(
    ("base_url", "options", "expected"),
    [
        ("https://checkout-test.adyen.com", {}, "https://checkout-test.adyen.com"),
        ("https://checkout-test.adyen.com", {"live_prefix": "1797a841fbb37ca7-AdyenDemo"}, None),
        ("http://127.0.0.1:8900/adyen", {"live_prefix": "abc"}, "http://127.0.0.1:8900/adyen"),
    ],
)
async def test_base_url(base_url: str, options: dict[str, str], expected: str | None) -> None:
    recorder = answer(201, received_body())
    async with recorder.client() as client:
        await GATEWAY.create_refund(client, make_creds(base_url, **options), make_request())
    want = expected or live_base_url(options["live_prefix"])
    # Host names are case-insensitive (httpx2 lower-cases them).
    assert str(recorder.requests[0].url).lower() == f"{want}/v72/payments/{PAYMENT_PSP}/refunds".lower()
    if expected is None:
        # The SDK's live pattern (Adyen/client.py _determine_api_url).
        assert want == "https://1797a841fbb37ca7-AdyenDemo-checkout-live.adyenpayments.com/checkout"


def test_idempotency_keys_fit_adyen() -> None:
    for key in ("rw_" + "a" * 32, "rw_" + "a" * 32 + "_r7", "rw_" + "a" * 32 + "_r" + "9" * 26):
        assert tx.adyen_idempotency_key(key) == key
    long_key = "rw_" + "a" * 32 + "_r" + "9" * 40
    derived = tx.adyen_idempotency_key(long_key)
    assert len(derived) == 64
    assert derived == tx.adyen_idempotency_key(long_key)
    assert derived != tx.adyen_idempotency_key(long_key + "0")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"amount": {"currency": "EUR", "value": 2400}}, "2400 EUR"),
        ({"amount": {"currency": "USD", "value": 2500}}, "USD"),
        ({"reference": "another"}, "another reference"),
        ({"paymentPspReference": "X" * 16}, "another payment"),
        ({"merchantAccount": "Other"}, "another merchant"),
    ],
)
async def test_an_answer_for_another_refund_is_a_mismatch(changes: dict[str, Any], fragment: str) -> None:
    async with answer(201, received_body(**changes)).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH
    assert fragment in caught.value.message


@pytest.mark.parametrize("body", [{"status": "received"}, {"pspReference": REFUND_PSP}, [], "x", None])
async def test_an_unreadable_2xx_is_an_unknown_outcome(body: Any) -> None:
    async with answer(201, body).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert caught.value.outcome_unknown


async def test_reads_raise_without_any_call() -> None:
    recorder = answer(500)
    async with recorder.client() as client:
        for call in (
            GATEWAY.get_refund(client, make_creds(), REFUND_PSP),
            GATEWAY.find_refund(client, make_creds(), make_request()),
        ):
            with pytest.raises(GatewayError) as caught:
                await call
            assert caught.value.code is ErrorCode.INVALID_REQUEST
            assert "no endpoint to read a refund" in caught.value.message
    assert recorder.requests == []


@pytest.mark.parametrize(
    "changes",
    [{"amount": 0}, {"currency": "EURO"}, {"payment_reference": ""}, {"idempotency_key": ""}],
)
async def test_unsendable_requests_never_reach_adyen(changes: dict[str, Any]) -> None:
    recorder = answer(201, received_body())
    async with recorder.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request(**changes))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert recorder.requests == []


async def test_psp_reference_cannot_walk_the_path() -> None:
    recorder = answer(201, received_body(paymentPspReference="../../x"))
    async with recorder.client() as client:
        await GATEWAY.create_refund(client, make_creds(), make_request(payment_reference="../../x"))
    assert recorder.requests[0].url.raw_path.startswith(b"/v72/payments/..%2F..%2Fx/refunds")


# --- errors -------------------------------------------------------------------------------------------


def error_body(status: int, code: str, message: str, error_type: str = "validation") -> dict[str, Any]:
    return {"status": status, "errorCode": code, "message": message, "errorType": error_type}


ERROR_CASES = [
    (401, error_body(401, "000", "HTTP Status Response - Unauthorized", "security"), ErrorCode.AUTH_FAILED),
    (403, error_body(403, "901", "Invalid Merchant Account", "security"), ErrorCode.AUTH_FAILED),
    (404, {}, ErrorCode.PAYMENT_NOT_FOUND),
    (429, {}, ErrorCode.RATE_LIMITED),
    (
        500,
        error_body(500, "905", "Payment details are not supported", "configuration"),
        ErrorCode.GATEWAY_UNAVAILABLE,
    ),
    (503, None, ErrorCode.GATEWAY_UNAVAILABLE),
    (422, error_body(422, "137", "Invalid amount specified"), ErrorCode.INVALID_REQUEST),
    (
        422,
        error_body(422, "167", "Original pspReference required for this operation"),
        ErrorCode.PAYMENT_NOT_FOUND,
    ),
    (
        422,
        error_body(422, "000", "Amount exceeds the refundable amount"),
        ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE,
    ),
    (
        422,
        error_body(422, "000", "Currency does not match the original payment"),
        ErrorCode.CURRENCY_MISMATCH,
    ),
    (422, error_body(422, "14_030", "Return URL is missing."), ErrorCode.INVALID_REQUEST),
    (422, error_body(422, "704", "request already processed or in progress"), ErrorCode.IDEMPOTENCY_CONFLICT),
    (400, error_body(400, "702", "Unexpected input"), ErrorCode.INVALID_REQUEST),
    (400, None, ErrorCode.INVALID_REQUEST),
]


@pytest.mark.parametrize(("status", "body", "code"), ERROR_CASES)
async def test_error_answers(status: int, body: Any, code: ErrorCode) -> None:
    async with answer(status, body, **{"Retry-After": "7"}).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is code
    assert caught.value.status_code == status
    assert caught.value.retry_after == 7.0
    assert API_KEY not in caught.value.message


def test_every_error_table_entry() -> None:
    for status, code in errors.HTTP_STATUS_ERRORS.items():
        assert errors.map_error(status, errors.AdyenErrorBody(error_code="137")) is code
    for error_code, code in errors.ERROR_CODES.items():
        assert errors.map_error(422, errors.AdyenErrorBody(error_code=error_code, message="x")) is code
    for error_type, code in errors.ERROR_TYPES.items():
        assert errors.map_error(422, errors.AdyenErrorBody(error_type=error_type, message="x")) is code
    assert errors.map_error(502, errors.AdyenErrorBody(error_code="137")) is ErrorCode.GATEWAY_UNAVAILABLE
    assert errors.map_error(418, errors.AdyenErrorBody()) is ErrorCode.INVALID_REQUEST
    assert errors.map_error(302, errors.AdyenErrorBody()) is ErrorCode.PROCESSOR_ERROR


def test_status_table_is_pending_only() -> None:
    assert tx.map_status("received") is GatewayStatus.PENDING
    assert tx.map_status("something new") is GatewayStatus.PENDING
    assert tx.map_status(None) is GatewayStatus.PENDING
    assert set(tx.STATUS_TABLE.values()) == {GatewayStatus.PENDING}


# --- transport failures -------------------------------------------------------------------------------


def raising(exc: Exception) -> Recorder:
    def respond(_: httpx2.Request) -> httpx2.Response:
        raise exc

    return Recorder(respond)


@pytest.mark.parametrize(
    ("exc", "code", "fragment"),
    [
        (httpx2.ConnectError("refused"), ErrorCode.CONNECTION_ERROR, "nothing was sent"),
        (httpx2.ConnectTimeout("slow"), ErrorCode.CONNECTION_ERROR, "nothing was sent"),
        (httpx2.PoolTimeout("full"), ErrorCode.CONNECTION_ERROR, "nothing was sent"),
        (httpx2.ReadTimeout("slow"), ErrorCode.TIMEOUT, "outcome is unknown"),
        (httpx2.ReadError("reset"), ErrorCode.CONNECTION_ERROR, "outcome is unknown"),
        (httpx2.DecodingError("bad gzip"), ErrorCode.OUTCOME_UNKNOWN, "may exist"),
    ],
)
async def test_transport_failures(exc: Exception, code: ErrorCode, fragment: str) -> None:
    async with raising(exc).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is code
    assert fragment in caught.value.message
    assert caught.value.exchange is not None


# --- scrub --------------------------------------------------------------------------------------------


def test_scrub_masks_every_credential() -> None:
    line = (
        f"X-API-Key: {API_KEY} hmac={HMAC_KEY} Authorization: Basic dXNlcjpwYXNz "
        "Authorization: Bearer abc.def.ghi card 4111 1111 1111 1111 and 5555555555554444 "
        '{"x-api-key": "plainsecret"}'
    )
    scrubbed = GATEWAY.scrub(line)
    for secret in (API_KEY, HMAC_KEY, HMAC_KEY.lower(), "dXNlcjpwYXNz", "abc.def.ghi", "plainsecret"):
        assert secret not in scrubbed
    assert "4111" not in scrubbed
    assert "5555555555554444" not in scrubbed
    # A pspReference is no secret: kept readable, digits-only ones too unless they pass Luhn.
    for psp in (PAYMENT_PSP, "8816118280275544"):
        assert GATEWAY.scrub(f"psp {psp}") == f"psp {psp}"
    assert GATEWAY.scrub(HMAC_KEY.lower()) == "[REDACTED]"
    assert HMAC_KEY[:8] not in GATEWAY.scrub(f"key {HMAC_KEY[:40]}")
