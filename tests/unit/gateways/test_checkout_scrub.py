"""CheckoutGateway.scrub masks every Checkout.com credential (secret keys of both platforms, Bearer
values, the webhook signature key and authorization value by name, Cko-Signature values) and card-like
numbers, and keeps refundwatch's and Checkout.com's ids readable for the timeline."""

from __future__ import annotations

import httpx2
import pytest
from checkout_adapter_helpers import (
    ACTION_ID,
    KEY,
    PAYMENT_ID,
    PREVIOUS_KEY,
    REFUND_ID,
    SECRET_KEY,
    SIGNATURE_KEY,
    CheckoutMock,
    make_creds,
    make_request,
    sign,
)

from refundwatch.gateways.base import GatewayError
from refundwatch.gateways.checkout import CheckoutGateway

GATEWAY = CheckoutGateway()
CARD = "4242424242424242"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"key {SECRET_KEY} used", SECRET_KEY),
        (f"key={PREVIOUS_KEY}", PREVIOUS_KEY),
        ("sk_m73dzbpy7cf3gfd46xr4yj5xo4#", "m73dzbpy7cf3gfd46xr4yj5xo4#"),
        (f"Authorization: Bearer {SECRET_KEY}", SECRET_KEY),
        (f"authorization: {PREVIOUS_KEY}", PREVIOUS_KEY),
        (f'{{"webhook_signature_key": "{SIGNATURE_KEY}"}}', SIGNATURE_KEY),
        ("webhook_authorization=opaque-shared-value", "opaque-shared-value"),
        (f"secret_key = '{SECRET_KEY}'", SECRET_KEY),
        ("Cko-Signature: " + sign(b"{}"), sign(b"{}")),
        ("signature " + sign(b"{}"), sign(b"{}")),
        (f"card {CARD} declined", CARD),
        ("card 4242 4242 4242 4242 declined", "4242 4242 4242 4242"),
        ("card 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ],
)
def test_secrets_and_cards_are_masked(text: str, secret: str) -> None:
    scrubbed = GATEWAY.scrub(text)
    assert secret not in scrubbed
    assert "REDACTED" in scrubbed or "sk_****" in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        f"refund {REFUND_ID} key {KEY}",
        f"payment {PAYMENT_ID} action {ACTION_ID}",
        "amount 1050 EUR, response_code 10000, request_id 0HL80RJLS76I7",
        "order 1234567890123",  # 13 digits failing Luhn: not card-like
        "pk_sbox_publickeyvalue is public",
    ],
)
def test_ids_stay_readable(text: str) -> None:
    assert GATEWAY.scrub(text) == text


async def test_exchanges_and_errors_carry_no_secret() -> None:
    body = f'{{"echo": "Bearer {SECRET_KEY}", "card": "{CARD}", "error_codes": ["{SECRET_KEY}"]}}'
    mock = CheckoutMock(lambda request: httpx2.Response(422, content=body.encode()))
    async with mock.client() as client:
        with pytest.raises(GatewayError) as caught:
            await GATEWAY.create_refund(client, make_creds(), make_request())
    err = caught.value
    assert err.exchange is not None
    for text in (err.message, err.exchange.excerpt, repr(err.processor_code)):
        assert SECRET_KEY not in text
        assert CARD not in text


def test_credentials_never_print() -> None:
    creds = make_creds(webhook_authorization="opaque-shared-value")
    assert SECRET_KEY not in repr(creds)
    assert SIGNATURE_KEY not in repr(creds)
    assert "opaque-shared-value" not in repr(creds)
