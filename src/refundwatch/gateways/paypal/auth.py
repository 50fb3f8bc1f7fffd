"""PayPal OAuth 2.0 client credentials: the token call, the shared cache, and 401 → refresh once → retry.

``POST /v1/oauth2/token`` with HTTP Basic ``client_id:client_secret`` and the form
``grant_type=client_credentials`` answers ``{"access_token": "A21AA…", "token_type": "Bearer",
"expires_in": 32400, ...}``. The token is kept in ``gateways.tokens.TOKENS`` (one per connection and
credentials, single flight, refreshed before expiry). Every API call goes through :func:`authorized`:
a 401 drops the token it used, fetches a new one (once, shared with concurrent callers) and sends the
request again; a second 401 is the answer.

A failed token call raises GatewayError, so it counts in gateway health and the circuit breaker like any
other call: ``auth_failed`` when PayPal refuses the credentials (400/401/403, e.g. invalid_client),
``rate_limited`` on 429, ``gateway_unavailable`` for a 5xx or an unreadable answer, and the transport
codes of ``gateways.calls`` (timeout, connection_error). Its messages never carry the token or the
secret.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import httpx2

from refundwatch.gateways import calls
from refundwatch.gateways.base import Credentials, ErrorCode, Exchange, GatewayError, as_json
from refundwatch.gateways.paypal.errors import parse_error
from refundwatch.gateways.retry_after import parse_retry_after
from refundwatch.gateways.tokens import TOKENS, FetchedToken, TokenCache, cache_key
from refundwatch.lib.crypto import Secret

__all__ = ["TOKEN_PATH", "access_token", "authorized", "fetch_token", "token_key"]

TOKEN_PATH: Final = "/v1/oauth2/token"  # noqa: S105 - a path, not a password
# When an answer has no usable expires_in (PayPal always sends one): keep the token only briefly.
FALLBACK_EXPIRES_IN: Final = 300.0

Scrub = Callable[[str], str]
Send = Callable[[str], Awaitable[tuple[httpx2.Response, Exchange]]]


def _client_id(creds: Credentials) -> str:
    client_id = creds.options.get("client_id", "")
    if not client_id:
        raise GatewayError(ErrorCode.AUTH_FAILED, "no PayPal client_id is configured")
    return client_id


def _client_secret(creds: Credentials) -> str:
    secret = creds.secrets.get("client_secret")
    if secret is None or not secret.reveal():
        raise GatewayError(ErrorCode.AUTH_FAILED, "no PayPal client_secret is configured")
    return secret.reveal()


def token_key(creds: Credentials) -> str:
    """The connection's key in the token cache: changed credentials or base URL get a new token."""
    return cache_key(creds.connection_name, creds.base_url, _client_id(creds), _client_secret(creds))


async def fetch_token(client: httpx2.AsyncClient, creds: Credentials, scrub: Scrub) -> FetchedToken:
    """One token call. GatewayError (see the module docstring) when it gives no token."""
    basic = base64.b64encode(f"{_client_id(creds)}:{_client_secret(creds)}".encode()).decode("ascii")
    try:
        response, exchange = await calls.call(
            client,
            "PayPal",
            "POST",
            creds.base_url.rstrip("/") + TOKEN_PATH,
            TOKEN_PATH,
            timeout_seconds=creds.timeout_seconds,
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            scrub=scrub,
            data={"grant_type": "client_credentials"},
        )
    except GatewayError as err:
        # Nothing but the token call went out: no refund was sent by this attempt.
        raise GatewayError(
            err.code, f"PayPal token call: {err.message}", exchange=err.exchange, retry_after=err.retry_after
        ) from None
    if response.is_success:
        token = _read_token(response)
        if token is not None:
            return token
        raise GatewayError(
            ErrorCode.GATEWAY_UNAVAILABLE,
            f"PayPal token call answered {response.status_code} without a usable access token",
            status_code=response.status_code,
            exchange=_bare(exchange),
        )
    error = parse_error(as_json(response))
    if response.status_code in (400, 401, 403):
        code = ErrorCode.AUTH_FAILED
    elif response.status_code == 429:
        code = ErrorCode.RATE_LIMITED
    else:
        code = ErrorCode.GATEWAY_UNAVAILABLE
    detail = error.oauth_description or error.detail or response.reason_phrase or "no message"
    label = error.oauth_error or error.label
    raise GatewayError(
        code,
        scrub(f"PayPal token call answered {response.status_code} ({label}): {detail}")[
            : calls.MESSAGE_CHARS
        ],
        processor_code=error.oauth_error or error.name,
        status_code=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
        exchange=exchange,
    )


def _bare(exchange: Exchange) -> Exchange:
    """The exchange without its excerpt: a 2xx token answer may hold a token in any shape."""
    return Exchange(exchange.method, exchange.path, exchange.status_code, exchange.latency_ms, "")


def _read_token(response: httpx2.Response) -> FetchedToken | None:
    try:
        data = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    value, kind, expires_in = data.get("access_token"), data.get("token_type"), data.get("expires_in")
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable():
        return None
    if kind is not None and (not isinstance(kind, str) or kind.lower() != "bearer"):
        return None
    lifetime = FALLBACK_EXPIRES_IN
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        expires_in = None
    if expires_in is not None and math.isfinite(expires_in) and expires_in > 0:
        lifetime = float(expires_in)
    return FetchedToken(Secret(value), lifetime)


async def access_token(
    client: httpx2.AsyncClient, creds: Credentials, scrub: Scrub, *, cache: TokenCache = TOKENS
) -> str:
    """A valid bearer token for the connection, from the cache or one shared token call.

    For other callers that need PayPal's bearer (online webhook verification): never log it."""
    secret = await cache.get(token_key(creds), lambda: fetch_token(client, creds, scrub))
    return secret.reveal()


async def authorized(
    client: httpx2.AsyncClient, creds: Credentials, scrub: Scrub, send: Send, *, cache: TokenCache = TOKENS
) -> tuple[httpx2.Response, Exchange]:
    """Send one API request with the connection's bearer; after a 401, refresh the token once and
    send again (safe for a refund: a 401 was refused before anything ran, and the PayPal-Request-Id is
    the same)."""
    key = token_key(creds)

    def fetch() -> Awaitable[FetchedToken]:
        return fetch_token(client, creds, scrub)

    token = await cache.get(key, fetch)
    response, exchange = await send(token.reveal())
    if response.status_code != 401:
        return response, exchange
    cache.invalidate(key, token)
    token = await cache.get(key, fetch)
    return await send(token.reveal())
