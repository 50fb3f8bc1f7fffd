"""Shared builders for the Adyen adapter tests: credentials, requests, a recording MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2

from refundwatch.gateways.base import Credentials, RefundRequest
from refundwatch.lib.crypto import Secret

API_KEY = (
    "AQEyhmfxK4LIYhZGw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw==-abcdef"
)
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
MERCHANT = "RefundwatchECOM"
PAYMENT_PSP = "993617894903480A"
REFUND_PSP = "993617894906488A"
REFUND_ID = "0b9f6f3c-7d52-4f0e-9a43-2c1d7e5b8a10"

Handler = Callable[[httpx2.Request], httpx2.Response]


def make_creds(base_url: str = "https://checkout-test.adyen.com", **values: str) -> Credentials:
    secrets = {"api_key": API_KEY, "hmac_key": HMAC_KEY}
    options = {"merchant_account": MERCHANT}
    for name, value in values.items():
        (secrets if name in {"api_key", "hmac_key", "webhook_password"} else options)[name] = value
    return Credentials(
        connection_name="adyen-test",
        processor="adyen",
        base_url=base_url,
        secrets={k: Secret(v) for k, v in secrets.items() if v},
        options={k: v for k, v in options.items() if v},
        timeout_seconds=3.0,
    )


def make_request(**changes: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": REFUND_ID,
        "payment_reference": PAYMENT_PSP,
        "amount": 2500,
        "currency": "EUR",
        "reason": "requested_by_customer",
        "idempotency_key": "rw_0b9f6f3c7d524f0e9a432c1d7e5b8a10",
    } | changes
    return RefundRequest(**values)


def received_body(**changes: Any) -> dict[str, Any]:
    """The spec's example 201 answer (post-payments-paymentPspReference-refunds-refund-201)."""
    body: dict[str, Any] = {
        "merchantAccount": MERCHANT,
        "paymentPspReference": PAYMENT_PSP,
        "reference": REFUND_ID,
        "pspReference": REFUND_PSP,
        "status": "received",
        "amount": {"currency": "EUR", "value": 2500},
    }
    body.update(changes)
    return body


class Recorder:
    """A MockTransport handler answering with one canned response and keeping every request."""

    def __init__(self, respond: Handler) -> None:
        self.respond = respond
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


def answer(status: int, body: Any = None, **headers: str) -> Recorder:
    return Recorder(lambda _: httpx2.Response(status, json=body, headers=headers))


def notification_item(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "additionalData": {},
        "amount": {"currency": "EUR", "value": 2500},
        "eventCode": "REFUND",
        "eventDate": "2026-12-06T10:00:00+01:00",
        "merchantAccountCode": MERCHANT,
        "merchantReference": REFUND_ID,
        "originalReference": PAYMENT_PSP,
        "paymentMethod": "visa",
        "pspReference": REFUND_PSP,
        "reason": "",
        "success": "true",
    }
    item.update(changes)
    return item
