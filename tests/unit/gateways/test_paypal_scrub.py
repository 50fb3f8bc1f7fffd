"""PayPalGateway.scrub masks every credential and token, and card-like numbers; nothing secret reaches a
GatewayError, an exchange excerpt (the refund's timeline) or a repr."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx2
import pytest
from paypal_adapter_helpers import (
    CAPTURE_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    KEY,
    REFUND_ID,
    REFUND_PP_ID,
    TOKEN,
    PayPalMock,
    answer,
    make_creds,
    make_request,
    refund_body,
    token_body,
)

from refundwatch import logs
from refundwatch.gateways.base import GatewayError
from refundwatch.gateways.paypal import PayPalGateway
from refundwatch.gateways.tokens import TOKENS

GATEWAY = PayPalGateway()
BASIC = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"token {TOKEN} expired", TOKEN),
        (f"Authorization: Basic {BASIC}", BASIC),
        (json.dumps(token_body()), TOKEN),
        ('{"access_token":"short-and-odd"}', "short-and-odd"),
        ("access_token=abc.def-123&x=1", "abc.def-123"),
        (f"client_secret={CLIENT_SECRET}", CLIENT_SECRET),
        (f'{{"client_secret": "{CLIENT_SECRET}"}}', CLIENT_SECRET),
        (f"the secret {CLIENT_SECRET} leaked", CLIENT_SECRET),
        ("card 4111 1111 1111 1111 used", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("pan 5555555555554444", "5555555555554444"),
    ],
)
def test_scrub_masks(text: str, secret: str) -> None:
    scrubbed = GATEWAY.scrub(text)
    assert secret not in scrubbed
    assert "[REDACTED]" in scrubbed or "A21AA****" in scrubbed


def test_scrub_keeps_what_people_need_to_read() -> None:
    text = json.dumps(refund_body()) + " debug_id 90957fca61718 order 1234567890123"  # not Luhn
    scrubbed = GATEWAY.scrub(text)
    for kept in (
        REFUND_PP_ID,
        CAPTURE_ID,
        REFUND_ID,
        KEY,
        "90957fca61718",
        "1234567890123",
        '"value": "10.50"',
    ):
        assert kept in scrubbed


async def test_no_token_or_secret_reaches_errors_or_exchanges() -> None:
    """An error answer that echoes the request's credentials is scrubbed before it is kept."""
    echo = {
        "name": "UNPROCESSABLE_ENTITY",
        "message": f"bad request with Bearer {TOKEN} and {CLIENT_SECRET}",
        "details": [{"issue": "REFUND_AMOUNT_EXCEEDED", "description": f"token {TOKEN}"}],
    }
    mock = answer(422, echo)
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    err = caught.value
    assert err.exchange is not None
    for secret in (TOKEN, CLIENT_SECRET, BASIC):
        assert secret not in err.message
        assert secret not in err.exchange.excerpt
        assert secret not in repr(err)
        assert secret not in str(err.args)


async def test_a_successful_exchange_holds_no_token() -> None:
    async with answer(201, refund_body()).client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    assert result.exchange is not None
    assert (
        result.exchange.path == f"/v2/payments/captures/{CAPTURE_ID}/refund"
    )  # the API call, not the token call
    assert TOKEN not in repr(result)


async def test_transport_errors_do_not_carry_the_request() -> None:
    def api(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadError(f"reset while sending {request.headers['Authorization']}", request=request)

    async with PayPalMock(api).client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_credentials_repr_is_masked() -> None:
    creds = make_creds()
    assert CLIENT_SECRET not in repr(creds)


@pytest.mark.parametrize(
    "line",
    [
        f"fetched {TOKEN} for paypal-eu",
        f"Authorization: Bearer {TOKEN}",
        f'{{"access_token": "{TOKEN}", "expires_in": 32400}}',
        f"client_secret={CLIENT_SECRET}",
        f"Authorization: Basic {BASIC}",
    ],
)
def test_log_lines_never_show_paypal_credentials(line: str) -> None:
    scrubbed = logs.scrub(line)
    for secret in (TOKEN, CLIENT_SECRET, BASIC):
        assert secret not in scrubbed
