"""webhooks.services.receive with a gateway whose verification needs requests (Capabilities.
verifies_remotely): it gets the runtime's shared client, runs under
REFUNDWATCH_WEBHOOK_VERIFY_TIMEOUT_SECONDS. A refusal is rejected and recorded exactly as a bad
signature is; a timeout or an unreachable verifier is no verdict: 503, audited, not counted against the
sender. The storing side is replaced here (it has its own tests); the gateway is a fake,
chosen by capability, not by name."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from refundwatch.config import Settings
from refundwatch.connections.services import ConnectionInfo
from refundwatch.gateways.base import (
    Capabilities,
    Credentials,
    WebhookEvent,
    WebhookItem,
    WebhookVerificationError,
    WebhookVerificationUnavailable,
)
from refundwatch.lib.exceptions import AuthenticationFailed, Unavailable
from refundwatch.webhooks import services

BODY = b'{"id": "WH-1", "event_type": "PAYMENT.CAPTURE.REFUNDED"}'


@dataclass
class FakeGateway:
    capabilities: Capabilities
    outcome: str = "accept"  # accept | refuse | hang | down
    remote_calls: list[httpx2.AsyncClient] = field(default_factory=list)
    local_calls: int = 0
    processor: str = "fake"

    def verify_items(
        self, creds: Credentials, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> list[WebhookItem]:
        self.local_calls += 1
        return [WebhookItem(body)]

    async def verify_items_remote(
        self,
        client: httpx2.AsyncClient,
        creds: Credentials,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float | None = None,
    ) -> list[WebhookItem]:
        self.remote_calls.append(client)
        if self.outcome == "refuse":
            raise WebhookVerificationError("the certificate does not chain to a trusted authority")
        if self.outcome == "hang":
            await asyncio.sleep(30)
        if self.outcome == "down":
            raise WebhookVerificationUnavailable("the certificate host could not be reached (ConnectError)")
        return [WebhookItem(body)]

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return [WebhookEvent("WH-1", "PAYMENT.CAPTURE.REFUNDED", "1JU0", None, None)]


class Connections:
    async def by_name(self, name: str) -> ConnectionInfo:
        creds = Credentials("fake-eu", "fake", "https://fake.example", {})
        return ConnectionInfo(uuid.uuid4(), name, "fake", True, 60, creds)


@dataclass
class FakeRuntime:
    settings: Settings
    http: httpx2.AsyncClient
    connections: Connections = field(default_factory=Connections)
    redis: None = None

    def require_http(self) -> httpx2.AsyncClient:
        return self.http


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {"rejections": [], "stored": [], "audited": []}

    async def reject(rt: Any, connection: str, reason: str, actor: Any) -> None:
        seen["rejections"].append((connection, reason, actor.type))

    async def audit(rt: Any, action: str, connection: str, reason: str, actor: Any) -> None:
        seen["audited"].append((action, connection, reason))

    def new_rows(connection_id: Any, name: str, events: Any, actor: Any, now: Any) -> list[Any]:
        seen["stored"].extend(event.event_id for _, event in events)
        return []

    async def store_and_apply(*args: Any) -> tuple[set[Any], set[Any]]:
        return set(), set()

    monkeypatch.setattr(services, "_reject", reject)
    monkeypatch.setattr(services, "_audit_refusal", audit)
    monkeypatch.setattr(services, "new_rows", new_rows)
    monkeypatch.setattr(services.fastpath, "store_and_apply", store_and_apply)
    return seen


async def receive(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, timeout: float = 5.0) -> Any:
    monkeypatch.setattr(services, "get_gateway", lambda processor: gateway)
    settings = Settings(mode="test", webhook_verify_timeout_seconds=timeout)
    async with httpx2.AsyncClient() as client:
        rt = FakeRuntime(settings, client)
        receipt = await services.receive(rt, "fake-eu", {}, BODY, ip="203.0.113.9", user_agent="PayPal/AUHD")  # type: ignore[arg-type]
        assert gateway.remote_calls in ([], [client])
        return receipt


async def test_a_remote_verifier_gets_the_shared_client_and_its_items_are_stored(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway(Capabilities(verifies_remotely=True))
    receipt = await receive(gateway, monkeypatch)
    assert len(gateway.remote_calls) == 1
    assert gateway.local_calls == 0
    assert world["stored"] == ["WH-1"]
    assert world["rejections"] == []
    assert receipt.refused == 0


async def test_a_remote_refusal_is_rejected_like_a_bad_signature(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway(Capabilities(verifies_remotely=True), outcome="refuse")
    with pytest.raises(AuthenticationFailed) as caught:
        await receive(gateway, monkeypatch)
    assert caught.value.code == "invalid_signature"
    assert caught.value.status_code == 401
    assert "does not chain to a trusted authority" in str(caught.value)
    assert world["rejections"] == [
        ("fake-eu", "the certificate does not chain to a trusted authority", "processor")
    ]
    assert world["stored"] == []


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("hang", "verification did not finish within 0.2 s"),
        ("down", "the certificate host could not be reached (ConnectError)"),
    ],
)
async def test_a_verifier_that_is_slow_or_down_gives_no_verdict(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, outcome: str, reason: str
) -> None:
    """Running out of time, or a certificate host that cannot be reached, says nothing about the
    delivery: 503 (the processor re-sends), audited as unverified, and not counted against the sender,
    whose deliveries would otherwise be refused for a while after a certificate host's outage."""
    gateway = FakeGateway(Capabilities(verifies_remotely=True), outcome=outcome)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await receive(gateway, monkeypatch, timeout=0.2)
    assert time.monotonic() - started < 5
    assert (caught.value.status_code, caught.value.code) == (503, "verification_unavailable")
    assert reason in str(caught.value)
    assert world["rejections"] == []
    assert world["audited"] == [("webhook:event:unverified", "fake-eu", reason)]
    assert world["stored"] == []


async def test_a_local_verifier_keeps_the_sync_path(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway(Capabilities())
    await receive(gateway, monkeypatch)
    assert gateway.local_calls == 1
    assert gateway.remote_calls == []
    assert world["stored"] == ["WH-1"]


def test_stripe_and_adyen_declare_local_verification() -> None:
    from refundwatch.gateways.registry import get_gateway

    for name in ("stripe", "adyen"):
        assert get_gateway(name).capabilities.verifies_remotely is False
