"""The Checkout.com simulator under test: two connections, a webhook receiver, the official SDK pointed at it.

Import the fixtures into a test module (``from .checkout_kit import csim, ...``): each module that does
runs its own simulator.

- ``checkout-eu``: a current-platform key (``Bearer sk_sbox_…``), with a webhook authorization value;
- ``checkout-prev``: a previous-platform key (bare ``sk_test_<uuid>``), without one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import requests
from checkout_sdk.checkout_sdk import CheckoutSdk
from checkout_sdk.environment import Environment
from checkout_sdk.http_client_interface import HttpClientBuilderInterface

from .conftest import Simulator, start_simulator, stop_simulator

# Keys in the forms checkout-sdk 4.8.1 accepts: ``^sk_(sbox_)?[a-z2-7]{26}[a-z2-7*#$=]$`` (current
# platform) and ``^sk_(test_)?<uuid>$`` (previous platform).
SECRET_KEY = "sk_sbox_m73dzbpy7cf3gfd46xr4yj5xo4e"
SIGNATURE_KEY = "0c1a6b4f-7a28-4b2e-9c41-simulator-signing"
WEBHOOK_AUTHORIZATION = "cko-webhook-auth-7f3a9c"
PREVIOUS_KEY = "sk_test_fde517a8-3f01-41ef-b4bd-4282384b0a64"
PREVIOUS_SIGNATURE_KEY = "previous-platform-signature-key"
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def new_payment_id() -> str:
    return "pay_" + "".join(random.choices(_BASE32, k=26))


def signature(body: bytes, key: str = SIGNATURE_KEY) -> str:
    """``Cko-Signature`` as Checkout.com documents it: hex HMAC-SHA256 of the raw body (stdlib only)."""
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """One POST that reached the receiver, and the status it was answered with."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class CheckoutReceiver:
    """Records every webhook POST (failed ones too); it can answer the next N with a 500."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = 200
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = 500
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.deliveries.append(Delivery(self.path, headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def clear(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.fail_next = 0

    def all(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def accepted(self, event_type: str | None = None, action_id: str | None = None) -> list[Delivery]:
        return [
            d
            for d in self.all()
            if d.answered == 200
            and (event_type is None or d.json()["type"] == event_type)
            and (action_id is None or d.json()["data"]["action_id"] == action_id)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Session(HttpClientBuilderInterface):
    """The SDK's HTTP client: a requests session that never takes a proxy from the environment."""

    def get_client(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session


def environment(sim: Simulator) -> Environment:
    """Every one of the SDK's hosts on the simulator's ``/checkout`` (GATEWAYS.md)."""
    base = f"{sim.url}/checkout/"
    return Environment(
        base_uri=base,
        authorization_uri=base + "connect/token",
        files_uri=base,
        transfers_uri=base,
        balances_uri=base,
        forward_uri=base,
        identity_uri=base,
        is_sandbox=True,
    )


def sdk(sim: Simulator, key: str = SECRET_KEY) -> Any:
    """checkout-sdk's current-platform API (``Authorization: Bearer sk_…``) on the shared hosts."""
    with pytest.warns(DeprecationWarning, match="use_legacy_domain"):  # deprecated, and what we need
        builder = CheckoutSdk.builder().use_legacy_domain()
    builder = builder.environment(environment(sim)).http_client_builder(_Session()).secret_key(key)
    with warnings.catch_warnings():  # "Risk endpoints are no longer supported officially"
        warnings.simplefilter("ignore", DeprecationWarning)
        return builder.build()


def previous_sdk(sim: Simulator, key: str = PREVIOUS_KEY) -> Any:
    """checkout-sdk's previous-platform API (``Authorization: sk_…``, no Bearer)."""
    builder = CheckoutSdk.builder().previous().environment(environment(sim))
    builder = builder.http_client_builder(_Session()).secret_key(key)
    with warnings.catch_warnings():  # "Risk endpoints are no longer supported officially"
        warnings.simplefilter("ignore", DeprecationWarning)
        return builder.build()


def payment(sim: Simulator, amount: int = 10_000, currency: str = "EUR") -> str:
    payment_id = new_payment_id()
    sim.payment(payment_id, amount, currency, processor="checkout")
    return payment_id


def refund(
    sim: Simulator,
    payment_id: str,
    body: dict[str, Any] | None,
    *,
    key: str | None = None,
    secret: str = SECRET_KEY,
    bearer: bool = True,
    timeout: float = 10.0,
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {secret}" if bearer else secret}
    if key is not None:
        headers["Cko-Idempotency-Key"] = key
    return sim.http.post(
        f"{sim.url}/checkout/payments/{payment_id}/refunds", json=body, headers=headers, timeout=timeout
    )


def read(sim: Simulator, path: str, secret: str = SECRET_KEY) -> httpx2.Response:
    return sim.http.get(f"{sim.url}/checkout{path}", headers={"Authorization": f"Bearer {secret}"})


def ledger(sim: Simulator) -> list[dict[str, Any]]:
    return sim.ledger("checkout")


@pytest.fixture(scope="session")
def checkout_receiver() -> Iterator[CheckoutReceiver]:
    receiver = CheckoutReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def checkout_simulator_process(
    tmp_path_factory: pytest.TempPathFactory, checkout_receiver: CheckoutReceiver
) -> Iterator[Simulator]:
    path: Path = tmp_path_factory.mktemp("checkout") / "connections.toml"
    path.write_text(
        f"""
[[connection]]
name = "checkout-eu"
processor = "checkout"
secret_key = "{SECRET_KEY}"
webhook_signature_key = "{SIGNATURE_KEY}"
webhook_authorization = "{WEBHOOK_AUTHORIZATION}"

[[connection]]
name = "checkout-prev"
processor = "checkout"
platform = "previous"
secret_key = "{PREVIOUS_KEY}"
webhook_signature_key = "{PREVIOUS_SIGNATURE_KEY}"
""",
        encoding="utf-8",
    )
    template = f"http://127.0.0.1:{checkout_receiver.port}/webhooks/{{connection}}"
    simulator = start_simulator(connections=path, webhook_url=template)
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def csim(checkout_simulator_process: Simulator, checkout_receiver: CheckoutReceiver) -> Simulator:
    """The simulator with two Checkout.com connections, sending webhooks to ``checkout_receiver``; reset."""
    checkout_simulator_process.reset()
    checkout_receiver.clear()
    return checkout_simulator_process
