"""Shared builders for the Checkout.com adapter tests: credentials, requests, Checkout.com-shaped answers,
a MockTransport that records every request, and Cko-Signature made with the standard library."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx2

from refundwatch.gateways.base import Credentials, RefundRequest
from refundwatch.lib.crypto import Secret

BASE_URL = "https://api.sandbox.checkout.com"
# Shaped as checkout-sdk 4.8.1 validates them (default_sdk.py, previous/previous_sdk.py).
SECRET_KEY = "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"
PREVIOUS_KEY = "sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64"
SIGNATURE_KEY = "5a8f1c4e-2b7d-4e8a-9c31-webhooksignkey"
PAYMENT_ID = "pay_mbabizu24mvu3mela5njyhpit4"
ACTION_ID = "act_y3oqhf46pyzuxjbcn2giaqnb44"
REFUND_ID = "0b9f6f3c-7d52-4f0e-9a43-2c1d7e5b8a10"
KEY = "rw_0b9f6f3c7d524f0e9a432c1d7e5b8a10"

Respond = Callable[[httpx2.Request], httpx2.Response]


def make_creds(base_url: str = BASE_URL, **values: str) -> Credentials:
    secrets = {"secret_key": SECRET_KEY, "webhook_signature_key": SIGNATURE_KEY}
    options: dict[str, str] = {}
    for name, value in values.items():
        (options if name == "platform" else secrets)[name] = value
    return Credentials(
        connection_name="checkout-test",
        processor="checkout",
        base_url=base_url,
        secrets={k: Secret(v) for k, v in secrets.items() if v},
        options=options,
        timeout_seconds=3.0,
    )


def make_request(**changes: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": REFUND_ID,
        "payment_reference": PAYMENT_ID,
        "amount": 1050,
        "currency": "EUR",
        "reason": "requested_by_customer",
        "idempotency_key": KEY,
    } | changes
    return RefundRequest(**values)


def accepted_body(**changes: Any) -> dict[str, Any]:
    """RefundAcceptedResponse, as Checkout.com answers a refund (202)."""
    return {
        "action_id": ACTION_ID,
        "reference": REFUND_ID,
        "_links": {"payment": {"href": f"{BASE_URL}/payments/{PAYMENT_ID}"}},
    } | changes


def refund_action(
    action_id: str = ACTION_ID,
    *,
    approved: bool | None = True,
    reference: str | None = REFUND_ID,
    key: str | None = KEY,
    amount: int = 1050,
    **changes: Any,
) -> dict[str, Any]:
    """A PaymentAction of type Refund (approved None: left out, as for one still being processed)."""
    action: dict[str, Any] = {
        "id": action_id,
        "type": "Refund",
        "processed_on": "2026-12-06T18:30:00Z",
        "amount": amount,
        "response_code": "10000" if approved is not False else "20005",
        "response_summary": "Approved" if approved is not False else "Declined - Do Not Honour",
    }
    if approved is not None:
        action["approved"] = approved
    if reference is not None:
        action["reference"] = reference
    metadata: dict[str, Any] = {}
    if reference is not None:
        metadata["refund_id"] = reference
    if key is not None:
        metadata["idempotency_key"] = key
    if metadata:
        action["metadata"] = metadata
    return action | changes


def capture_actions() -> list[dict[str, Any]]:
    """The payment's own actions before any refund (latest first)."""
    return [
        {
            "id": "act_capture0000000000000000001",
            "type": "Capture",
            "processed_on": "2026-12-01T10:00:01Z",
            "amount": 5000,
            "approved": True,
            "response_code": "10000",
            "response_summary": "Approved",
        },
        {
            "id": "act_auth00000000000000000000001",
            "type": "Authorization",
            "processed_on": "2026-12-01T10:00:00Z",
            "amount": 5000,
            "approved": True,
            "response_code": "10000",
            "response_summary": "Approved",
        },
    ]


def payment_body(available: int = 5000, currency: str = "EUR", **changes: Any) -> dict[str, Any]:
    return {
        "id": PAYMENT_ID,
        "requested_on": "2026-12-01T10:00:00Z",
        "amount": 5000,
        "currency": currency,
        "status": "Captured" if available == 5000 else "Partially Refunded",
        "approved": True,
        "balances": {
            "total_authorized": 5000,
            "total_voided": 0,
            "available_to_void": 0,
            "total_captured": 5000,
            "available_to_capture": 0,
            "total_refunded": 5000 - available,
            "available_to_refund": available,
        },
    } | changes


def error_body(*codes: str, error_type: str = "request_invalid") -> dict[str, Any]:
    return {"request_id": "0HL80RJLS76I7", "error_type": error_type, "error_codes": list(codes)}


class CheckoutMock:
    """Answers every request with ``respond`` and keeps the requests."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[httpx2.Request] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> CheckoutMock:
    def respond(request: httpx2.Request) -> httpx2.Response:
        if body is None:
            return httpx2.Response(status, headers=headers)
        return httpx2.Response(status, json=body, headers=headers)

    return CheckoutMock(respond)


def sign(body: bytes, key: str = SIGNATURE_KEY) -> str:
    """Cko-Signature as Checkout.com documents it: HMAC-SHA256 of the raw body, lowercase hex."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def event_body(event_type: str = "payment_refunded", **data_changes: Any) -> bytes:
    data: dict[str, Any] = {
        "id": PAYMENT_ID,
        "action_id": ACTION_ID,
        "reference": REFUND_ID,
        "amount": 1050,
        "currency": "EUR",
        "response_code": "10000",
        "response_summary": "Approved",
        "processed_on": "2026-12-06T18:30:00Z",
        "metadata": {"refund_id": REFUND_ID, "idempotency_key": KEY},
    } | data_changes
    event = {
        "id": "evt_az5sblvku4ge3dwpztvyizgcau",
        "type": event_type,
        "version": "1.0.33",
        "created_on": "2026-12-06T18:30:01Z",
        "data": data,
        "_links": {"self": {"href": f"{BASE_URL}/events/evt_az5sblvku4ge3dwpztvyizgcau"}},
    }
    return json.dumps(event).encode()
