"""Injected faults (CONTRACT §7), seen through the official Stripe SDK and raw sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx2
import pytest
import stripe

from .conftest import SIMULATOR_KEY, Simulator, start_simulator, stop_simulator, stripe_client


def test_latency_and_jitter(sim: Simulator) -> None:
    sim.payment("pi_slow", amount=1000)
    client = sim.client()
    client.v1.balance.retrieve()  # warm the connection
    sim.faults(latency_ms=300, jitter_ms=50)
    started = time.monotonic()
    client.v1.refunds.create(params={"payment_intent": "pi_slow", "amount": 10})
    elapsed = time.monotonic() - started
    assert 0.24 <= elapsed < 2.0


def test_error_rate_answers_5xx_and_executes_nothing(sim: Simulator) -> None:
    sim.payment("pi_5xx", amount=1000)
    sim.faults(error_rate=1.0)
    client = sim.client()
    statuses = set()
    for i in range(12):
        with pytest.raises(stripe.APIError) as caught:
            client.v1.refunds.create(
                params={"payment_intent": "pi_5xx"}, options={"idempotency_key": f"e{i}"}
            )
        statuses.add(caught.value.http_status)
        assert caught.value.json_body["error"]["type"] == "api_error"  # type: ignore[index]
    assert statuses <= {500, 502, 503}
    assert sim.ledger() == []
    # Nothing was saved for the key either: once the errors stop, the same key executes.
    sim.faults(error_rate=0.0)
    refund = client.v1.refunds.create(params={"payment_intent": "pi_5xx"}, options={"idempotency_key": "e0"})
    assert refund.amount == 1000
    assert len(sim.ledger()) == 1


def test_outage_fails_everything_fast_including_health_checks(sim: Simulator) -> None:
    sim.payment("pi_outage", amount=1000)
    sim.faults(outage=True, latency_ms=5000)
    client = sim.client()
    started = time.monotonic()
    with pytest.raises(stripe.APIError) as caught:
        client.v1.balance.retrieve()
    assert caught.value.http_status == 503
    with pytest.raises(stripe.APIError) as refund_error:
        client.v1.refunds.create(params={"payment_intent": "pi_outage"}, options={"idempotency_key": "o"})
    assert refund_error.value.http_status == 503
    assert time.monotonic() - started < 2.0  # immediately, no injected latency
    assert sim.ledger() == []
    sim.faults(outage=False, latency_ms=0)
    assert client.v1.balance.retrieve().object == "balance"


def test_faults_are_per_processor(sim: Simulator) -> None:
    sim.payment("pi_other_down", amount=1000)
    config = sim.faults(processor="adyen", outage=True)
    assert config["adyen"]["outage"] is True
    assert config["stripe"]["outage"] is False
    assert sim.client().v1.refunds.create(params={"payment_intent": "pi_other_down"}).amount == 1000
    everything = sim.faults(error_rate=0.25)  # no processor: all of them
    assert all(c["error_rate"] == 0.25 for c in everything.values())
    assert everything["adyen"]["outage"] is True  # fields not given keep their value
    assert sim.control("GET", "/faults").json() == everything


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"outage": "yes"},
        {"processor": "acme"},
        {"processor": ["stripe"], "error_rate": 0},  # was a 500: a list is no dictionary key
        {"processor": {"a": 1}},
        {"bogus": 1},
        [1, 2],
    ],
)
def test_bad_fault_settings_are_rejected(sim: Simulator, body: object) -> None:
    response = sim.control("POST", "/faults", body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert response.json()["code"] == "invalid_body"


def test_timeout_executes_then_hangs_and_the_same_key_replays(sim: Simulator) -> None:
    sim.payment("pi_timeout", amount=1000)
    sim.faults(timeout_rate=1.0, timeout_ms=5000)
    impatient = stripe_client(sim.stripe_url, timeout=0.5)
    params: stripe.params.RefundCreateParams = {"payment_intent": "pi_timeout", "amount": 400}
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.refunds.create(params=params, options={"idempotency_key": "t-1"})
    # The outcome was unknown to the client, but the processor executed it.
    ledger = sim.ledger()
    assert len(ledger) == 1
    assert ledger[0]["idempotency_key"] == "t-1"
    sim.faults(timeout_rate=0.0)
    started = time.monotonic()
    retried = sim.client().v1.refunds.create(params=params, options={"idempotency_key": "t-1"})
    assert time.monotonic() - started < 3.0  # the replay does not wait for the hung request
    assert retried.id == ledger[0]["gateway_refund_id"]
    assert retried.last_response is not None
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(sim.ledger()) == 1


def test_timeout_answers_after_timeout_ms(sim: Simulator) -> None:
    sim.payment("pi_hang", amount=1000)
    sim.faults(timeout_rate=1.0, timeout_ms=700)
    started = time.monotonic()
    refund = sim.client().v1.refunds.create(params={"payment_intent": "pi_hang"})
    assert time.monotonic() - started >= 0.65
    assert refund.amount == 1000


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def any_server(request: pytest.FixtureRequest, simulator_process: Simulator) -> Iterator[Simulator]:
    """The simulator under each server it supports (the session's own one is reused)."""
    if request.param == "uvicorn":
        pytest.importorskip("uvicorn")
    if simulator_process.server == request.param:
        yield simulator_process
        return
    simulator = start_simulator(server=request.param)
    yield simulator
    stop_simulator(simulator)


def test_reset_is_a_connection_error_and_half_of_them_executed(any_server: Simulator) -> None:
    sim = any_server
    sim.reset()
    sim.payment("pi_reset", amount=1_000_000)
    sim.faults(reset_rate=1.0)
    client = sim.client()
    keys = [f"reset-{i}" for i in range(40)]
    for key in keys:
        with pytest.raises(stripe.APIConnectionError):
            client.v1.refunds.create(
                params={"payment_intent": "pi_reset", "amount": 10}, options={"idempotency_key": key}
            )
    executed = {row["idempotency_key"] for row in sim.ledger()}
    assert 0 < len(executed) < len(keys)  # about half: P(all or none of 40) is negligible
    # Retrying every key once the connection is healthy refunds each exactly once.
    sim.faults(reset_rate=0.0)
    for key in keys:
        refund = client.v1.refunds.create(
            params={"payment_intent": "pi_reset", "amount": 10}, options={"idempotency_key": key}
        )
        assert refund.last_response is not None
        assert (refund.last_response.headers.get("Idempotent-Replayed") == "true") == (key in executed)
    assert len(sim.ledger()) == len(keys)


def _raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_reset_on_the_wire(any_server: Simulator) -> None:
    """uvicorn drops the connection with no answer at all; granian can only cut the answer short."""
    sim = any_server
    sim.reset()
    sim.faults(reset_rate=1.0)
    request = (
        f"GET /stripe/v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SIMULATOR_KEY}\r\n\r\n"
    ).encode()
    try:
        received = _raw_exchange(sim.url, request)
    except ConnectionResetError:
        received = b""
    if sim.server == "uvicorn":
        assert received == b""
    else:
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: 4096" in head.lower()
        assert len(body) < 4096
    with pytest.raises(httpx2.TransportError):
        httpx2.get(
            f"{sim.stripe_url}/v1/balance",
            headers={"Authorization": f"Bearer {SIMULATOR_KEY}"},
            trust_env=False,
        )
    sim.faults(reset_rate=0.0)
    assert sim.client().v1.balance.retrieve().object == "balance"


def test_reads_get_faults_too(sim: Simulator) -> None:
    sim.payment("pi_read", amount=1000)
    refund = sim.client().v1.refunds.create(params={"payment_intent": "pi_read"})
    sim.faults(error_rate=1.0)
    with pytest.raises(stripe.APIError):
        sim.client().v1.refunds.retrieve(refund.id)
    sim.faults(error_rate=0.0, latency_ms=200)
    started = time.monotonic()
    sim.client().v1.refunds.retrieve(refund.id)
    assert time.monotonic() - started >= 0.15


def test_reset_clears_state_and_faults(sim: Simulator) -> None:
    sim.payment("pi_gone", amount=1000)
    sim.client().v1.refunds.create(params={"payment_intent": "pi_gone"}, options={"idempotency_key": "gone"})
    sim.faults(latency_ms=50, pending_rate=0.5)
    sim.reset()
    assert sim.ledger() == []
    assert sim.control("GET", "/faults").json()["stripe"]["latency_ms"] == 0
    with pytest.raises(stripe.InvalidRequestError):
        sim.client().v1.refunds.create(
            params={"payment_intent": "pi_gone"}, options={"idempotency_key": "gone"}
        )
