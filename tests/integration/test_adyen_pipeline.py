"""Adyen end to end: web, worker, database and the Adyen simulator as real processes, on both databases.

Adyen only acknowledges a refund ("received"); the outcome comes in signed notifications, several
items to a delivery, and there is no endpoint to read a refund back. Notifications here are sent by
the simulator, or built and signed by the test with the official SDK's ``generate_notification_sig``.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx2
import pytest
from Adyen.util import generate_notification_sig

from _services import free_port
from stack import Proc, Stack, db_rows, wait_http

pytestmark = pytest.mark.slow

CONNECTION = "adyen-test"
API_KEY = "AQEadyen_refundwatch_tests_key"
MERCHANT = "RefundwatchTestsECOM"
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


@pytest.fixture(scope="module")
def adyen(stack: Stack) -> str:
    """An Adyen simulator beside the stack's, and the connection refundwatch uses to reach it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    table = (
        f'[[connection]]\nname = "{CONNECTION}"\nprocessor = "adyen"\nbase_url = "{url}/adyen"\n'
        f'api_key = "{API_KEY}"\nmerchant_account = "{MERCHANT}"\nhmac_key = "{HMAC_KEY}"\n'
        "health_check_interval_seconds = 1\ntimeout_seconds = 2\n"
    )
    path = stack.workdir / "adyen.toml"
    path.write_text(table)
    sim = Proc(
        "adyen-simulator",
        [
            "refundwatch.simulator",
            "--port",
            str(port),
            "--connections",
            str(path),
            "--webhook-url",
            f"{stack.web_url}/webhooks/{{connection}}",
        ],
        stack.env,
        stack.workdir / "adyen-simulator.log",
    )
    stack.procs["adyen-simulator"] = sim.start()
    wait_http(f"{url}/_control/faults", sim)
    stack.cli("connections", "import", str(path))
    return url


def control(url: str, path: str, body: Any = None) -> Any:
    if body is None:
        response = httpx2.get(f"{url}/_control/{path}", timeout=10)
    else:
        response = httpx2.post(f"{url}/_control/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def faults(url: str, **values: Any) -> None:
    base = {
        "processor": "adyen",
        "latency_ms": 0,
        "error_rate": 0.0,
        "timeout_rate": 0.0,
        "reset_rate": 0.0,
        "outage": False,
        "pending_rate": 0.0,
        "fail_later_rate": 0.0,
        "settle_ms": 300,
        "malformed_rate": 0.0,
        "webhook_drop_rate": 0.0,
        "webhook_duplicate_rate": 0.0,
    }
    control(url, "faults", {**base, **values})


def payment(stack: Stack, url: str, amount: int = 10_000, currency: str = "EUR") -> str:
    psp = secrets.token_hex(8).upper()
    control(
        url,
        "payments",
        {"processor": "adyen", "payment_reference": psp, "amount": amount, "currency": currency},
    )
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": CONNECTION,
                "payment_reference": psp,
                "amount": amount,
                "currency": currency,
                "captured_at": "2026-11-01T10:00:00Z",
            },
        )
    assert response.status_code == 201, response.text
    return psp


def refund(stack: Stack, psp: str, amount: int) -> str:
    response = stack.refund(psp, amount, connection=CONNECTION)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ledger(url: str, psp: str) -> list[dict[str, Any]]:
    return [r for r in control(url, "ledger") if r["payment_reference"] == psp]


def item(refund: dict[str, Any], event: str, success: bool, *, amount: int | None = None) -> dict[str, Any]:
    """A NotificationRequestItem about this refund, signed with the SDK's own helper."""
    body: dict[str, Any] = {
        "additionalData": {},
        "amount": {"value": refund["amount"] if amount is None else amount, "currency": refund["currency"]},
        "eventCode": event,
        "eventDate": "2026-12-06T10:00:00+01:00",
        "merchantAccountCode": MERCHANT,
        "merchantReference": refund["id"],
        "originalReference": refund["payment_reference"],
        "pspReference": refund["gateway_refund_id"],
        "reason": "" if success else "Insufficient balance on payment",
        "success": "true" if success else "false",
    }
    signature = generate_notification_sig(body, HMAC_KEY)
    body["additionalData"]["hmacSignature"] = (
        signature.decode() if isinstance(signature, bytes) else signature
    )
    return body


def deliver(stack: Stack, *items: dict[str, Any]) -> httpx2.Response:
    body = {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
    return httpx2.post(
        f"{stack.web_url}/webhooks/{CONNECTION}",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def details(refund: dict[str, Any]) -> list[str]:
    return [str(e["detail"]) for e in refund["events"]]


def test_received_is_processing_and_the_refund_notification_settles_it(stack: Stack, adyen: str) -> None:
    faults(adyen, settle_ms=1_500)
    psp = payment(stack, adyen)
    refund_id = refund(stack, psp, 2_500)
    processing = stack.wait_status(refund_id, "processing", *FINAL)
    assert processing["status"] in ("processing", "succeeded"), processing
    done = stack.wait_status(refund_id, *FINAL)
    assert done["status"] == "succeeded", done
    assert "processing" in {e["status"] for e in done["events"]}  # never straight to success
    rows = ledger(adyen, psp)
    assert len(rows) == 1, rows
    assert rows[0]["idempotency_key"]
    assert rows[0]["gateway_refund_id"] == done["gateway_refund_id"]


def test_one_bad_item_is_refused_and_the_others_applied(stack: Stack, adyen: str) -> None:
    faults(adyen, webhook_drop_rate=1.0)
    first, second = (refund(stack, payment(stack, adyen), 1_000) for _ in range(2))
    one, two = (stack.wait_status(r, "processing") for r in (first, second))
    good = item(one, "REFUND", True)
    tampered = item(two, "REFUND", True)
    tampered["amount"]["value"] += 1  # changed after signing
    response = deliver(stack, good, tampered)
    assert response.status_code == 200, response.text
    assert response.text == "[accepted]"
    assert stack.wait_status(first, *FINAL)["status"] == "succeeded"
    time.sleep(1)
    assert stack.get(second)["status"] == "processing"
    # The same item again (Adyen retries): acknowledged, applied once.
    assert deliver(stack, good).text == "[accepted]"
    events = db_rows(
        stack, "SELECT event_id FROM webhook_events WHERE event_id LIKE ?", f"{one['gateway_refund_id']}%"
    )
    assert len(events) == 1, events
    unsigned = item(two, "REFUND", True)
    del unsigned["additionalData"]["hmacSignature"]
    assert deliver(stack, unsigned).status_code == 401
    faults(adyen)


def test_refund_failed_after_success_is_reversed_and_disorder_never_lost(stack: Stack, adyen: str) -> None:
    faults(adyen, webhook_drop_rate=1.0)
    psp = payment(stack, adyen)
    refund_id = refund(stack, psp, 3_000)
    current = stack.wait_status(refund_id, "processing")
    assert deliver(stack, item(current, "REFUND", True)).status_code == 200
    assert stack.wait_status(refund_id, *FINAL)["status"] == "succeeded"
    assert deliver(stack, item(current, "REFUND_FAILED", True)).status_code == 200
    assert stack.wait_status(refund_id, "reversed")["status"] == "reversed"

    # Out of order: the failure first, then the success it follows. Money truth: a person decides.
    other = stack.wait_status(refund(stack, payment(stack, adyen), 1_000), "processing")
    assert deliver(stack, item(other, "REFUND", False)).status_code == 200
    assert stack.wait_status(other["id"], *FINAL)["status"] == "failed"
    assert deliver(stack, item(other, "REFUND", True)).status_code == 200
    assert stack.wait_status(other["id"], "manual_review")["status"] == "manual_review"
    faults(adyen)


def test_sync_cannot_ask_adyen_and_silence_ends_in_manual_review(stack: Stack, adyen: str) -> None:
    faults(adyen, webhook_drop_rate=1.0)
    psp = payment(stack, adyen)
    refund_id = refund(stack, psp, 1_200)
    stack.wait_status(refund_id, "processing")
    with stack.api() as client:
        answer = client.post(f"/api/v1/refunds/{refund_id}/sync")
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "processor_cannot_be_asked"

    stack.stop_worker()
    stack.start_worker(REFUNDWATCH_ADYEN_NOTIFICATION_TIMEOUT_HOURS="0.0005")  # about 2 s
    stack.wait_worker_ready()
    try:
        refund_now = stack.wait_status(refund_id, "manual_review", timeout=60)
    finally:
        stack.stop_worker()
        stack.start_worker()
        stack.wait_worker_ready()
        faults(adyen)
    assert any("no notification from adyen" in d for d in details(refund_now)), details(refund_now)
    assert len(ledger(adyen, psp)) == 1
