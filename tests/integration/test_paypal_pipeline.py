"""PayPal end to end: web, worker, database and the stack's simulator as real processes, on both databases.

What PayPal brings beyond the shared pipeline tests (test_execution, test_crash, test_concurrency run
for it too): an OAuth token that expires while refunds run, amounts it cannot take, eCheck refunds
that stay pending, and webhooks signed with RSA by a certificate fetched from an allowed host. The
deliveries here are built exactly as PayPal builds them, signed with the simulator's own test
certificate (its CA is the stack's trust store).
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import os
import signal
import struct
import uuid
import zlib
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from processors import PAYPAL_CLIENT_SECRET, PAYPAL_WEBHOOK_ID, kit
from refundwatch.simulator.paypal.certs import load_or_create
from stack import Stack, db_rows

pytestmark = pytest.mark.slow

PAYPAL = kit("paypal")


def faults(stack: Stack, **values: Any) -> None:
    stack.faults("paypal", **values)


def refund(stack: Stack, capture: str, amount: int, currency: str = "EUR") -> str:
    response = stack.refund(capture, amount, currency=currency)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ledger(stack: Stack, capture: str) -> list[dict[str, Any]]:
    return [r for r in stack.ledger() if r["payment_reference"] == capture]


def tokens_issued(stack: Stack) -> int:
    return int(stack.control("paypal/tokens")["issued"])


def test_tokens_expiring_mid_run_fail_nothing_and_pay_nothing_twice(stack: Stack) -> None:
    """The token ends three times while 30 refunds run (PayPal answers 401 invalid_token): each 401
    fetches one new token and retries the call once, so every refund succeeds, once.

    Each call meets at most one expiry, as with PayPal's tokens, which live for hours: the next expiry
    waits until the refunds in flight are final. Expiring again while a retry is on its way gives that
    retry a second 401, which fails the refund as auth_failed (nothing was executed); a CI run whose
    test process had sped up hit that."""
    faults(stack, latency_ms=40)
    captures = [stack.payment(5_000, processor="paypal") for _ in range(30)]
    issued_before = tokens_issued(stack)

    def final(refund_id: str) -> str:
        return str(stack.wait_status(refund_id, "succeeded", "failed", "manual_review")["status"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda c: refund(stack, c, 1_500), captures[:10]))
        for start in (10, 20):
            stack.control("paypal/tokens/expire", {})  # mid-run for the batch in flight
            ids += list(pool.map(lambda c: refund(stack, c, 1_500), captures[start : start + 10]))
            assert [final(refund_id) for refund_id in ids] == ["succeeded"] * len(ids)
        stack.control("paypal/tokens/expire", {})
    assert [final(refund_id) for refund_id in ids] == ["succeeded"] * 30
    for capture in captures:
        rows = ledger(stack, capture)
        assert [r["amount"] for r in rows] == [1_500], rows
    # One process fetches for all its jobs: a handful of token calls, not one per refund or per 401.
    assert 1 <= tokens_issued(stack) - issued_before <= 6
    # No token or client secret in refundwatch's own logs (the simulator's are not ours).
    for log in stack.workdir.glob("*.log"):
        if log.name != "simulator.log":
            text = log.read_text(errors="replace")
            assert "A21AA" not in text, log
            assert PAYPAL_CLIENT_SECRET not in text, log


def test_an_amount_paypal_cannot_take_is_refused_at_intake_and_never_sent(stack: Stack) -> None:
    """PayPal takes HUF in whole forints only: 123.45 HUF is refused before anything is stored."""
    capture = stack.payment(100_000, "HUF", processor="paypal")
    response = stack.refund(capture, 12_345, currency="HUF")
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "amount_not_supported"
    assert "HUF" in response.json()["message"]
    refund_id = refund(stack, capture, 12_300, "HUF")
    assert stack.wait_status(refund_id, "succeeded")["amount"] == 12_300
    (row,) = ledger(stack, capture)
    assert (row["amount"], row["currency"]) == (12_300, "HUF")


def test_an_echeck_refund_stays_processing_until_paypal_tells_its_outcome(stack: Stack) -> None:
    faults(stack, pending_rate=1.0, settle_ms=1_500)
    try:
        capture = stack.payment(5_000, processor="paypal")
        refund_id = refund(stack, capture, 2_000)
        pending = stack.wait_status(refund_id, "processing", "succeeded")
        assert pending["status"] == "processing", pending
        details = " ".join(str(e["detail"]) for e in stack.get(refund_id)["events"])
        assert "ECHECK" in details
        done = stack.wait_status(refund_id, "succeeded", timeout=30)
        assert any("PAYMENT.CAPTURE.REFUNDED" in str(e["detail"]) for e in done["events"])
    finally:
        faults(stack)


# --- webhooks, built and signed as PayPal does --------------------------------------------------------


def signed_headers(stack: Stack, body: bytes, *, webhook_id: str = PAYPAL_WEBHOOK_ID) -> dict[str, str]:
    certs = load_or_create(stack.workdir / "paypal-certs")  # the simulator's own certificate
    transmission_id = str(uuid.uuid4())
    sent_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    signature = certs.leaf_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Content-Type": "application/json",
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": sent_at,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": f"{stack.sim_url}/paypal{certs.cert_path}",
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "PAYPAL-AUTH-VERSION": "v2",
    }


def event_about(refund: dict[str, Any], key: str, event_type: str, status: str) -> bytes:
    """A refund event about ``refund``'s attempt with idempotency key ``key`` (its invoice_id)."""
    value = f"{refund['amount'] / 100:.2f}"
    resource = {
        "id": refund["gateway_refund_id"],
        "status": status,
        "amount": {"currency_code": refund["currency"], "value": value},
        "invoice_id": key,
        "custom_id": refund["id"],
        "create_time": "2026-12-06T10:00:00Z",
        "update_time": "2026-12-06T10:05:00Z",
        "links": [],
    }
    event = {
        "id": f"WH-{uuid.uuid4().hex[:17].upper()}",
        "event_version": "1.0",
        "create_time": "2026-12-06T10:05:00Z",
        "resource_type": "refund",
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": "A refund",
        "resource": resource,
        "links": [],
    }
    return json.dumps(event).encode()


def deliver(stack: Stack, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(
        f"{stack.web_url}/webhooks/{PAYPAL.connection}", content=body, headers=headers, timeout=30
    )


def forge_crc32(body: bytes, target: int) -> bytes:
    """``body`` with four bytes appended so that its CRC32 is ``target``: what a CRC32 lets anyone do."""
    # Run the CRC backwards from the target over four unknown bytes (the standard CRC32 reversal).
    table = [0] * 256
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    top = {t >> 24: i for i, t in enumerate(table)}
    crc = target ^ 0xFFFFFFFF
    for _ in range(4):
        index = top[crc >> 24]
        crc = ((crc ^ table[index]) << 8) | index
    start = zlib.crc32(body) ^ 0xFFFFFFFF
    patch = crc ^ start
    forged = body + struct.pack("<I", patch)
    assert zlib.crc32(forged) & 0xFFFFFFFF == target
    return forged


def test_webhooks_signed_as_paypal_are_applied_and_tampered_ones_refused(stack: Stack) -> None:
    faults(stack, pending_rate=1.0, settle_ms=600_000)  # PayPal stays silent: the test speaks for it
    try:
        capture = stack.payment(5_000, processor="paypal")
        refund_id = refund(stack, capture, 2_000)
        pending = stack.wait_status(refund_id, "processing")
    finally:
        faults(stack)
    (sent,) = ledger(stack, capture)
    body = event_about(pending, sent["idempotency_key"], "PAYMENT.CAPTURE.REFUNDED", "COMPLETED")
    good = signed_headers(stack, body)
    refused = {
        "one byte changed": (body.replace(b'"COMPLETED"', b'"COMPLETEd"'), good),
        "another webhook id": (body, signed_headers(stack, body, webhook_id="1JE4291016473214C")),
        "a certificate from a host not allowed": (
            body,
            good | {"PAYPAL-CERT-URL": "https://api.paypal.example/v1/notifications/certs/CERT-1"},
        ),
        "no signature": (body, {k: v for k, v in good.items() if k != "PAYPAL-TRANSMISSION-SIG"}),
        "no transmission id": (body, {k: v for k, v in good.items() if k != "PAYPAL-TRANSMISSION-ID"}),
    }
    for what, (content, headers) in refused.items():
        response = deliver(stack, content, headers)
        assert response.status_code in (400, 401), (what, response.text)
        assert response.json()["code"] == "invalid_signature", what
    assert stack.get(refund_id)["status"] == "processing"

    assert deliver(stack, body, good).status_code < 300
    assert stack.wait_status(refund_id, "succeeded")["status"] == "succeeded"
    assert deliver(stack, body, good).status_code < 300  # PayPal's re-send of the same: stored once
    stored = db_rows(stack, "SELECT count(*) FROM webhook_events WHERE event_id = ?", json.loads(body)["id"])
    assert stored == [(1,)]

    # Someone holding those signed headers writes another body with the same CRC32 (the signature
    # covers no more than that): the signature still checks, the transmission id gives it away.
    reversal = event_about(pending, sent["idempotency_key"], "PAYMENT.CAPTURE.REVERSED", "COMPLETED")
    forged = forge_crc32(reversal, zlib.crc32(body) & 0xFFFFFFFF)
    response = deliver(stack, forged, good)
    assert response.status_code == 401, response.text
    assert "transmission id" in response.json()["message"]
    assert stack.get(refund_id)["status"] == "succeeded"


def test_a_certificate_host_that_does_not_answer_is_no_verdict(stack: Stack) -> None:
    """PayPal's certificate host is down (here the simulator, stopped): the delivery cannot be
    checked, which says nothing about it. It is refused with 503 (PayPal re-sends), audited as
    unverified, and not counted against PayPal's address; the same delivery is accepted once the host
    answers again."""
    faults(stack, pending_rate=1.0, settle_ms=600_000)
    try:
        capture = stack.payment(5_000, processor="paypal")
        pending = stack.wait_status(refund(stack, capture, 1_500), "processing")
    finally:
        faults(stack)
    (sent,) = ledger(stack, capture)
    body = event_about(pending, sent["idempotency_key"], "PAYMENT.CAPTURE.REFUNDED", "COMPLETED")
    headers = signed_headers(stack, body)
    # A certificate this web process has not fetched and kept yet (PayPal's names change with its keys).
    unseen = headers | {
        "PAYPAL-CERT-URL": f"{stack.sim_url}/paypal/v1/notifications/certs/CERT-{uuid.uuid4().hex}"
    }
    simulator = stack.procs["simulator"].popen
    assert simulator is not None
    os.killpg(simulator.pid, signal.SIGSTOP)  # connections are accepted by the kernel, never answered
    try:
        response = deliver(stack, body, unseen)
    finally:
        os.killpg(simulator.pid, signal.SIGCONT)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "verification_unavailable"
    audited = db_rows(
        stack,
        "SELECT details FROM audit_log WHERE action = ? AND target_id = ?",
        "webhook:event:unverified",
        PAYPAL.connection,
    )
    assert any("certificate host did not answer in time" in str(row[0]) for row in audited), audited
    assert stack.get(pending["id"])["status"] == "processing"
    assert deliver(stack, body, headers).status_code < 300  # PayPal's re-send, the host back
    assert stack.wait_status(pending["id"], "succeeded")["status"] == "succeeded"
