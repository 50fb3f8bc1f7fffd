"""The PayPal simulator under test: two connections, a webhook receiver, the official SDK pointed at it.

Import the fixtures into a test module (``from .paypal_kit import psim, ...``): each module that does
runs its own simulator, with its own certificate directory.
"""

from __future__ import annotations

import base64
import json
import os
import random
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
import requests
from paypalserversdk.configuration import Configuration, Environment, Server
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from .conftest import Simulator, free_port, stop_simulator, wait_for

CLIENT_ID = "AUv8rrc_P-EbP2E0mpb49BV7rFt3Usr-vdUZO8VGOnjRehGHBXkSzchr37SYF2GNdQFYSp72jh5QUhzG"
CLIENT_SECRET = "EMnAWe06ioGtouJs7gLYT9chK9-2jJ--7MKRXpI8FesmY_2Kp-d_7aCqff7M9moEJBvuXoBO4clKtY0v"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
US_CLIENT_ID = "AZsimulatorUSclient0002"
US_CLIENT_SECRET = "EKsimulatorUSsecret0002"
US_WEBHOOK_ID = "1JE4291016473214C"


def free_capture_id() -> str:
    return "".join(random.choices(string.ascii_uppercase + string.digits, k=17))


@dataclass
class Delivery:
    """One POST that reached the receiver, and the status it was answered with."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        return self.headers[name.lower()]


class PayPalReceiver:
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

    def accepted(self, event_type: str | None = None) -> list[Delivery]:
        with self._lock:
            items = [d for d in self.deliveries if d.answered == 200]
        return [d for d in items if event_type is None or d.json()["event_type"] == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SimulatorConfiguration(Configuration):
    """paypal-server-sdk's configuration, every call sent to the simulator (GATEWAYS.md)."""

    def __init__(self, base_uri: str, **kwargs: Any) -> None:
        self._simulator_base_uri = base_uri
        super().__init__(**kwargs)

    def get_base_uri(self, server: Server = Server.DEFAULT) -> str:
        return self._simulator_base_uri


def sdk_client(
    sim: Simulator, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET
) -> PaypalServersdkClient:
    session = requests.Session()
    session.trust_env = False  # loopback only
    config = SimulatorConfiguration(
        f"{sim.url}/paypal",
        http_client_instance=session,
        timeout=10,
        max_retries=0,
        environment=Environment.SANDBOX,
        client_credentials_auth_credentials=ClientCredentialsAuthCredentials(client_id, client_secret),
    )
    return PaypalServersdkClient(config=config)


def basic(client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def get_token(sim: Simulator, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> str:
    response = sim.http.post(
        f"{sim.url}/paypal/v1/oauth2/token",
        content=b"grant_type=client_credentials",
        headers={
            "Authorization": basic(client_id, client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def capture(sim: Simulator, amount: int = 10_000, currency: str = "EUR") -> str:
    capture_id = free_capture_id()
    sim.payment(capture_id, amount, currency, processor="paypal")
    return capture_id


def refund(
    sim: Simulator,
    token: str,
    capture_id: str,
    body: dict[str, Any] | None,
    *,
    request_id: str | None = None,
    representation: bool = True,
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if request_id is not None:
        headers["PayPal-Request-Id"] = request_id
    if representation:
        headers["Prefer"] = "return=representation"
    return sim.http.post(
        f"{sim.url}/paypal/v2/payments/captures/{capture_id}/refund",
        json=body,
        headers=headers,
    )


def eur(value: str, **extra: str) -> dict[str, Any]:
    return {"amount": {"currency_code": "EUR", "value": value}, **extra}


def start_paypal_simulator(
    connections: Path, webhook_url: str, cert_dir: Path, *, public_url: bool = True
) -> Simulator:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "refundwatch.simulator",
        "--port",
        str(port),
        "--connections",
        str(connections),
        "--webhook-url",
        webhook_url,
        "--paypal-cert-dir",
        str(cert_dir),
    ]
    if public_url:
        command += ["--public-url", f"http://localhost:{port}/"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    simulator = Simulator(url=f"http://127.0.0.1:{port}", process=process, server="auto")

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


@pytest.fixture(scope="session")
def paypal_receiver() -> Iterator[PayPalReceiver]:
    receiver = PayPalReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def paypal_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("paypal-certs")


@pytest.fixture(scope="session")
def paypal_simulator_process(
    tmp_path_factory: pytest.TempPathFactory, paypal_receiver: PayPalReceiver, paypal_cert_dir: Path
) -> Iterator[Simulator]:
    path = tmp_path_factory.mktemp("paypal") / "connections.toml"
    path.write_text(
        f"""
[[connection]]
name = "paypal-eu"
processor = "paypal"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
webhook_id = "{WEBHOOK_ID}"

[[connection]]
name = "paypal-us"
processor = "paypal"
client_id = "{US_CLIENT_ID}"
client_secret = "{US_CLIENT_SECRET}"
webhook_id = "{US_WEBHOOK_ID}"
""",
        encoding="utf-8",
    )
    template = f"http://127.0.0.1:{paypal_receiver.port}/webhooks/{{connection}}"
    simulator = start_paypal_simulator(path, template, paypal_cert_dir)
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def psim(paypal_simulator_process: Simulator, paypal_receiver: PayPalReceiver) -> Simulator:
    """The simulator with two PayPal connections, sending webhooks to ``paypal_receiver``; reset."""
    paypal_simulator_process.reset()
    paypal_receiver.clear()
    return paypal_simulator_process
