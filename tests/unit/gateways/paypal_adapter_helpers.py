"""Shared builders for the PayPal adapter tests: credentials, requests, PayPal-shaped answers, and a
MockTransport that plays the token endpoint and the API, recording every request."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from refundwatch.gateways.base import Credentials, RefundRequest
from refundwatch.lib.crypto import Secret

BASE_URL = "https://api-m.sandbox.paypal.com"
CLIENT_ID = "AeA1QIZXiflr1_-r0U2UbWTziOWX1GRQer5jkUq4ZfWT5qwb6qQRPq7jDtv57TL4POEEezGLdutcxnkJ"
CLIENT_SECRET = "ECYYrrSHdKfk_Q0EdvzdGkzj58a66kKaUQ5dZAEv4HvvtDId2_DpSuYDB088BZxGuMBiRGAgLOGWT4V2"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
TOKEN = "A21AAFEpH4PsADK7qSS7pSRsgzfENtu-Q1ysgEDVDESseMHBYXVJYE8ovjj68elIDy8nF26AwPhfXTIeWAZHSLIsQkSYz9ifg"
TOKEN_2 = "A21AAGNrGq7YBxRjzXhQ3nUf9W2p8kLmT5vC1dE6aB0cH4iJ7oP3qR9sU2tV5wX8yZ1aB4cD7eF0gH3iJ6kL9mN2oP5qR8s"
CAPTURE_ID = "2GG279541U471931P"
REFUND_PP_ID = "1JU08902781691411"
REFUND_ID = "0b9f6f3c-7d52-4f0e-9a43-2c1d7e5b8a10"
KEY = "rw_0b9f6f3c7d524f0e9a432c1d7e5b8a10"

Respond = Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]


def make_creds(base_url: str = BASE_URL, *, connection: str | None = None, **values: str) -> Credentials:
    secrets = {"client_secret": CLIENT_SECRET}
    options = {"client_id": CLIENT_ID, "webhook_id": WEBHOOK_ID}
    for name, value in values.items():
        (secrets if name == "client_secret" else options)[name] = value
    return Credentials(
        # A fresh name per test by default: the token cache is process-wide.
        connection_name=connection or f"paypal-{uuid.uuid4().hex[:8]}",
        processor="paypal",
        base_url=base_url,
        secrets={k: Secret(v) for k, v in secrets.items() if v},
        options={k: v for k, v in options.items() if v},
        timeout_seconds=3.0,
    )


def make_request(**changes: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": REFUND_ID,
        "payment_reference": CAPTURE_ID,
        "amount": 1050,
        "currency": "EUR",
        "reason": "requested_by_customer",
        "idempotency_key": KEY,
    } | changes
    return RefundRequest(**values)


def refund_body(**changes: Any) -> dict[str, Any]:
    """A refund resource as PayPal answers it (Prefer: return=representation)."""
    body: dict[str, Any] = {
        "id": REFUND_PP_ID,
        "amount": {"currency_code": "EUR", "value": "10.50"},
        "seller_payable_breakdown": {
            "gross_amount": {"currency_code": "EUR", "value": "10.50"},
            "paypal_fee": {"currency_code": "EUR", "value": "0.00"},
            "net_amount": {"currency_code": "EUR", "value": "10.50"},
            "total_refunded_amount": {"currency_code": "EUR", "value": "10.50"},
        },
        "invoice_id": KEY,
        "custom_id": REFUND_ID,
        "note_to_payer": "Refund at your request",
        "status": "COMPLETED",
        "create_time": "2026-12-06T18:30:00-08:00",
        "update_time": "2026-12-06T18:30:00-08:00",
        "links": [
            {"href": f"{BASE_URL}/v2/payments/refunds/{REFUND_PP_ID}", "rel": "self", "method": "GET"},
            {"href": f"{BASE_URL}/v2/payments/captures/{CAPTURE_ID}", "rel": "up", "method": "GET"},
        ],
    }
    body.update(changes)
    return body


def token_body(token: str = TOKEN, expires_in: int = 32400) -> dict[str, Any]:
    return {
        "scope": "https://uri.paypal.com/services/payments/refund",
        "access_token": token,
        "token_type": "Bearer",
        "app_id": "APP-80W284485P519543T",
        "expires_in": expires_in,
        "nonce": "2026-12-06T18:30:00ZxYz",
    }


def error_body(status: int, name: str, issue: str | None = None, description: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "message": f"{name} message", "debug_id": "90957fca61718"}
    if issue is not None:
        body["details"] = [{"issue": issue, "description": description or f"{issue} description"}]
    return body


class PayPalMock:
    """The token endpoint (counted) plus an API handler; every request is kept."""

    def __init__(
        self,
        api: Respond,
        *,
        tokens: list[str] | None = None,
        token_delay: float = 0.0,
        token_answer: Callable[[httpx2.Request], httpx2.Response] | None = None,
    ) -> None:
        self.api = api
        self.tokens = tokens or [TOKEN]
        self.token_delay = token_delay
        self.token_answer = token_answer
        self.token_calls: list[httpx2.Request] = []
        self.api_calls: list[httpx2.Request] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        if request.url.path.endswith("/v1/oauth2/token"):
            self.token_calls.append(request)
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            if self.token_answer is not None:
                return self.token_answer(request)
            token = self.tokens[min(len(self.token_calls), len(self.tokens)) - 1]
            return httpx2.Response(200, json=token_body(token))
        self.api_calls.append(request)
        answer = self.api(request)
        if isinstance(answer, httpx2.Response):
            return answer
        return await answer

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


def answer(status: int, body: object, **headers: str) -> PayPalMock:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PayPalMock(
        lambda _: httpx2.Response(
            status, content=content, headers={"Content-Type": "application/json", **headers}
        )
    )


def bearer(request: httpx2.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")
