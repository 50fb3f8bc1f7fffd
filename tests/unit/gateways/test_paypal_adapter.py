"""PayPalGateway against PayPal-shaped answers served by httpx2.MockTransport.

Every request it sends to the Payments API is validated against PayPal's own OpenAPI document
(payments_payment_v2.json) with openapi-core. Two limits of that witness, both checked separately below:
openapi-core does not implement the ``oauth2`` security scheme (it warns "Unsupported scheme type" and
skips it), so the bearer header is asserted by hand; and the document fails openapi-spec-validator on an
unrelated schema's e-mail regex (``components/schemas/email``), so it is loaded without that check.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import InvalidRequestBody
from paypal_adapter_helpers import (
    BASE_URL,
    CAPTURE_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    KEY,
    REFUND_ID,
    REFUND_PP_ID,
    TOKEN,
    WEBHOOK_ID,
    PayPalMock,
    answer,
    bearer,
    error_body,
    make_creds,
    make_request,
    refund_body,
)
from werkzeug.datastructures import Headers, ImmutableMultiDict

from refundwatch.connections.services import DEFAULT_BASE_URLS
from refundwatch.gateways.base import ErrorCode, GatewayError, GatewayStatus, WebhookVerificationError
from refundwatch.gateways.paypal import LIVE_BASE_URL, PayPalGateway
from refundwatch.gateways.paypal import transformers as tx
from refundwatch.gateways.registry import get_gateway
from refundwatch.gateways.tokens import TOKENS

SPECS = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "paypal"
GATEWAY = PayPalGateway()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()


@pytest.fixture(scope="module")
def payments_spec() -> OpenAPI:
    return OpenAPI.from_file_path(
        str(SPECS / "payments_payment_v2.json"), config=Config(spec_validator_cls=None)
    )


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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unsupported scheme type")  # oauth2: checked by hand
        spec.validate_request(SpecRequest(request, BASE_URL))
    assert bearer(request) == TOKEN


def test_registered() -> None:
    gateway = get_gateway("paypal")
    assert isinstance(gateway, PayPalGateway)
    assert gateway.capabilities.reads_refunds is True
    assert gateway.capabilities.first_answer_final is True
    assert gateway.capabilities.refundable_queryable is False
    assert gateway.capabilities.webhook_ack is None
    assert gateway.idempotency_retention_seconds == 45 * 24 * 3600
    assert gateway.default_base_url == LIVE_BASE_URL == DEFAULT_BASE_URLS["paypal"]
    assert repr(gateway) == "PayPalGateway()"


# --- the refund request ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(tx.NOTE_TO_PAYER))
async def test_refund_request_matches_the_spec(payments_spec: OpenAPI, reason: str) -> None:
    mock = answer(201, refund_body())
    async with mock.client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request(reason=reason))
    (sent,) = mock.api_calls
    validate(payments_spec, sent)
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/v2/payments/captures/{CAPTURE_ID}/refund"
    assert sent.headers["PayPal-Request-Id"] == KEY
    assert sent.headers["Prefer"] == "return=representation"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.content) == {
        "amount": {"currency_code": "EUR", "value": "10.50"},
        "invoice_id": KEY,
        "custom_id": REFUND_ID,
        "note_to_payer": tx.NOTE_TO_PAYER[reason],
    }
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.gateway_refund_id == REFUND_PP_ID
    assert result.raw_status == "COMPLETED"
    assert (result.amount, result.currency) == (1050, "EUR")
    assert result.idempotency_key == KEY
    assert result.exchange is not None
    assert result.exchange.status_code == 201


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [
        (1500, "JPY", "1500"),  # exponent 0
        (150000, "HUF", "1500"),  # ISO exponent 2, whole forints only at PayPal
        (2500, "TWD", "25"),
        (1050, "KWD", "1.050"),  # exponent 3
        (1, "USD", "0.01"),
        (123456789, "GBP", "1234567.89"),
    ],
)
async def test_amounts_are_written_by_paypals_exponent(
    payments_spec: OpenAPI, amount: int, currency: str, value: str
) -> None:
    body = refund_body(amount={"currency_code": currency, "value": value})
    mock = answer(201, body)
    async with mock.client() as client:
        result = await GATEWAY.create_refund(
            client, make_creds(), make_request(amount=amount, currency=currency)
        )
    (sent,) = mock.api_calls
    validate(payments_spec, sent)
    assert json.loads(sent.content)["amount"] == {"currency_code": currency, "value": value}
    assert (result.amount, result.currency) == (amount, currency)


@pytest.mark.parametrize(("amount", "currency"), [(150050, "HUF"), (2501, "TWD")])
async def test_amounts_paypal_cannot_take_are_never_sent(amount: int, currency: str) -> None:
    mock = answer(201, refund_body())
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request(amount=amount, currency=currency))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert "whole units" in caught.value.message
    assert mock.api_calls == []
    assert mock.token_calls == []


@pytest.mark.parametrize(
    "changes",
    [
        {"idempotency_key": ""},
        {"idempotency_key": "x" * 128},
        {"idempotency_key": "has space"},
        {"amount": 0},
        {"currency": "EURO"},
        {"payment_reference": ""},
        {"refund_id": "r" * 128},
    ],
)
async def test_requests_that_cannot_go_out_as_they_are(changes: dict[str, Any]) -> None:
    mock = answer(201, refund_body())
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request(**changes))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert caught.value.message.startswith("not sent to PayPal")
    assert mock.api_calls == []


async def test_the_capture_id_is_quoted_into_the_path() -> None:
    mock = answer(201, refund_body(links=[]))
    async with mock.client() as client:
        await GATEWAY.create_refund(client, make_creds(), make_request(payment_reference="../refunds/X"))
    (sent,) = mock.api_calls
    assert sent.url.raw_path == b"/v2/payments/captures/..%2Frefunds%2FX/refund"


def test_the_validator_has_teeth(payments_spec: OpenAPI) -> None:
    """A value PayPal's Money pattern refuses, or a note longer than 255, fails the witness."""
    url = f"{BASE_URL}/v2/payments/captures/{CAPTURE_ID}/refund"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for body in (
        {"amount": {"currency_code": "EUR", "value": "10,50"}},
        {"amount": {"currency_code": "EUR", "value": "10.50"}, "note_to_payer": "n" * 256},
        {"amount": {"currency_code": "EURO", "value": "10.50"}},
    ):
        with pytest.raises(InvalidRequestBody):
            validate(payments_spec, httpx2.Request("POST", url, json=body, headers=headers))


# --- statuses -------------------------------------------------------------------------------------------

EXPECTED_STATUS = {
    "COMPLETED": GatewayStatus.SUCCEEDED,
    "PENDING": GatewayStatus.PENDING,
    "FAILED": GatewayStatus.FAILED,
    "CANCELLED": GatewayStatus.CANCELED,
}


def test_the_status_table_is_total_over_the_spec() -> None:
    spec = json.loads((SPECS / "payments_payment_v2.json").read_text())
    documented = spec["components"]["schemas"]["refund_status"]["properties"]["status"]["enum"]
    assert set(tx.STATUS_TABLE) == set(documented) == set(EXPECTED_STATUS)
    reasons = spec["components"]["schemas"]["refund_status_details"]["properties"]["reason"]["enum"]
    assert set(tx.STATUS_REASONS) == set(reasons)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *EXPECTED_STATUS.items(),
        ("REFUNDED", GatewayStatus.PENDING),
        (None, GatewayStatus.PENDING),
        ("", GatewayStatus.PENDING),
    ],
)
async def test_every_status_through_get_refund(
    payments_spec: OpenAPI, raw: str | None, expected: GatewayStatus
) -> None:
    body = refund_body(status=raw)
    if raw is None:
        del body["status"]
    mock = answer(200, body)
    async with mock.client() as client:
        result = await GATEWAY.get_refund(client, make_creds(), REFUND_PP_ID)
    (sent,) = mock.api_calls
    validate(payments_spec, sent)
    assert sent.method == "GET"
    assert str(sent.url) == f"{BASE_URL}/v2/payments/refunds/{REFUND_PP_ID}"
    assert result.status is expected
    assert result.gateway_refund_id == REFUND_PP_ID
    if expected in (GatewayStatus.FAILED, GatewayStatus.CANCELED):
        assert result.failure_code is ErrorCode.DECLINED
    else:
        assert result.failure_code is None


async def test_pending_keeps_its_reason() -> None:
    body = refund_body(status="PENDING", status_details={"reason": "ECHECK"})
    async with answer(201, body).client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    assert result.status is GatewayStatus.PENDING
    assert result.raw_status == "PENDING (ECHECK)"


async def test_failed_with_a_reason_says_why() -> None:
    body = refund_body(status="FAILED", status_details={"reason": "ECHECK"})
    async with answer(201, body).client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    assert result.status is GatewayStatus.FAILED
    assert result.failure_code is ErrorCode.DECLINED
    assert result.failure_message is not None
    assert "eCheck" in result.failure_message
    assert result.processor_code == "ECHECK"


async def test_a_minimal_answer_is_read_back_before_it_is_believed(payments_spec: OpenAPI) -> None:
    def api(request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            return httpx2.Response(201, json={"id": REFUND_PP_ID, "status": "COMPLETED", "links": []})
        return httpx2.Response(200, json=refund_body())

    mock = PayPalMock(api)
    async with mock.client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    _post, get = mock.api_calls
    validate(payments_spec, get)
    assert get.url.path == f"/v2/payments/refunds/{REFUND_PP_ID}"
    assert result.status is GatewayStatus.SUCCEEDED
    assert (result.amount, result.currency) == (1050, "EUR")


# --- the answer is checked against the request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"amount": {"currency_code": "EUR", "value": "10.49"}}, "reported 1049 EUR"),
        ({"amount": {"currency_code": "USD", "value": "10.50"}}, "reported 1050 USD"),
        ({"custom_id": "another-refund"}, "custom_id"),
        ({"invoice_id": "rw_another"}, "invoice_id"),
        (
            {"links": [{"href": f"{BASE_URL}/v2/payments/captures/OTHER", "rel": "up", "method": "GET"}]},
            "another capture",
        ),
    ],
)
async def test_answers_that_do_not_match_need_a_person(changes: dict[str, Any], needle: str) -> None:
    async with answer(201, refund_body(**changes)).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH
    assert needle in caught.value.message
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"status": "COMPLETED"}).encode(),
        json.dumps(refund_body(amount={"value": "x"})).encode(),
    ],
)
async def test_an_unreadable_2xx_leaves_the_outcome_unknown(body: bytes) -> None:
    async with answer(201, body).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert caught.value.outcome_unknown


# --- look-ups, health, webhooks' verification -------------------------------------------------------------


ORDER_ID = "5O190127TN364715T"


def capture_body(order_id: str | None = ORDER_ID) -> dict[str, Any]:
    body: dict[str, Any] = {"id": CAPTURE_ID, "status": "PARTIALLY_REFUNDED"}
    if order_id is not None:
        body["supplementary_data"] = {"related_ids": {"order_id": order_id}}
    return body


def order_body(*refunds: dict[str, Any], capture_id: str = CAPTURE_ID) -> dict[str, Any]:
    payments: dict[str, Any] = {"captures": [{"id": capture_id, "status": "PARTIALLY_REFUNDED"}]}
    if refunds:
        payments["refunds"] = list(refunds)
    return {"id": ORDER_ID, "status": "COMPLETED", "purchase_units": [{"payments": payments}]}


def capture_then_order(capture: dict[str, Any], order: dict[str, Any] | bytes) -> PayPalMock:
    def respond(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith(f"/v2/payments/captures/{CAPTURE_ID}"):
            return httpx2.Response(200, json=capture)
        if request.url.path.endswith(f"/v2/checkout/orders/{ORDER_ID}"):
            content = order if isinstance(order, bytes) else json.dumps(order).encode()
            return httpx2.Response(200, content=content, headers={"Content-Type": "application/json"})
        return httpx2.Response(404, json=error_body(404, "RESOURCE_NOT_FOUND"))

    return PayPalMock(respond)


async def test_find_refund_finds_the_attempts_refund_in_the_captures_order() -> None:
    other = refund_body(id="1JU08902781691411", invoice_id="rw_another_attempt")
    mock = capture_then_order(capture_body(), order_body(other, refund_body()))
    async with mock.client() as client:
        found = await GATEWAY.find_refund(client, make_creds(), make_request())
    assert found is not None
    assert (found.gateway_refund_id, found.status, found.amount) == (
        REFUND_PP_ID,
        GatewayStatus.SUCCEEDED,
        1050,
    )
    assert [r.url.path for r in mock.api_calls] == [
        f"/v2/payments/captures/{CAPTURE_ID}",
        f"/v2/checkout/orders/{ORDER_ID}",
    ]
    assert all(bearer(r) == TOKEN for r in mock.api_calls)


async def test_find_refund_says_none_when_the_order_holds_the_capture_and_no_such_refund() -> None:
    other = refund_body(id="1JU08902781691411", invoice_id="rw_another_attempt")
    for order in (order_body(), order_body(other)):
        async with capture_then_order(capture_body(), order).client() as client:
            assert await GATEWAY.find_refund(client, make_creds(), make_request()) is None


@pytest.mark.parametrize(
    ("capture", "order", "code"),
    [
        # A capture with no order (not made through Orders v2): nothing lists its refunds.
        (capture_body(order_id=None), order_body(), ErrorCode.INVALID_REQUEST),
        # An order that does not show this capture, or cannot be read: it cannot tell.
        (capture_body(), order_body(capture_id="9XW01234AB5678901"), ErrorCode.OUTCOME_UNKNOWN),
        (capture_body(), {"id": ORDER_ID}, ErrorCode.OUTCOME_UNKNOWN),
        (capture_body(), b"not json", ErrorCode.OUTCOME_UNKNOWN),
    ],
)
async def test_find_refund_never_says_none_when_it_cannot_tell(
    capture: dict[str, Any], order: dict[str, Any] | bytes, code: ErrorCode
) -> None:
    async with capture_then_order(capture, order).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.find_refund(client, make_creds(), make_request())
    assert caught.value.code is code


async def test_get_refund_needs_an_id() -> None:
    async with answer(200, refund_body()).client() as client:
        with pytest.raises(GatewayError):
            await GATEWAY.get_refund(client, make_creds(), "")


async def test_health_check_reads_the_connections_webhook() -> None:
    mock = answer(
        200, {"id": WEBHOOK_ID, "url": "https://refunds.example.com/webhooks/pp", "event_types": []}
    )
    async with mock.client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert health.ok
    (sent,) = mock.api_calls
    assert sent.method == "GET"
    assert str(sent.url) == f"{BASE_URL}/v1/notifications/webhooks/{WEBHOOK_ID}"
    assert bearer(sent) == TOKEN
    assert len(mock.token_calls) == 1


async def test_health_check_fails_for_an_unknown_webhook_id() -> None:
    body = error_body(404, "INVALID_RESOURCE_ID")
    async with answer(404, body).client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert "404" in health.error


async def test_health_check_without_a_webhook_id_sends_nothing() -> None:
    mock = answer(200, {})
    async with mock.client() as client:
        health = await GATEWAY.health_check(client, make_creds(webhook_id=""))
    assert not health.ok
    assert mock.api_calls == []
    assert mock.token_calls == []


def test_webhook_signatures_are_not_checked_here_yet() -> None:
    with pytest.raises(WebhookVerificationError):
        GATEWAY.verify_webhook(make_creds(), {}, b"{}")
    with pytest.raises(WebhookVerificationError):
        GATEWAY.verify_items(make_creds(), {}, b"{}")


def test_webhook_verification_mode() -> None:
    assert GATEWAY.webhook_verification(make_creds()) == "certificate"
    assert GATEWAY.webhook_verification(make_creds(webhook_verification="api")) == "api"
    assert GATEWAY.webhook_verification(make_creds(webhook_verification="API ")) == "certificate"


async def test_access_token_for_other_callers() -> None:
    mock = answer(200, {})
    async with mock.client() as client:
        assert await GATEWAY.access_token(client, make_creds()) == TOKEN


# --- connection fields and amounts ------------------------------------------------------------------------

GOOD_FIELDS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "webhook_id": WEBHOOK_ID}


@pytest.mark.parametrize(
    "extra", [{}, {"webhook_verification": "certificate"}, {"webhook_verification": "api"}]
)
def test_good_fields(extra: dict[str, str]) -> None:
    GATEWAY.check_fields(GOOD_FIELDS | extra)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"client_id": "has:colon"}, "client_id"),
        ({"client_id": "has space"}, "client_id"),
        ({"client_secret": "tab\tin"}, "client_secret"),
        ({"client_secret": "s" * 257}, "client_secret"),
        ({"webhook_id": "WH-1234"}, "webhook_id"),
        ({"webhook_id": "W" * 51}, "webhook_id"),
        ({"webhook_verification": "offline"}, "webhook_verification"),
    ],
)
def test_bad_fields_are_refused_in_one_line(changes: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as caught:
        GATEWAY.check_fields(GOOD_FIELDS | changes)
    assert "\n" not in str(caught.value)
    assert CLIENT_SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("amount", "currency", "refused"),
    [
        (150000, "HUF", False),
        (150050, "HUF", True),
        (2500, "TWD", False),
        (2501, "TWD", True),
        (1501, "JPY", False),
        (1051, "EUR", False),
        (1051, "KWD", False),
    ],
)
def test_check_amount(amount: int, currency: str, refused: bool) -> None:
    refusal = GATEWAY.check_amount(amount, currency)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert "1,500" not in refusal  # plain figures
        assert currency in refusal


def test_check_amount_suggests_the_nearest_whole_amounts() -> None:
    assert GATEWAY.check_amount(150050, "HUF") == (
        "PayPal takes HUF only in whole units: 1500.50 HUF cannot be refunded there "
        "(refund 1500.00 or 1501.00)"
    )
