"""CheckoutGateway against Checkout.com-shaped answers served by httpx2.MockTransport.

Every refund request it sends is validated against Checkout.com's own API reference with openapi-core:
``paths-payments-id-refunds.yaml`` and ``RefundRequest.yaml`` / ``RefundAcceptedResponse.yaml``
(shared/specs/checkout), assembled into one OpenAPI document. The copies name a few components they do
not hold (ActionId, Link, ValidationError, the Cko-Request-Id and Cko-Version headers): they are filled in
loosely (any string / object) here, and the ``OAuth`` scheme is left out (openapi-core does not implement
oauth2), so the ``ApiSecretKey`` scheme — the ``Authorization`` header — is what the document checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from checkout_adapter_helpers import (
    ACTION_ID,
    BASE_URL,
    KEY,
    PAYMENT_ID,
    PREVIOUS_KEY,
    REFUND_ID,
    SECRET_KEY,
    SIGNATURE_KEY,
    CheckoutMock,
    accepted_body,
    answer,
    capture_actions,
    make_creds,
    make_request,
    payment_body,
    refund_action,
)
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import InvalidRequestBody, SecurityValidationError
from werkzeug.datastructures import Headers, ImmutableMultiDict

from refundwatch.connections.services import DEFAULT_BASE_URLS
from refundwatch.connections.spec import PROCESSOR_FIELDS, PROCESSOR_OPTIONAL_FIELDS
from refundwatch.gateways.base import ErrorCode, GatewayError, GatewayStatus, read_refund
from refundwatch.gateways.checkout import LIVE_BASE_URL, SANDBOX_BASE_URL, CheckoutGateway
from refundwatch.gateways.registry import get_gateway

SPECS = Path(__file__).resolve().parents[3] / ".." / "shared" / "specs" / "checkout"
GATEWAY = CheckoutGateway()


def _load(name: str) -> Any:
    return yaml.safe_load((SPECS / name).read_text())


@pytest.fixture(scope="module")
def refunds_spec() -> OpenAPI:
    path = _load("paths-payments-id-refunds.yaml")
    path["post"]["security"] = [{"ApiSecretKey": []}]  # OAuth (oauth2) is not implemented by openapi-core
    document = {
        "openapi": "3.0.1",
        "info": {"title": "Checkout.com refunds (shared/specs/checkout)", "version": "copy"},
        "servers": [{"url": BASE_URL}],
        "paths": {"/payments/{id}/refunds": path},
        "components": {
            "schemas": {
                "RefundRequest": _load("RefundRequest.yaml"),
                "RefundAcceptedResponse": _load("RefundAcceptedResponse.yaml"),
                "ActionId": {"type": "string"},
                "Link": {"type": "object"},
                "ValidationError": {"type": "object"},
            },
            "headers": {
                "Cko-Request-Id": {"schema": {"type": "string"}},
                "Cko-Version": {"schema": {"type": "string"}},
            },
            "securitySchemes": {"ApiSecretKey": {"type": "apiKey", "in": "header", "name": "Authorization"}},
        },
    }
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


class SpecRequest:
    """An httpx2 request as openapi-core reads one (openapi_core.protocols.Request)."""

    def __init__(self, request: httpx2.Request) -> None:
        self.method = request.method.lower()
        self.host_url = BASE_URL
        self.path = request.url.path
        self.body: bytes | None = request.content or None
        self.content_type = request.headers.get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict(),
        )


def test_registered() -> None:
    gateway = get_gateway("checkout")
    assert isinstance(gateway, CheckoutGateway)
    caps = gateway.capabilities
    assert (caps.reads_refunds, caps.first_answer_final, caps.refundable_queryable) == (True, False, True)
    assert caps.idempotency_covers_errors is False
    assert caps.webhook_ack is None
    assert caps.verifies_remotely is False
    assert gateway.idempotency_retention_seconds == 24 * 3600
    assert gateway.default_base_url == LIVE_BASE_URL == DEFAULT_BASE_URLS["checkout"]
    assert SANDBOX_BASE_URL == "https://api.sandbox.checkout.com"
    assert repr(gateway) == "CheckoutGateway()"
    # CONTRACT §6: the connections file's fields are the adapter's.
    assert PROCESSOR_FIELDS["checkout"] == (GATEWAY.secret_fields, GATEWAY.option_fields)
    assert PROCESSOR_OPTIONAL_FIELDS["checkout"] == (
        GATEWAY.optional_secret_fields,
        GATEWAY.optional_option_fields,
    )


# --- the refund request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "key", "authorization"),
    [
        (None, SECRET_KEY, f"Bearer {SECRET_KEY}"),
        ("default", SECRET_KEY, f"Bearer {SECRET_KEY}"),
        ("previous", PREVIOUS_KEY, PREVIOUS_KEY),
    ],
)
async def test_refund_request_matches_the_spec(
    refunds_spec: OpenAPI, platform: str | None, key: str, authorization: str
) -> None:
    mock = answer(202, accepted_body())
    creds = make_creds(secret_key=key, **({"platform": platform} if platform else {}))
    async with mock.client() as client:
        result = await GATEWAY.create_refund(client, creds, make_request())
    (sent,) = mock.requests
    refunds_spec.validate_request(SpecRequest(sent))
    assert sent.method == "POST"
    assert str(sent.url) == f"{BASE_URL}/payments/{PAYMENT_ID}/refunds"
    assert sent.headers["Authorization"] == authorization  # checkout-sdk's SdkAuthorization
    assert sent.headers["Cko-Idempotency-Key"] == KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.content) == {
        "amount": 1050,
        "reference": REFUND_ID,
        "metadata": {"refund_id": REFUND_ID, "idempotency_key": KEY},
    }
    # 202 = accepted only: processing, never succeeded.
    assert result.status is GatewayStatus.PENDING
    assert result.gateway_refund_id == ACTION_ID
    assert result.raw_status == "accepted (202)"
    assert result.idempotency_key == KEY
    assert result.exchange is not None
    assert result.exchange.status_code == 202
    assert SECRET_KEY not in result.exchange.excerpt


@pytest.mark.parametrize(("amount", "currency"), [(1, "EUR"), (1500, "JPY"), (1050, "KWD"), (10**10, "USD")])
async def test_amounts_go_in_minor_units_as_they_are(
    refunds_spec: OpenAPI, amount: int, currency: str
) -> None:
    mock = answer(202, accepted_body())
    async with mock.client() as client:
        await GATEWAY.create_refund(client, make_creds(), make_request(amount=amount, currency=currency))
    refunds_spec.validate_request(SpecRequest(mock.requests[0]))
    assert json.loads(mock.requests[0].content)["amount"] == amount


def test_the_spec_witness_refuses_what_checkout_would(refunds_spec: OpenAPI) -> None:
    """The document is a real check: a reference over 50 characters and a missing key are refused."""
    body = {"amount": 100, "reference": "x" * 51}
    bad = httpx2.Request(
        "POST",
        f"{BASE_URL}/payments/{PAYMENT_ID}/refunds",
        json=body,
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
    )
    with pytest.raises(InvalidRequestBody):
        refunds_spec.validate_request(SpecRequest(bad))
    unsigned = httpx2.Request("POST", f"{BASE_URL}/payments/{PAYMENT_ID}/refunds", json={"amount": 100})
    with pytest.raises(SecurityValidationError):
        refunds_spec.validate_request(SpecRequest(unsigned))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [({"amount": 0}, "at least 1"), ({"refund_id": "r" * 51}, "1 to 50"), ({"refund_id": ""}, "1 to 50")],
)
async def test_requests_checkout_cannot_take_are_never_sent(changes: dict[str, Any], needle: str) -> None:
    mock = answer(202, accepted_body())
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request(**changes))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert needle in caught.value.message
    assert mock.requests == []


async def test_a_payment_id_cannot_walk_to_another_path() -> None:
    mock = answer(202, accepted_body())
    async with mock.client() as client:
        await GATEWAY.create_refund(client, make_creds(), make_request(payment_reference="../events?x=1"))
    assert mock.requests[0].url.raw_path == b"/payments/..%2Fevents%3Fx%3D1/refunds"


async def test_an_accepted_answer_for_another_reference_needs_a_person() -> None:
    mock = answer(202, accepted_body(reference="someone-else"))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"reference": "x"}', b'{"action_id": 12}'])
async def test_an_unreadable_2xx_leaves_the_outcome_unknown(content: bytes) -> None:
    mock = CheckoutMock(lambda request: httpx2.Response(202, content=content))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert caught.value.outcome_unknown


async def test_a_timeout_leaves_the_outcome_unknown() -> None:
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    async with CheckoutMock(respond).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.TIMEOUT
    assert caught.value.outcome_unknown


async def test_no_secret_key_sends_nothing() -> None:
    mock = answer(202, accepted_body())
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(secret_key=""), make_request())
    assert caught.value.code is ErrorCode.AUTH_FAILED
    assert mock.requests == []


# --- reading a refund through its payment's actions -----------------------------------------------------


@pytest.mark.parametrize(
    ("approved", "status", "raw"),
    [
        (True, GatewayStatus.SUCCEEDED, "Refund approved 10000"),
        (False, GatewayStatus.FAILED, "Refund declined 20005"),
        (None, GatewayStatus.PENDING, "Refund pending 10000"),
    ],
)
async def test_get_payment_refund_reads_the_action(
    approved: bool | None, status: GatewayStatus, raw: str
) -> None:
    mock = answer(200, [refund_action(approved=approved), *capture_actions()])
    async with mock.client() as client:
        result = await read_refund(GATEWAY, client, make_creds(), ACTION_ID, payment_reference=PAYMENT_ID)
    (sent,) = mock.requests
    assert (sent.method, str(sent.url)) == ("GET", f"{BASE_URL}/payments/{PAYMENT_ID}/actions")
    assert sent.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert result.status is status
    assert result.raw_status == raw
    assert (result.gateway_refund_id, result.amount, result.idempotency_key) == (ACTION_ID, 1050, KEY)
    if status is GatewayStatus.FAILED:
        assert result.failure_code is ErrorCode.DECLINED
        assert result.failure_message == "Checkout.com declined the refund: Declined - Do Not Honour"
        assert result.processor_code == "20005"
    else:
        assert result.failure_code is None


async def test_an_accepted_refund_not_yet_listed_is_pending() -> None:
    mock = answer(200, capture_actions())
    async with mock.client() as client:
        result = await GATEWAY.get_payment_refund(client, make_creds(), PAYMENT_ID, ACTION_ID)
    assert result.status is GatewayStatus.PENDING
    assert result.gateway_refund_id == ACTION_ID


async def test_an_action_that_is_not_a_refund_needs_a_person() -> None:
    mock = answer(200, capture_actions())
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.get_payment_refund(
                client, make_creds(), PAYMENT_ID, "act_capture0000000000000000001"
            )
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH


async def test_get_refund_without_the_payment_says_so() -> None:
    async with answer(200, []).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.get_refund(client, make_creds(), ACTION_ID)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert not caught.value.retryable


# --- finding an attempt without its action id -----------------------------------------------------------


async def test_find_refund_matches_reference_and_key() -> None:
    actions = [
        refund_action("act_other_key_000000000000000", key="rw_other", approved=False),
        refund_action("act_other_ref_000000000000000", reference="another-refund"),
        refund_action(approved=None),
        *capture_actions(),
    ]
    mock = answer(200, actions)
    async with mock.client() as client:
        found = await GATEWAY.find_refund(client, make_creds(), make_request())
    assert found is not None
    assert (found.gateway_refund_id, found.status, found.idempotency_key) == (
        ACTION_ID,
        GatewayStatus.PENDING,
        KEY,
    )
    assert str(mock.requests[0].url) == f"{BASE_URL}/payments/{PAYMENT_ID}/actions"


async def test_find_refund_takes_an_action_without_metadata_by_its_reference() -> None:
    async with answer(200, [refund_action(key=None, metadata=None)]).client() as client:
        found = await GATEWAY.find_refund(client, make_creds(), make_request())
    assert found is not None
    assert found.status is GatewayStatus.SUCCEEDED


@pytest.mark.parametrize(
    "actions",
    [
        [],
        capture_actions(),
        [refund_action(key="rw_an_earlier_attempt"), *capture_actions()],
        [refund_action(reference="another-refund", key=None)],
    ],
)
async def test_find_refund_is_none_only_when_the_actions_hold_no_such_refund(actions: list[Any]) -> None:
    async with answer(200, actions).client() as client:
        assert await GATEWAY.find_refund(client, make_creds(), make_request()) is None


async def test_find_refund_with_another_amount_needs_a_person() -> None:
    async with answer(200, [refund_action(amount=999)]).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.find_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH


@pytest.mark.parametrize(
    ("status", "content", "code"),
    [
        (404, b"", ErrorCode.PAYMENT_NOT_FOUND),
        (401, b"", ErrorCode.AUTH_FAILED),
        (500, b"", ErrorCode.GATEWAY_UNAVAILABLE),
        (502, b"", ErrorCode.GATEWAY_UNAVAILABLE),
        (429, b"", ErrorCode.RATE_LIMITED),
        (200, b"{not json", ErrorCode.OUTCOME_UNKNOWN),
        (200, b'{"data": []}', ErrorCode.OUTCOME_UNKNOWN),
    ],
)
async def test_find_refund_raises_when_it_cannot_tell(status: int, content: bytes, code: ErrorCode) -> None:
    mock = CheckoutMock(lambda request: httpx2.Response(status, content=content))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.find_refund(client, make_creds(), make_request())
    assert caught.value.code is code


# --- the refundable balance -----------------------------------------------------------------------------


async def test_refundable_reads_available_to_refund() -> None:
    mock = answer(200, payment_body(available=1200, currency="eur"))
    async with mock.client() as client:
        assert await GATEWAY.refundable(client, make_creds(), PAYMENT_ID) == (1200, "EUR")
    (sent,) = mock.requests
    assert (sent.method, str(sent.url)) == ("GET", f"{BASE_URL}/payments/{PAYMENT_ID}")


@pytest.mark.parametrize(
    "body", [payment_body() | {"balances": None}, payment_body() | {"currency": None}, [1], "text"]
)
async def test_refundable_is_none_when_the_payment_does_not_say(body: Any) -> None:
    async with answer(200, body).client() as client:
        assert await GATEWAY.refundable(client, make_creds(), PAYMENT_ID) is None


async def test_refundable_raises_when_the_payment_cannot_be_read() -> None:
    async with answer(404).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.refundable(client, make_creds(), PAYMENT_ID)
    assert caught.value.code is ErrorCode.PAYMENT_NOT_FOUND


# --- health check ---------------------------------------------------------------------------------------


async def test_health_check_is_the_event_types_call() -> None:
    mock = answer(200, [{"version": "2.0", "event_types": ["payment_refunded"]}])
    async with mock.client() as client:
        health = await GATEWAY.health_check(client, make_creds(platform="previous", secret_key=PREVIOUS_KEY))
    assert health.ok
    assert health.error is None
    (sent,) = mock.requests
    assert (sent.method, str(sent.url)) == ("GET", f"{BASE_URL}/event-types")
    assert sent.headers["Authorization"] == PREVIOUS_KEY


async def test_health_check_reports_a_refused_key_without_it() -> None:
    async with answer(401).client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert "401" in health.error
    assert SECRET_KEY not in health.error


async def test_health_check_reports_an_unreachable_processor() -> None:
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    async with CheckoutMock(respond).client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert "could not connect" in health.error


# --- connection fields ----------------------------------------------------------------------------------


def _fields(**changes: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "secret_key": SECRET_KEY,
        "webhook_signature_key": SIGNATURE_KEY,
    } | changes
    return {k: v for k, v in values.items() if v is not None}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"platform": "default"},
        {"secret_key": "sk_m73dzbpy7cf3gfd46xr4yj5xo4#"},
        {"platform": "previous", "secret_key": PREVIOUS_KEY},
        {"platform": "previous", "secret_key": "sk_fde517a8-3f01-41ef-b4bd-4282384b0a64"},
        {"webhook_authorization": "Basic cmVmdW5kd2F0Y2g6c2VjcmV0"},
    ],
)
def test_check_fields_accepts(changes: dict[str, str]) -> None:
    GATEWAY.check_fields(_fields(**changes))


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"platform": "nas"}, "platform must be"),
        ({"secret_key": "pk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"}, "secret_key must be"),
        ({"secret_key": PREVIOUS_KEY}, 'platform = "previous"'),
        ({"platform": "previous", "secret_key": SECRET_KEY}, "previous-platform secret key"),
        ({"webhook_signature_key": "has space"}, "webhook_signature_key must be"),
        ({"webhook_signature_key": "k" * 257}, "webhook_signature_key must be"),
        ({"webhook_authorization": "line\nbreak"}, "webhook_authorization must be"),
    ],
)
def test_check_fields_refuses_in_one_line_without_the_secret(changes: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match="must be") as caught:
        GATEWAY.check_fields(_fields(**changes))
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message
    assert SECRET_KEY not in message
    assert PREVIOUS_KEY not in message


async def test_find_refund_prefers_this_attempts_key_over_an_action_without_one() -> None:
    actions = [
        refund_action("act_no_metadata_0000000000000", key=None, metadata=None, approved=False),
        refund_action(approved=True),
    ]
    async with answer(200, actions).client() as client:
        found = await GATEWAY.find_refund(client, make_creds(), make_request())
    assert found is not None
    assert (found.gateway_refund_id, found.status) == (ACTION_ID, GatewayStatus.SUCCEEDED)


# --- Amex: a reference cut to 30 characters -------------------------------------------------------------


async def test_a_reference_cut_to_the_amex_limit_is_still_ours() -> None:
    mock = answer(202, accepted_body(reference=REFUND_ID[:30]))
    async with mock.client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    assert result.gateway_refund_id == ACTION_ID
    action = refund_action(reference=REFUND_ID[:30], key=None, metadata=None)
    async with answer(200, [action]).client() as client:
        found = await GATEWAY.find_refund(client, make_creds(), make_request())
    assert found is not None


async def test_a_shorter_prefix_is_not_ours() -> None:
    async with answer(202, accepted_body(reference=REFUND_ID[:29])).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH
    action = refund_action(reference=REFUND_ID[:29], key=None, metadata=None)
    async with answer(200, [action]).client() as client:
        assert await GATEWAY.find_refund(client, make_creds(), make_request()) is None
