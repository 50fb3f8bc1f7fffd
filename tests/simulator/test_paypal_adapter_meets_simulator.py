"""refundwatch's PayPal adapter against the PayPal simulator, in both directions and without the rest of
the stack: its token, refund, read and health calls are answered, and the webhook the simulator sends
for that refund verifies through the adapter in both of PayPal's ways — offline with the signing
certificate (fetched from the simulator, chained to its test CA), and online through the simulator's
``verify-webhook-signature`` — while the same delivery with a changed body does not.

The two were written apart (STYLE rule 12), each from PayPal's documents and SDK; this is where a
shared misunderstanding would show.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from refundwatch.config import reset_settings
from refundwatch.gateways.base import Credentials, GatewayStatus, RefundRequest, WebhookVerificationError
from refundwatch.gateways.paypal import PayPalGateway
from refundwatch.lib.crypto import Secret

from .conftest import Simulator, wait_for
from .paypal_kit import (
    CLIENT_ID,
    CLIENT_SECRET,
    WEBHOOK_ID,
    PayPalReceiver,
    capture,
    paypal_cert_dir,
    paypal_receiver,
    paypal_simulator_process,
    psim,
)

__all__ = ["paypal_cert_dir", "paypal_receiver", "paypal_simulator_process", "psim"]

GATEWAY = PayPalGateway()


def creds(sim: Simulator, verification: str) -> Credentials:
    return Credentials(
        connection_name=f"paypal-{uuid.uuid4().hex[:8]}",  # the token cache is process-wide
        processor="paypal",
        base_url=f"{sim.url}/paypal",
        secrets={"client_secret": Secret(CLIENT_SECRET)},
        options={"client_id": CLIENT_ID, "webhook_id": WEBHOOK_ID, "webhook_verification": verification},
        timeout_seconds=5.0,
    )


@pytest.fixture
def trusting_the_simulator(
    psim: Simulator, paypal_cert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """refundwatch's settings as a deployment trusting this simulator's CA and host would have them."""
    port = psim.url.rsplit(":", 1)[1]
    monkeypatch.setenv("REFUNDWATCH_MODE", "test")
    monkeypatch.setenv("REFUNDWATCH_PAYPAL_CERT_HOSTS", f"localhost:{port}")
    monkeypatch.setenv("REFUNDWATCH_PAYPAL_TRUST_STORE", str(paypal_cert_dir / "ca.pem"))
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


@pytest.mark.parametrize("verification", ["certificate", "api"])
def test_the_adapter_refunds_reads_and_verifies_the_simulators_webhook(
    psim: Simulator, paypal_receiver: PayPalReceiver, trusting_the_simulator: None, verification: str
) -> None:
    connection = creds(psim, verification)
    capture_id = capture(psim, 10_000, "EUR")
    refund_id = str(uuid.uuid4())
    request = RefundRequest(
        refund_id=refund_id,
        payment_reference=capture_id,
        amount=1_234,
        currency="EUR",
        reason="requested_by_customer",
        idempotency_key=f"rw_{uuid.uuid4().hex}",
    )

    async def refund_and_read() -> tuple[GatewayStatus, GatewayStatus, bool]:
        async with httpx2.AsyncClient() as client:
            made = await GATEWAY.create_refund(client, connection, request)
            assert (made.amount, made.currency, made.idempotency_key) == (
                1_234,
                "EUR",
                request.idempotency_key,
            )
            assert made.gateway_refund_id is not None
            read = await GATEWAY.get_refund(client, connection, made.gateway_refund_id)
            health = await GATEWAY.health_check(client, connection)
            return made.status, read.status, health.ok

    assert asyncio.run(refund_and_read()) == (GatewayStatus.SUCCEEDED, GatewayStatus.SUCCEEDED, True)

    deliveries = wait_for(lambda: paypal_receiver.accepted("PAYMENT.CAPTURE.REFUNDED"), timeout=10.0)
    delivery = deliveries[0]

    async def verify(body: bytes) -> list[object]:
        async with httpx2.AsyncClient() as client:
            return list(await GATEWAY.verify_items_remote(client, connection, delivery.headers, body))

    (item,) = asyncio.run(verify(delivery.body))
    (event,) = GATEWAY.parse_webhook(delivery.body)
    assert (event.refund_id, event.idempotency_key, event.status) == (
        refund_id,
        request.idempotency_key,
        GatewayStatus.SUCCEEDED,
    )
    assert (event.amount, event.currency) == (1_234, "EUR")
    assert getattr(item, "replay_id", None) == delivery.header("PAYPAL-TRANSMISSION-ID")
    with pytest.raises(WebhookVerificationError):
        asyncio.run(verify(delivery.body.replace(b"12.34", b"92.34")))
