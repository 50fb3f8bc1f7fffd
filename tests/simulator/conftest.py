"""Fixtures for the gateway simulator tests: the simulator runs as a real subprocess.

The official ``stripe`` SDK is the witness that the simulator speaks Stripe's protocol.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import Adyen
import httpx2
import pytest
import requests
import stripe

from .adyen_receiver import AdyenReceiver

SIMULATOR_KEY = "sk_test_simulator0001"
EU_KEY = "sk_test_stripe_eu_0001"
EU_SECRET = "whsec_eu_0123456789abcdef"
US_KEY = "sk_test_stripe_us_0002"
US_SECRET = "whsec_us_fedcba9876543210"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class Simulator:
    """A running simulator subprocess and helpers for its control API."""

    url: str
    process: subprocess.Popen[bytes]
    server: str
    http: httpx2.Client = field(default_factory=lambda: httpx2.Client(timeout=10.0, trust_env=False))

    @property
    def stripe_url(self) -> str:
        return f"{self.url}/stripe"

    def control(self, method: str, path: str, body: Any = None) -> httpx2.Response:
        return self.http.request(method, f"{self.url}/_control{path}", json=body)

    def reset(self) -> None:
        assert self.control("POST", "/reset").status_code == 200

    def faults(self, **settings: Any) -> dict[str, Any]:
        response = self.control("POST", "/faults", settings)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def payment(
        self, reference: str, amount: int = 10_000, currency: str = "eur", processor: str = "stripe"
    ) -> None:
        body = {
            "processor": processor,
            "payment_reference": reference,
            "amount": amount,
            "currency": currency,
        }
        response = self.control("POST", "/payments", body)
        assert response.status_code == 201, response.text

    def ledger(self, processor: str | None = None) -> list[dict[str, Any]]:
        response = self.control("GET", "/ledger" + (f"?processor={processor}" if processor else ""))
        assert response.status_code == 200
        rows: list[dict[str, Any]] = response.json()
        return rows

    def webhooks(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.control("GET", "/webhooks").json()
        return rows

    def client(self, key: str = SIMULATOR_KEY, timeout: float = 10.0) -> stripe.StripeClient:
        return stripe_client(self.stripe_url, key, timeout)


def stripe_client(base_url: str, key: str = SIMULATOR_KEY, timeout: float = 10.0) -> stripe.StripeClient:
    session = requests.Session()
    session.trust_env = False  # loopback only, never an environment proxy
    return stripe.StripeClient(
        key,
        base_addresses={"api": base_url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout, session=session),
    )


def start_simulator(
    *, server: str = "auto", connections: Path | None = None, webhook_url: str | None = None
) -> Simulator:
    if server == "auto":  # resolved as the simulator does, so tests know which server runs
        server = os.environ.get("REFUNDWATCH_SIMULATOR_TEST_SERVER") or (
            "uvicorn" if importlib.util.find_spec("uvicorn") is not None else "granian"
        )
    port = free_port()
    command = [sys.executable, "-m", "refundwatch.simulator", "--port", str(port), "--server", server]
    if connections is not None:
        command += ["--connections", str(connections)]
    if webhook_url is not None:
        command += ["--webhook-url", webhook_url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env)
    simulator = Simulator(url=f"http://127.0.0.1:{port}", process=process, server=server)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"simulator exited with {process.returncode}")
        try:
            return simulator.control("GET", "/health").status_code == 200
        except httpx2.TransportError:
            return False

    try:
        wait_for(answers, timeout=30.0, interval=0.1)
    except BaseException:
        stop_simulator(simulator)
        raise
    return simulator


def stop_simulator(simulator: Simulator) -> None:
    simulator.http.close()
    simulator.process.terminate()
    try:
        simulator.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        simulator.process.kill()
        simulator.process.wait(timeout=10)


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[Simulator]:
    simulator = start_simulator()
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def sim(simulator_process: Simulator) -> Simulator:
    """The shared simulator (accepts any ``sk_test_`` key, no webhooks), reset for this test."""
    simulator_process.reset()
    return simulator_process


# -- webhooks ---------------------------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A tiny HTTP endpoint that records webhook deliveries; it can fail the next N of them."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    else:
                        receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(500 if failing else 200)
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
            self.received.clear()
            self.fail_next = 0

    def events(self, refund_id: str | None = None) -> list[Received]:
        with self._lock:
            items = list(self.received)
        return [r for r in items if refund_id is None or r.json()["data"]["object"]["id"] == refund_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def connections_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("simulator") / "connections.toml"
    path.write_text(
        f"""
[[connection]]
name = "stripe-eu"
processor = "stripe"
api_key = "{EU_KEY}"
webhook_secret = "{EU_SECRET}"

[[connection]]
name = "stripe-us"
processor = "stripe"
api_key = "{US_KEY}"
webhook_secret = "{US_SECRET}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def webhook_simulator_process(
    connections_file: Path, webhook_receiver: WebhookReceiver
) -> Iterator[Simulator]:
    template = f"http://127.0.0.1:{webhook_receiver.port}/webhooks/{{connection}}"
    simulator = start_simulator(connections=connections_file, webhook_url=template)
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def wsim(webhook_simulator_process: Simulator, webhook_receiver: WebhookReceiver) -> Simulator:
    """A simulator with a connections file, sending webhooks to ``webhook_receiver``; reset for this test."""
    webhook_simulator_process.reset()
    webhook_receiver.clear()
    return webhook_simulator_process


# -- Adyen ------------------------------------------------------------------------------------------
ADYEN_KEY = "AQEyhmfxsim_adyen_eu_0001"
ADYEN_MERCHANT = "RefundwatchEU"
ADYEN_HMAC = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ADYEN_US_KEY = "AQEyhmfxsim_adyen_us_0002"
ADYEN_US_MERCHANT = "RefundwatchUS"
ADYEN_US_HMAC = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
ADYEN_WEBHOOK_USER = "adyen-notifier"
ADYEN_WEBHOOK_PASSWORD = "s3cret-basic"


@pytest.fixture(scope="session")
def adyen_receiver() -> Iterator[AdyenReceiver]:
    receiver = AdyenReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def adyen_simulator_process(
    tmp_path_factory: pytest.TempPathFactory, adyen_receiver: AdyenReceiver
) -> Iterator[Simulator]:
    path = tmp_path_factory.mktemp("adyen") / "connections.toml"
    path.write_text(
        f"""
[[connection]]
name = "adyen-eu"
processor = "adyen"
api_key = "{ADYEN_KEY}"
merchant_account = "{ADYEN_MERCHANT}"
hmac_key = "{ADYEN_HMAC}"

[[connection]]
name = "adyen-us"
processor = "adyen"
api_key = "{ADYEN_US_KEY}"
merchant_account = "{ADYEN_US_MERCHANT}"
hmac_key = "{ADYEN_US_HMAC}"
webhook_username = "{ADYEN_WEBHOOK_USER}"
webhook_password = "{ADYEN_WEBHOOK_PASSWORD}"
""",
        encoding="utf-8",
    )
    template = f"http://127.0.0.1:{adyen_receiver.port}/webhooks/{{connection}}"
    simulator = start_simulator(connections=path, webhook_url=template)
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def asim(adyen_simulator_process: Simulator, adyen_receiver: AdyenReceiver) -> Simulator:
    """A simulator with two Adyen connections, notifying ``adyen_receiver``; reset for this test."""
    adyen_simulator_process.reset()
    adyen_receiver.clear()
    return adyen_simulator_process


def adyen_client(simulator: Simulator, key: str = ADYEN_KEY) -> Adyen.Adyen:
    """The official Adyen SDK, its Checkout modifications and payments APIs pointed at the simulator."""
    ady = Adyen.Adyen(xapikey=key, platform="test", http_timeout=10)
    base = f"{simulator.url}/adyen/v72"
    ady.checkout.modifications_api.baseUrl = base
    ady.checkout.payments_api.baseUrl = base
    return ady


def adyen_payment(simulator: Simulator, amount: int = 10_000, currency: str = "EUR") -> str:
    """Register a captured Adyen payment; returns its pspReference."""
    psp = "".join(random.choices(string.digits + string.ascii_uppercase, k=16))
    simulator.payment(psp, amount, currency, processor="adyen")
    return psp
