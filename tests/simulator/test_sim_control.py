"""The control API, the command line, and the simulator's independence from refundwatch's adapters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Simulator

SIMULATOR_SOURCE = Path(__file__).resolve().parents[2] / "src" / "refundwatch" / "simulator"


def test_payments_are_idempotent_and_conflicts_are_409(sim: Simulator) -> None:
    body = {"processor": "stripe", "payment_reference": "pi_ctl", "amount": 1500, "currency": "usd"}
    first = sim.control("POST", "/payments", body)
    assert first.status_code == 201
    assert first.json()["currency"] == "USD"
    assert sim.control("POST", "/payments", body).status_code == 201
    assert sim.control("POST", "/payments", {**body, "currency": "USD"}).status_code == 201
    conflict = sim.control("POST", "/payments", {**body, "amount": 1600})
    assert conflict.status_code == 409
    assert "pi_ctl" in conflict.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"processor": "acme", "payment_reference": "x", "amount": 1, "currency": "usd"},
        {"processor": "stripe", "payment_reference": "", "amount": 1, "currency": "usd"},
        {"processor": "stripe", "payment_reference": "x", "amount": 0, "currency": "usd"},
        {"processor": "stripe", "payment_reference": "x", "amount": 1.5, "currency": "usd"},
        {"processor": "stripe", "payment_reference": "x", "amount": True, "currency": "usd"},
        # Beyond refundwatch's 10^15: its report line could never be imported, so no later report could.
        {"processor": "stripe", "payment_reference": "x", "amount": 10**15 + 1, "currency": "usd"},
        {"processor": "stripe", "payment_reference": "x", "amount": 1, "currency": "dollars"},
        {"processor": "stripe", "payment_reference": "x", "amount": 1, "currency": "usd", "extra": 1},
        {"processor": "checkout", "payment_reference": "pi_not_a_pay_id", "amount": 1, "currency": "usd"},
        {"processor": ["stripe"], "payment_reference": "x", "amount": 1, "currency": "usd"},
        {
            "processor": "stripe",
            "payment_reference": "x",
            "amount": 1,
            "currency": "usd",
            "settle_after_seconds": -1,
        },
        {
            "processor": "stripe",
            "payment_reference": "x",
            "amount": 1,
            "currency": "usd",
            "settle_after_seconds": "1",
        },
        [],
    ],
)
def test_bad_payments_are_400(sim: Simulator, body: object) -> None:
    response = sim.control("POST", "/payments", body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


def test_a_payment_may_say_when_it_settles(sim: Simulator) -> None:
    """CONTRACT §7: ``settle_after_seconds`` is accepted for every processor (it was refused as an
    unknown field); processors that refund unsettled captures ignore it."""
    for processor, reference in (("stripe", "pi_settles"), ("braintree", "bt_settles")):
        body = {"processor": processor, "payment_reference": reference, "amount": 100, "currency": "usd"}
        created = sim.control("POST", "/payments", {**body, "settle_after_seconds": 30})
        assert created.status_code == 201, created.text
    assert sim.client().v1.refunds.create(params={"payment_intent": "pi_settles"}).status == "succeeded"


@pytest.mark.parametrize("path", ["/payments", "/faults", "/discrepancies"])
@pytest.mark.parametrize("body", [b"{nope", b"[" * 3000 + b"]" * 3000])
def test_malformed_json_is_400(sim: Simulator, path: str, body: bytes) -> None:
    """Nesting deeper than the decoder follows was a 500 (msgspec raises RecursionError there)."""
    response = sim.http.post(f"{sim.url}/_control{path}", content=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_body"


DEEP_BODIES = [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]
# Every other endpoint that reads a JSON body, with the credentials it checks first.
JSON_ENDPOINTS = {
    "adyen refund": ("/adyen/v72/payments/ABCDEF0123456789/refunds", {"X-API-Key": "AQEany"}),
    "adyen paymentMethods": ("/adyen/v72/paymentMethods", {"X-API-Key": "AQEany"}),
    "checkout refund": (f"/checkout/payments/pay_{'a' * 26}/refunds", {"Authorization": "Bearer sk_any"}),
    "paypal refund": ("/paypal/v2/payments/captures/3C679366HH908993F/refund", {"PayPal-Request-Id": "r1"}),
    "paypal verify": ("/paypal/v1/notifications/verify-webhook-signature", {}),
    "paypal issue": ("/_control/paypal/captures/3C679366HH908993F/issue", {}),
    "stripe payouts": ("/_control/payouts/pay", {}),
    "adyen publish": ("/_control/reports/adyen/publish", {}),
}


@pytest.mark.parametrize("body", DEEP_BODIES, ids=["array", "object"])
@pytest.mark.parametrize("endpoint", sorted(JSON_ENDPOINTS))
def test_nesting_too_deep_is_a_4xx_on_every_endpoint(sim: Simulator, endpoint: str, body: bytes) -> None:
    """Each processor's and control endpoint's own decoder met msgspec's RecursionError with a 500."""
    path, headers = JSON_ENDPOINTS[endpoint]
    if path.startswith("/paypal/"):
        token = sim.http.post(
            f"{sim.url}/paypal/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("any-client", "any-secret"),
        )
        headers = {**headers, "Authorization": f"Bearer {token.json()['access_token']}"}
    response = sim.http.post(
        f"{sim.url}{path}", content=body, headers={"Content-Type": "application/json", **headers}
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


def test_ledger_filter_by_processor(sim: Simulator) -> None:
    sim.payment("pi_filter", amount=100)
    sim.client().v1.refunds.create(params={"payment_intent": "pi_filter"})
    assert len(sim.ledger("stripe")) == 1
    assert sim.ledger("adyen") == []
    unknown = sim.control("GET", "/ledger?processor=visa")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown_processor"


def test_fault_defaults(sim: Simulator) -> None:
    config = sim.control("GET", "/faults").json()
    assert set(config) == {"stripe", "adyen", "paypal", "checkout", "square", "braintree"}
    assert config["stripe"] == {
        "latency_ms": 0.0,
        "jitter_ms": 0.0,
        "error_rate": 0.0,
        "timeout_rate": 0.0,
        "reset_rate": 0.0,
        "outage": False,
        "pending_rate": 0.0,
        "fail_later_rate": 0.0,
        "settle_ms": 2000.0,
        "timeout_ms": 35000.0,
        "webhook_duplicate_rate": 0.0,
        "webhook_drop_rate": 0.0,
        "malformed_rate": 0.0,
        "idempotency_retention_seconds": 86400.0,  # Stripe keeps keys at least 24 h
        "reversal_rate": 0.0,
        "webhook_retry_scale": 1.0,  # a documented retry schedule at its real pace
        "token_ttl_seconds": 32400.0,  # PayPal's expires_in; processors without tokens ignore it
        "executed_error_share": 0.0,  # injected 5xx executed nothing (only Checkout.com takes it)
    }
    retention = {name: c["idempotency_retention_seconds"] for name, c in config.items()}
    assert retention == {
        "stripe": 86400.0,
        "adyen": 31 * 86400.0,
        "paypal": 45 * 86400.0,
        "checkout": 86400.0,
        "square": 86400.0,
        "braintree": 0.0,  # Braintree has no idempotency keys
    }


def test_bad_connections_file_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[[connection]]\nname = "x"\nprocessor = "nope"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "refundwatch.simulator", "--connections", str(path), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "processor" in result.stderr


def test_the_simulator_never_imports_refundwatch_outside_itself() -> None:
    """STYLE rule 12: an independent witness; no import of the adapters (or anything else of refundwatch)."""
    for path in SIMULATOR_SOURCE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level > 0 or not (node.module or "").startswith("refundwatch"), (
                    path.name,
                    node.module,
                )
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("refundwatch") for alias in node.names), path.name
    code = (
        "import sys, refundwatch.simulator, refundwatch.simulator.__main__\n"
        "bad = [m for m in sys.modules\n"
        "       if m.startswith('refundwatch.') and not m.startswith('refundwatch.simulator')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
