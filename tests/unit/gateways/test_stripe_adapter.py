"""StripeGateway against Stripe-shaped answers served by httpx2.MockTransport.

Fixtures follow the official SDK (stripe 16.1.0) and Stripe's OpenAPI example refund; the SDK itself is
used as a witness where it can be: its pinned API version, its form encoder, its documented statuses.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
import stripe
from stripe._api_version import _ApiVersion
from stripe._encode import _api_encode

from refundwatch.gateways.base import (
    Credentials,
    ErrorCode,
    GatewayError,
    GatewayStatus,
    RefundRequest,
)
from refundwatch.gateways.registry import get_gateway
from refundwatch.gateways.retry_after import parse_retry_after
from refundwatch.gateways.stripe import STRIPE_API_VERSION, StripeGateway
from refundwatch.gateways.stripe import transformers as tx
from refundwatch.lib.crypto import Secret

FIXTURES = Path(__file__).parent / "fixtures"
BASE_URL = "http://127.0.0.1:8900/stripe"
API_KEY = "sk_test_51HxYzAbCdEfGhIjKlMnOpQrStUv"

Handler = Callable[[httpx2.Request], httpx2.Response]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def refund_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(fixture("stripe_refund.json"))
    body.update(changes)
    return body


def make_creds(**secrets: str) -> Credentials:
    values = {"api_key": API_KEY, "webhook_secret": "whsec_test"} | secrets
    return Credentials(
        connection_name="stripe-test",
        processor="stripe",
        base_url=BASE_URL,
        secrets={k: Secret(v) for k, v in values.items() if v},
        timeout_seconds=3.0,
    )


def make_request(**changes: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": "rf_0001",
        "payment_reference": "pi_3PgafuB7WZ01zgkW0abcdEFG",
        "amount": 1050,
        "currency": "EUR",
        "reason": "requested_by_customer",
        "idempotency_key": "rw-rf_0001",
        "metadata": {"order": "A-1001"},
    } | changes
    return RefundRequest(**values)


class Recorder:
    """A MockTransport handler that answers with one canned response and keeps every request."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.requests[-1].content.decode(), keep_blank_values=True))


def answer(status: int = 200, body: Any = None, *, text: str | None = None, headers: Any = None) -> Recorder:
    def respond(request: httpx2.Request) -> httpx2.Response:
        if text is not None:
            return httpx2.Response(status, text=text, headers=headers)
        return httpx2.Response(status, json=refund_body() if body is None else body, headers=headers)

    return Recorder(respond)


def raising(exc_type: type[Exception]) -> Recorder:
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise exc_type("simulated failure", request=request)  # type: ignore[call-arg]

    return Recorder(respond)


gateway = StripeGateway()


async def create(recorder: Recorder, request: RefundRequest | None = None, **creds: str) -> Any:
    async with recorder.client() as client:
        return await gateway.create_refund(client, make_creds(**creds), request or make_request())


async def create_error(recorder: Recorder, request: RefundRequest | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await create(recorder, request)
    return info.value


# --- identity -----------------------------------------------------------------------------------------


def test_gateway_identity_and_registry() -> None:
    assert gateway.processor == "stripe"
    assert gateway.default_base_url == "https://api.stripe.com"
    assert gateway.secret_fields == ("api_key", "webhook_secret")
    assert gateway.option_fields == ()
    assert isinstance(get_gateway("stripe"), StripeGateway)


def test_pinned_version_is_the_sdks() -> None:
    assert STRIPE_API_VERSION == _ApiVersion.CURRENT == stripe.api_version


# --- request encoding ---------------------------------------------------------------------------------


async def test_payment_intent_refund_request() -> None:
    recorder = answer()
    result = await create(recorder)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/v1/refunds"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Stripe-Version"] == STRIPE_API_VERSION
    assert request.headers["Idempotency-Key"] == "rw-rf_0001"
    assert recorder.form == {
        "payment_intent": "pi_3PgafuB7WZ01zgkW0abcdEFG",
        "amount": "1050",
        "currency": "eur",
        "reason": "requested_by_customer",
        "metadata[order]": "A-1001",
        "metadata[refundwatch_refund_id]": "rf_0001",
        "metadata[refundwatch_idempotency_key]": "rw-rf_0001",
    }
    assert result.status is GatewayStatus.SUCCEEDED
    assert result.gateway_refund_id == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert (result.amount, result.currency, result.raw_status) == (1050, "EUR", "succeeded")


async def test_charge_refund_request() -> None:
    recorder = answer()
    await create(recorder, make_request(payment_reference="ch_1PgafuB7WZ01zgkWXYmPNZs8"))
    assert recorder.form["charge"] == "ch_1PgafuB7WZ01zgkWXYmPNZs8"
    assert "payment_intent" not in recorder.form


def test_form_matches_the_sdk_encoder() -> None:
    """Our metadata[...] keys are exactly what the SDK would send for the same parameters."""
    request = make_request(reason="return", metadata={"order": "A-1001", "note": "box damaged"})
    params = {
        "payment_intent": request.payment_reference,
        "amount": request.amount,
        "currency": "eur",
        "reason": "requested_by_customer",
        "metadata": {
            "order": "A-1001",
            "note": "box damaged",
            "refundwatch_reason": "return",
            "refundwatch_refund_id": "rf_0001",
            "refundwatch_idempotency_key": "rw-rf_0001",
        },
    }
    sdk_pairs = {key: str(value) for key, value in _api_encode(params)}
    assert tx.build_refund_form(request) == sdk_pairs


@pytest.mark.parametrize(
    ("reason", "sent", "kept"),
    [
        ("requested_by_customer", "requested_by_customer", None),
        ("duplicate", "duplicate", None),
        ("fraudulent", "fraudulent", None),
        ("return", "requested_by_customer", "return"),
        ("other", "requested_by_customer", "other"),
    ],
)
def test_reason_mapping(reason: str, sent: str, kept: str | None) -> None:
    form = tx.build_refund_form(make_request(reason=reason))
    assert form["reason"] == sent
    assert form.get("metadata[refundwatch_reason]") == kept


def test_caller_metadata_cannot_replace_the_refund_id_or_the_key() -> None:
    caller = {"refundwatch_refund_id": "someone-else", "refundwatch_idempotency_key": "other-key"}
    form = tx.build_refund_form(make_request(metadata=caller))
    assert form["metadata[refundwatch_refund_id]"] == "rf_0001"
    assert form["metadata[refundwatch_idempotency_key]"] == "rw-rf_0001"


@pytest.mark.parametrize(
    ("amount", "currency", "stripe_amount"),
    [
        (1050, "EUR", "1050"),
        (500, "JPY", "500"),
        (12, "ISK", "1200"),
        (1000, "MGA", "10"),
        (5120, "KWD", "5120"),
    ],
)
def test_amount_in_stripe_units(amount: int, currency: str, stripe_amount: str) -> None:
    form = tx.build_refund_form(make_request(amount=amount, currency=currency))
    assert (form["amount"], form["currency"]) == (stripe_amount, currency.lower())
    assert tx.from_stripe_amount(int(stripe_amount), currency) == amount


@pytest.mark.parametrize(
    "changes",
    [
        {"idempotency_key": ""},
        {"idempotency_key": "k" * 256},
        {"amount": 0},
        {"currency": "EURO"},
        {"payment_reference": ""},
        {"amount": 1050, "currency": "MGA"},  # not whole ariary: Stripe has no unit for it
        {"amount": 5124, "currency": "KWD"},  # Stripe's three-decimal amounts must end in 0
    ],
)
async def test_unsendable_requests_never_reach_stripe(changes: dict[str, Any]) -> None:
    recorder = answer()
    error = await create_error(recorder, make_request(**changes))
    assert error.code is ErrorCode.INVALID_REQUEST
    assert not error.retryable
    assert recorder.requests == []


async def test_missing_api_key_is_auth_failed_without_a_request() -> None:
    recorder = answer()
    with pytest.raises(GatewayError) as info:
        await create(recorder, api_key="")
    assert info.value.code is ErrorCode.AUTH_FAILED
    assert recorder.requests == []


# --- status table -------------------------------------------------------------------------------------


def sdk_documented_statuses() -> set[str]:
    source = inspect.getsource(stripe.Refund)
    sentence = re.search(r"Status of the refund\. This can be (.+?)\.", source)
    assert sentence is not None, "the SDK no longer documents Refund.status this way"
    return set(re.findall(r"`([a-z_]+)`", sentence.group(1)))


def test_status_table_is_total_over_the_sdks_statuses() -> None:
    assert sdk_documented_statuses() == set(tx.STATUS_TABLE)


@pytest.mark.parametrize(
    ("raw", "expected"), [*tx.STATUS_TABLE.items(), ("processing", GatewayStatus.PENDING)]
)
async def test_every_status(raw: str, expected: GatewayStatus) -> None:
    result = await create(answer(body=refund_body(status=raw)))
    assert (result.status, result.raw_status) == (expected, raw)


@pytest.mark.parametrize(
    "raw", [None, "", "SUCCEEDED", "succeeded ", "success", "paid", "complete", "refunded"]
)
async def test_unknown_status_is_pending_never_success(raw: str | None) -> None:
    assert tx.map_status(raw) is GatewayStatus.PENDING
    result = await create(answer(body=refund_body(status=raw)))
    assert result.status is GatewayStatus.PENDING


async def test_failed_refund_carries_failure_reason() -> None:
    result = await create(
        answer(body=refund_body(status="failed", failure_reason="expired_or_canceled_card"))
    )
    assert result.status is GatewayStatus.FAILED
    assert result.failure_code is ErrorCode.DECLINED
    assert result.processor_code == "expired_or_canceled_card"
    assert result.failure_message == "the card has expired or was canceled"


# --- errors -------------------------------------------------------------------------------------------

ERRORS = fixture("stripe_errors.json")


def error_answer(name: str) -> Recorder:
    case = ERRORS[name]
    headers = case.get("headers")
    if "text" in case:
        return answer(case["status"], text=case["text"], headers=headers)
    return answer(case["status"], case["body"], headers=headers)


@pytest.mark.parametrize(
    ("name", "code", "retryable"),
    [
        ("amount_too_large", ErrorCode.AMOUNT_EXCEEDS_REFUNDABLE, False),
        ("charge_already_refunded", ErrorCode.ALREADY_REFUNDED, False),
        ("charge_missing", ErrorCode.PAYMENT_NOT_FOUND, False),
        ("payment_intent_missing", ErrorCode.PAYMENT_NOT_FOUND, False),
        ("idempotency_params_mismatch", ErrorCode.INVALID_REQUEST, False),
        ("idempotency_key_in_use", ErrorCode.IDEMPOTENCY_CONFLICT, True),
        ("lock_timeout", ErrorCode.IDEMPOTENCY_CONFLICT, True),
        ("bad_api_key", ErrorCode.AUTH_FAILED, False),
        ("restricted_key", ErrorCode.AUTH_FAILED, False),
        ("rate_limited", ErrorCode.RATE_LIMITED, True),
        ("server_error", ErrorCode.GATEWAY_UNAVAILABLE, True),
        ("bad_gateway_html", ErrorCode.GATEWAY_UNAVAILABLE, True),
        ("parameter_unknown", ErrorCode.INVALID_REQUEST, False),
        ("currency_rejected", ErrorCode.CURRENCY_MISMATCH, False),
        ("card_declined", ErrorCode.DECLINED, False),
        ("old_rate_limit", ErrorCode.RATE_LIMITED, True),
        ("unexpected_redirect", ErrorCode.PROCESSOR_ERROR, False),
    ],
)
async def test_error_table(name: str, code: ErrorCode, retryable: bool) -> None:
    error = await create_error(error_answer(name))
    assert (error.code, error.retryable) == (code, retryable)
    assert error.status_code == ERRORS[name]["status"]
    body_error = ERRORS[name].get("body", {}).get("error", {})
    assert error.processor_code == (body_error.get("code") or body_error.get("type"))
    assert error.exchange is not None
    assert error.exchange.status_code == ERRORS[name]["status"]
    assert "sk_test_51" not in error.message
    assert "rk_test_51" not in error.message


def test_error_code_entries_outside_their_usual_status() -> None:
    def body(**fields: str) -> tx.StripeErrorBody:
        return tx.StripeErrorBody(type="invalid_request_error", **fields)

    assert tx.map_error(400, body(code="lock_timeout"), payment_lookup=True) is ErrorCode.IDEMPOTENCY_CONFLICT
    assert tx.map_error(400, body(code="api_key_expired"), payment_lookup=True) is ErrorCode.AUTH_FAILED
    assert (
        tx.map_error(404, body(code="resource_missing"), payment_lookup=True) is ErrorCode.PAYMENT_NOT_FOUND
    )
    assert tx.map_error(404, body(code="resource_missing"), payment_lookup=False) is ErrorCode.INVALID_REQUEST
    assert tx.map_error(400, tx.StripeErrorBody(), payment_lookup=True) is ErrorCode.INVALID_REQUEST
    assert (
        tx.map_error(503, body(code="amount_too_large"), payment_lookup=True) is ErrorCode.GATEWAY_UNAVAILABLE
    )


async def test_retry_after_is_honoured() -> None:
    assert (await create_error(error_answer("rate_limited"))).retry_after == 2.0
    assert (await create_error(error_answer("server_error"))).retry_after == 7.0
    assert (await create_error(error_answer("charge_missing"))).retry_after is None


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-4", now=now) == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(bad, now=now) is None


# --- transport ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc_type", "code"),
    [
        (httpx2.ReadTimeout, ErrorCode.TIMEOUT),
        (httpx2.WriteTimeout, ErrorCode.TIMEOUT),
        (httpx2.ConnectTimeout, ErrorCode.CONNECTION_ERROR),  # nothing was sent
        (httpx2.PoolTimeout, ErrorCode.CONNECTION_ERROR),
        (httpx2.ConnectError, ErrorCode.CONNECTION_ERROR),
        (httpx2.ReadError, ErrorCode.CONNECTION_ERROR),
        (httpx2.RemoteProtocolError, ErrorCode.CONNECTION_ERROR),
        (httpx2.ProxyError, ErrorCode.CONNECTION_ERROR),
        (httpx2.DecodingError, ErrorCode.OUTCOME_UNKNOWN),  # an answer came but cannot be read
    ],
)
async def test_transport_failures_become_gateway_errors(exc_type: type[Exception], code: ErrorCode) -> None:
    error = await create_error(raising(exc_type))
    assert error.code is code
    assert error.outcome_unknown  # never "failed": the refund is looked up
    assert error.retryable is (code is not ErrorCode.OUTCOME_UNKNOWN)
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert error.exchange is not None
    assert error.exchange.status_code is None
    assert error.exchange.method == "POST"
    assert error.exchange.path == "/v1/refunds"


async def test_timeout_says_the_outcome_is_unknown() -> None:
    error = await create_error(raising(httpx2.ReadTimeout))
    assert "outcome is unknown" in error.message


async def test_bad_base_url_is_not_retryable() -> None:
    creds = make_creds()
    creds = Credentials(creds.connection_name, "stripe", "ftp://example.invalid", creds.secrets)
    async with httpx2.AsyncClient() as client:
        with pytest.raises(GatewayError) as info:
            await gateway.create_refund(client, creds, make_request())
    assert info.value.code is ErrorCode.PROCESSOR_ERROR


async def test_a_key_that_cannot_be_sent_is_a_definite_failure_with_nothing_sent() -> None:
    """A header value httpx2 cannot encode fails before the request exists: nothing reached Stripe, so
    it is a refusal (processor_error), not an outcome to look up; it was a crash and "outcome unknown"."""
    recorder = answer()
    with pytest.raises(GatewayError) as info:
        await create(recorder, api_key="sk_test_\u00e9")
    assert recorder.requests == []
    assert info.value.code is ErrorCode.PROCESSOR_ERROR
    assert not info.value.outcome_unknown
    assert "nothing was sent" in info.value.message
    assert "\u00e9" not in info.value.message


# --- answers that are not the refund we asked for -----------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 1000},
        {"currency": "usd"},
        {"metadata": {"refundwatch_refund_id": "rf_9999"}},
        {"payment_intent": "pi_other"},
    ],
)
async def test_response_mismatch(changes: dict[str, Any]) -> None:
    error = await create_error(answer(body=refund_body(**changes)))
    assert error.code is ErrorCode.RESPONSE_MISMATCH
    assert not error.retryable
    assert error.exchange is not None
    assert error.exchange.status_code == 200
    assert "re_1Pgc72B7WZ01zgkWqPvrRrPE" in error.message


async def test_presentment_details_may_carry_the_requested_money() -> None:
    body = refund_body(
        amount=1130,
        currency="usd",
        presentment_details={"presentment_amount": 1050, "presentment_currency": "eur"},
    )
    result = await create(answer(body=body))
    assert result.status is GatewayStatus.SUCCEEDED


async def test_isk_answer_is_converted_back() -> None:
    body = refund_body(amount=1200, currency="isk")
    result = await create(answer(body=body), make_request(amount=12, currency="ISK"))
    assert (result.amount, result.currency) == (12, "ISK")


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("<html>ok</html>", None),
        (None, [1, 2]),
        (None, {"object": "charge", "id": "ch_1"}),
        (None, {"object": "refund", "status": "succeeded", "amount": 1050, "currency": "eur"}),
        (
            None,
            {"object": "refund", "id": "re_1", "status": "succeeded", "amount": "1050", "currency": "eur"},
        ),
    ],
)
async def test_malformed_success_is_outcome_unknown(text: str | None, body: Any) -> None:
    recorder = answer(200, body, text=text) if text is not None else answer(200, body)
    error = await create_error(recorder)
    assert error.code is ErrorCode.OUTCOME_UNKNOWN
    assert error.outcome_unknown
    assert not error.retryable
    assert "may exist" in error.message


async def test_exchange_excerpt_is_scrubbed_and_short() -> None:
    # Secrets first, so they fall inside the excerpt; a card number across the cut must not leak either.
    body = {"description": f"card 4242424242424242 key {API_KEY}", **refund_body(), "note": "x" * 2000}
    result = await create(answer(body=body))
    exchange = result.exchange
    assert exchange is not None
    assert (exchange.method, exchange.path, exchange.status_code) == ("POST", "/v1/refunds", 200)
    assert exchange.latency_ms >= 0
    assert len(exchange.excerpt) <= 500
    assert "4242424242424242" not in exchange.excerpt
    assert API_KEY not in exchange.excerpt
    assert "sk_test_****" in exchange.excerpt
    assert "[REDACTED]" in exchange.excerpt


async def test_excerpt_cut_never_leaves_part_of_a_card_number() -> None:
    error = await create_error(answer(500, text="x" * 490 + "4242424242424242"))
    assert error.exchange is not None
    assert "4242424242" not in error.exchange.excerpt


# --- get_refund ---------------------------------------------------------------------------------------


async def test_get_refund() -> None:
    recorder = answer(body=refund_body(status="pending"))
    async with recorder.client() as client:
        result = await gateway.get_refund(client, make_creds(), "re_1Pgc72B7WZ01zgkWqPvrRrPE")
    (request,) = recorder.requests
    assert request.method == "GET"
    assert str(request.url) == f"{BASE_URL}/v1/refunds/re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert request.headers["Stripe-Version"] == STRIPE_API_VERSION
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "Idempotency-Key" not in request.headers
    assert (result.status, result.amount, result.currency) == (GatewayStatus.PENDING, 1050, "EUR")
    assert result.exchange is not None
    assert result.exchange.path == "/v1/refunds/re_1Pgc72B7WZ01zgkWqPvrRrPE"


async def test_get_refund_id_cannot_change_the_path() -> None:
    recorder = answer()
    async with recorder.client() as client:
        await gateway.get_refund(client, make_creds(), "../balance")
    assert recorder.requests[0].url.raw_path == b"/stripe/v1/refunds/..%2Fbalance"


async def test_get_missing_refund_is_not_a_missing_payment() -> None:
    body = {
        "error": {
            "code": "resource_missing",
            "message": "No such refund: 're_x'",
            "param": "id",
            "type": "invalid_request_error",
        }
    }
    async with answer(404, body).client() as client:
        with pytest.raises(GatewayError) as info:
            await gateway.get_refund(client, make_creds(), "re_x")
    assert info.value.code is ErrorCode.INVALID_REQUEST


# --- health -------------------------------------------------------------------------------------------


async def test_health_ok() -> None:
    recorder = answer(body=fixture("stripe_balance.json"))
    async with recorder.client() as client:
        health = await gateway.health_check(client, make_creds())
    assert health.ok
    assert health.error is None
    assert health.latency_ms >= 0
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("GET", f"{BASE_URL}/v1/balance")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    ("recorder", "fragment"),
    [
        (error_answer("bad_api_key"), "401"),
        (error_answer("bad_gateway_html"), "502"),
        (raising(httpx2.ReadTimeout), "did not answer"),
        (raising(httpx2.ConnectTimeout), "could not connect to Stripe"),
        (raising(httpx2.ConnectError), "could not connect to Stripe"),
    ],
)
async def test_health_failures_never_raise(recorder: Recorder, fragment: str) -> None:
    async with recorder.client() as client:
        health = await gateway.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert fragment in health.error
    assert "sk_test_*****" not in health.error  # Stripe's partly masked key is masked again


# --- scrub --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "mask"),
    [
        (f"key={API_KEY}", API_KEY, "sk_test_****"),
        ("sk_live_51HxYzAbCdEfGhIjKlMnOp in use", "sk_live_51HxYzAbCdEfGhIjKlMnOp", "sk_live_****"),
        ("restricted rk_live_51HxYzAbCdEf", "rk_live_51HxYzAbCdEf", "rk_live_****"),
        ("restricted rk_51HxYzAbCdEf", "rk_51HxYzAbCdEf", "rk_****"),
        ("secret whsec_5v8a9Kq2Zm+/x=", "whsec_5v8a9Kq2Zm", "whsec_****"),
        ("Authorization: Bearer abc.def-123", "abc.def-123", "Bearer [REDACTED]"),
        ("authorization: bearer tok_XYZ", "tok_XYZ", "Bearer [REDACTED]"),
        ('{"number": "4242424242424242"}', "4242424242424242", "[REDACTED]"),
        ("pan 4000 0566 5566 5556 end", "4000 0566 5566 5556", "[REDACTED]"),
        ("pan 3782-822463-10005 end", "3782-822463-10005", "[REDACTED]"),
        ("13 digits 4222222222222", "4222222222222", "[REDACTED]"),
        ("19 digits 6011000990139424123", "6011000990139424123", "[REDACTED]"),
    ],
)
def test_scrub_masks(text: str, secret: str, mask: str) -> None:
    scrubbed = gateway.scrub(text)
    assert secret not in scrubbed
    assert mask in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        '{"amount": 1050, "created": 1721948530}',  # 10-digit timestamps stay
        "re_1Pgc72B7WZ01zgkWqPvrRrPE ch_1PgafuB7WZ01zgkWXYmPNZs8",  # ids stay
        "task_id disk_test_x network_key",  # words that merely contain sk_/rk_
        "12345678901234567890",  # 20 digits: not card-like
    ],
)
def test_scrub_leaves_ordinary_text(text: str) -> None:
    assert gateway.scrub(text) == text
