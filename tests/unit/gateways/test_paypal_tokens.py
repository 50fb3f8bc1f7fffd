"""Access tokens: the process-wide cache (gateways/tokens.py) and PayPal's token call and 401 retry
(gateways/paypal/auth.py), against httpx2.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx2
import pytest
from paypal_adapter_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN,
    TOKEN_2,
    PayPalMock,
    bearer,
    make_creds,
    make_request,
    refund_body,
)

from refundwatch.gateways.base import ErrorCode, GatewayError, GatewayStatus
from refundwatch.gateways.paypal import PayPalGateway, auth
from refundwatch.gateways.tokens import TOKENS, FetchedToken, TokenCache, cache_key, refresh_margin
from refundwatch.lib.crypto import Secret

GATEWAY = PayPalGateway()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKENS.clear()
    yield
    TOKENS.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def created(_: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(201, json=refund_body())


# --- the cache on its own -----------------------------------------------------------------------------


async def test_two_hundred_concurrent_callers_make_one_fetch() -> None:
    cache = TokenCache()
    started = 0

    async def fetch() -> FetchedToken:
        nonlocal started
        started += 1
        await asyncio.sleep(0.05)
        return FetchedToken(Secret(TOKEN), 32400)

    tokens = await asyncio.gather(*(cache.get("conn:abc", fetch) for _ in range(200)))
    assert started == 1
    assert cache.fetches == 1
    assert cache.fetches_for("conn:abc") == 1
    assert {t.reveal() for t in tokens} == {TOKEN}


async def test_refresh_before_expiry_and_not_before() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    values = iter([TOKEN, TOKEN_2])

    async def fetch() -> FetchedToken:
        return FetchedToken(Secret(next(values)), 32400)

    assert (await cache.get("k", fetch)).reveal() == TOKEN
    margin = refresh_margin(32400)
    assert margin == 3240  # 10 % of nine hours, more than 60 s
    clock.now += 32400 - margin - 1
    assert (await cache.get("k", fetch)).reveal() == TOKEN
    assert cache.fetches == 1
    clock.now += 2  # inside the margin: replaced before it expires
    assert (await cache.get("k", fetch)).reveal() == TOKEN_2
    assert cache.fetches == 2


def test_refresh_margin_bounds() -> None:
    assert refresh_margin(300) == 60  # at least a minute
    assert refresh_margin(32400) == 3240  # 10 %
    assert refresh_margin(30) == 15  # never more than half a short lifetime


async def test_a_failed_early_refresh_keeps_the_still_valid_token() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    calls = 0

    async def fetch() -> FetchedToken:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise GatewayError(ErrorCode.GATEWAY_UNAVAILABLE, "token endpoint down")
        return FetchedToken(Secret(TOKEN), 600)

    await cache.get("k", fetch)
    clock.now += 590  # inside the margin, not expired
    assert (await cache.get("k", fetch)).reveal() == TOKEN
    assert cache.stats.failures == 1
    clock.now += 20  # expired: the failure reaches the caller
    with pytest.raises(GatewayError):
        await cache.get("k", fetch)


async def test_a_failed_fetch_reaches_every_waiter_once_and_the_next_call_fetches_again() -> None:
    cache = TokenCache()
    calls = 0

    async def fetch() -> FetchedToken:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise GatewayError(ErrorCode.AUTH_FAILED, "invalid_client")
        return FetchedToken(Secret(TOKEN), 32400)

    results = await asyncio.gather(*(cache.get("k", fetch) for _ in range(20)), return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, GatewayError) for r in results)
    assert (await cache.get("k", fetch)).reveal() == TOKEN
    assert calls == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    cache = TokenCache()

    async def fetch() -> FetchedToken:
        await asyncio.sleep(0.05)
        return FetchedToken(Secret(TOKEN), 32400)

    first = asyncio.create_task(cache.get("k", fetch))
    second = asyncio.create_task(cache.get("k", fetch))
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).reveal() == TOKEN
    assert cache.fetches == 1


async def test_invalidate_drops_only_the_current_token() -> None:
    cache = TokenCache()
    values = iter([TOKEN, TOKEN_2])

    async def fetch() -> FetchedToken:
        return FetchedToken(Secret(next(values)), 32400)

    old = await cache.get("k", fetch)
    assert cache.invalidate("k", old)
    new = await cache.get("k", fetch)
    assert new.reveal() == TOKEN_2
    assert not cache.invalidate("k", old)  # a late 401 from the old token keeps the new one
    assert cache.current("k") == new
    assert cache.stats.invalidations == 1


def test_keys_change_with_credentials_and_show_none() -> None:
    key = cache_key("pp", "https://api-m.paypal.com", CLIENT_ID, CLIENT_SECRET)
    assert key.startswith("pp:")
    assert CLIENT_SECRET not in key
    assert CLIENT_ID not in key
    assert key == cache_key("pp", "https://api-m.paypal.com/", CLIENT_ID, CLIENT_SECRET)
    assert key != cache_key("pp", "https://api-m.paypal.com", CLIENT_ID, CLIENT_SECRET + "x")
    assert key != cache_key("pp", "https://api-m.sandbox.paypal.com", CLIENT_ID, CLIENT_SECRET)


async def test_reprs_never_show_a_token() -> None:
    cache = TokenCache()

    async def fetch() -> FetchedToken:
        return FetchedToken(Secret(TOKEN), 32400)

    token = await cache.get("k", fetch)
    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)
    assert TOKEN not in repr(cache)
    assert TOKEN not in repr(FetchedToken(Secret(TOKEN), 1))


# --- PayPal's token call ------------------------------------------------------------------------------


async def test_token_call_is_basic_auth_and_client_credentials() -> None:
    mock = PayPalMock(created)
    creds = make_creds()
    async with mock.client() as client:
        token = await auth.access_token(client, creds, GATEWAY.scrub)
    assert token == TOKEN
    (sent,) = mock.token_calls
    assert sent.method == "POST"
    assert str(sent.url) == "https://api-m.sandbox.paypal.com/v1/oauth2/token"
    scheme, _, value = sent.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == f"{CLIENT_ID}:{CLIENT_SECRET}"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(sent.content.decode()) == {"grant_type": ["client_credentials"]}


async def test_two_hundred_concurrent_refunds_make_one_token_call() -> None:
    mock = PayPalMock(created, token_delay=0.05)
    creds = make_creds()
    async with mock.client() as client:
        results = await asyncio.gather(
            *(GATEWAY.create_refund(client, creds, make_request()) for _ in range(200))
        )
    assert len(mock.token_calls) == 1
    assert len(mock.api_calls) == 200
    assert {bearer(r) for r in mock.api_calls} == {TOKEN}
    assert all(r.status is GatewayStatus.SUCCEEDED for r in results)
    assert TOKENS.fetches_for(auth.token_key(creds)) == 1


async def test_an_expired_token_is_refreshed_once_by_the_401_retry() -> None:
    """The API says invalid_token (expired early): one new token, the request sent again."""
    seen: list[str] = []

    def api(request: httpx2.Request) -> httpx2.Response:
        seen.append(bearer(request))
        if bearer(request) == TOKEN:
            return httpx2.Response(401, json={"error": "invalid_token", "error_description": "Token expired"})
        return httpx2.Response(201, json=refund_body())

    mock = PayPalMock(api, tokens=[TOKEN, TOKEN_2])
    async with mock.client() as client:
        result = await GATEWAY.create_refund(client, make_creds(), make_request())
    assert result.status is GatewayStatus.SUCCEEDED
    assert seen == [TOKEN, TOKEN_2]
    assert len(mock.token_calls) == 2
    first, second = mock.api_calls
    # The retry is the same request: same PayPal-Request-Id, same body.
    assert first.headers["PayPal-Request-Id"] == second.headers["PayPal-Request-Id"]
    assert first.content == second.content


async def test_a_second_401_is_the_answer_not_a_loop() -> None:
    def api(_: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            401, json={"error": "invalid_token", "error_description": "Token signature failed"}
        )

    mock = PayPalMock(api, tokens=[TOKEN, TOKEN_2])
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.AUTH_FAILED
    assert len(mock.api_calls) == 2
    assert len(mock.token_calls) == 2
    assert TOKEN not in caught.value.message
    assert TOKEN_2 not in caught.value.message


async def test_concurrent_401s_share_one_refresh() -> None:
    def api(request: httpx2.Request) -> httpx2.Response:
        if bearer(request) == TOKEN:
            return httpx2.Response(401, json={"error": "invalid_token"})
        return httpx2.Response(201, json=refund_body())

    mock = PayPalMock(api, tokens=[TOKEN, TOKEN_2], token_delay=0.02)
    creds = make_creds()
    async with mock.client() as client:
        await auth.access_token(client, creds, GATEWAY.scrub)  # everyone starts with TOKEN
        results = await asyncio.gather(
            *(GATEWAY.create_refund(client, creds, make_request()) for _ in range(50))
        )
    assert all(r.status is GatewayStatus.SUCCEEDED for r in results)
    assert len(mock.token_calls) == 2


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            401,
            {"error": "invalid_client", "error_description": "Client Authentication failed"},
            ErrorCode.AUTH_FAILED,
        ),
        (
            400,
            {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"},
            ErrorCode.AUTH_FAILED,
        ),
        (403, {"name": "PERMISSION_DENIED", "message": "No permission"}, ErrorCode.AUTH_FAILED),
        (429, {"name": "RATE_LIMIT_REACHED", "message": "Too many requests"}, ErrorCode.RATE_LIMITED),
        (
            503,
            {"name": "SERVICE_UNAVAILABLE", "message": "Service Unavailable."},
            ErrorCode.GATEWAY_UNAVAILABLE,
        ),
        (200, {"token_type": "Bearer", "expires_in": 32400}, ErrorCode.GATEWAY_UNAVAILABLE),
        (200, {"access_token": TOKEN, "token_type": "MAC"}, ErrorCode.GATEWAY_UNAVAILABLE),
    ],
)
async def test_failed_token_calls_are_gateway_errors_without_secrets(
    status: int, body: dict[str, object], code: ErrorCode
) -> None:
    mock = PayPalMock(created, token_answer=lambda _: httpx2.Response(status, json=body))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    err = caught.value
    assert err.code is code
    assert "token call" in err.message
    assert mock.api_calls == []  # no refund went out without a token
    for secret in (CLIENT_SECRET, TOKEN, base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()):
        assert secret not in err.message
        assert err.exchange is None or secret not in err.exchange.excerpt


async def test_a_token_call_timeout_is_a_timeout() -> None:
    def token_answer(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    mock = PayPalMock(created, token_answer=token_answer)
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    assert caught.value.code is ErrorCode.TIMEOUT
    assert "token call" in caught.value.message


async def test_a_health_check_fails_when_the_token_call_fails() -> None:
    body = {"error": "invalid_client", "error_description": "Client Authentication failed"}
    mock = PayPalMock(created, token_answer=lambda _: httpx2.Response(401, json=body))
    async with mock.client() as client:
        health = await GATEWAY.health_check(client, make_creds())
    assert not health.ok
    assert health.error is not None
    assert "invalid_client" in health.error


async def test_expires_in_is_honoured_through_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    cache = TokenCache(clock)
    mock = PayPalMock(created, tokens=[TOKEN, TOKEN_2])
    mock.token_answer = lambda _: httpx2.Response(
        200,
        json={
            "access_token": [TOKEN, TOKEN_2][len(mock.token_calls) - 1],
            "token_type": "Bearer",
            "expires_in": 600,
        },
    )
    creds = make_creds()
    async with mock.client() as client:
        assert await auth.access_token(client, creds, GATEWAY.scrub, cache=cache) == TOKEN
        clock.now += 500
        assert await auth.access_token(client, creds, GATEWAY.scrub, cache=cache) == TOKEN
        clock.now += 50  # 60 s before expiry: refreshed
        assert await auth.access_token(client, creds, GATEWAY.scrub, cache=cache) == TOKEN_2
    assert len(mock.token_calls) == 2


def test_the_token_answer_never_reaches_a_scrubbed_excerpt() -> None:
    text = json.dumps({"scope": "x", "access_token": "not-A21-shaped-but-secret", "expires_in": 1})
    assert "not-A21-shaped-but-secret" not in GATEWAY.scrub(text)
