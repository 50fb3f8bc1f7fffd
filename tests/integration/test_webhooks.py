"""POST /webhooks/{connection} with Stripe events built and signed here (official SDK), real processes.

Valid events are applied once and never move a refund backwards; every bad signature is refused
with ``invalid_signature``, applies nothing, and is counted (/metrics) and audited (audit_log, one
entry per connection and minute: test_webhook_rejections).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

import httpx2
import pytest
import redis
import stripe

from processors import STRIPE_SECRET
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

CONNECTION = "stripe-test"
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")
REJECTED_METRIC = re.compile(
    r'^refundwatch_webhooks_rejected_total\{connection="stripe-test"\} (\d+)(?:\.0)?$', re.MULTILINE
)


# --------------------------------------------------------------------------------------------- helpers


def refund_event(
    refund: dict[str, Any],
    *,
    event_type: str = "refund.updated",
    status: str = "succeeded",
    amount: int | None = None,
    event_id: str | None = None,
) -> tuple[str, bytes]:
    """A Stripe Event (API version 2026-10-28.endive) whose data.object is this refund; (id, raw body)."""
    now = int(time.time())
    obj: dict[str, Any] = {
        "id": refund["gateway_refund_id"],
        "object": "refund",
        "amount": refund["amount"] if amount is None else amount,
        "balance_transaction": f"txn_{uuid.uuid4().hex[:24]}",
        "charge": None,
        "created": now,
        "currency": refund["currency"].lower(),
        "metadata": {"refundwatch_refund_id": refund["id"], "refundwatch_reason": "return"},
        "payment_intent": refund["payment_reference"],
        "reason": "requested_by_customer",
        "receipt_number": None,
        "status": status,
    }
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    if status == "pending":
        obj["pending_reason"] = "processing"
    event_id = event_id or f"evt_{uuid.uuid4().hex[:24]}"
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": now,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return event_id, json.dumps(event).encode()


def sign(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` for a body, computed by the official SDK."""
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp))


def v1_of(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's v1 scheme by hand (HMAC-SHA256 of "<t>.<raw body>"), for bodies the SDK cannot take."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def deliver(
    stack: Stack, body: bytes, signature: str | None, *, connection: str = CONNECTION
) -> httpx2.Response:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return httpx2.post(f"{stack.web_url}/webhooks/{connection}", content=body, headers=headers, timeout=30)


def processed(stack: Stack, event_id: str, timeout: float = 20) -> str:
    """Wait until the worker has applied the stored event; its recorded outcome."""
    rows = wait_until(
        lambda: [
            r
            for r in db_rows(
                stack, "SELECT processed_at, outcome FROM webhook_events WHERE event_id = ?", event_id
            )
            if r[0] is not None
        ],
        timeout=timeout,
        what=f"webhook event {event_id} to be processed",
    )
    assert len(rows) == 1, rows
    return str(rows[0][1])


def stored_count(stack: Stack, event_id: str) -> int:
    return len(db_rows(stack, "SELECT id FROM webhook_events WHERE event_id = ?", event_id))


def rejected_metric(stack: Stack) -> int:
    response = stack.metrics(timeout=10)
    assert response.status_code == 200, response.text
    match = REJECTED_METRIC.search(response.text)
    return int(match.group(1)) if match else 0


def audited_rejections(stack: Stack) -> int:
    """Rejections the worker has written to the audit log (one entry per connection and minute)."""
    rows = db_rows(
        stack,
        "SELECT details FROM audit_log WHERE action = ? AND target_id = ? ORDER BY id",
        "webhook:event:rejected",
        CONNECTION,
    )
    return sum(int(json.loads(r[0]).get("count", 1)) for r in rows)


def pending_rejections(stack: Stack) -> int:
    """Rejections counted in Redis minute buckets (open or claimed), not yet in the audit log."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = client.keys("refundwatch:webhooks:rejections:[bc]*|" + CONNECTION)
        return sum(int(client.hget(key, "count") or 0) for key in keys)
    finally:
        client.close()


def succeeded_refund(stack: Stack) -> dict[str, Any]:
    reference = stack.payment(10_000)
    response = stack.refund(reference, 2_000)
    assert response.status_code == 201, response.text
    refund = stack.wait_status(response.json()["id"], *FINAL)
    assert refund["status"] == "succeeded", refund
    wait_settled(stack, refund["id"])
    return stack.get(refund["id"])


def processing_refund(stack: Stack) -> dict[str, Any]:
    """A refund the processor accepted and will never settle by itself (the webhook has to)."""
    stack.faults(pending_rate=1.0, settle_ms=3_600_000)
    try:
        reference = stack.payment(10_000)
        response = stack.refund(reference, 3_000)
        assert response.status_code == 201, response.text
        refund = stack.wait_status(response.json()["id"], "processing", *FINAL)
    finally:
        stack.faults()
    assert refund["status"] == "processing", refund
    wait_settled(stack, refund["id"])
    return stack.get(refund["id"])


def wait_settled(stack: Stack, refund_id: str) -> None:
    """Wait until the simulator's own webhooks for this refund have been applied, so ours come last."""
    wait_until(
        lambda: any(e["source"] == "webhook" for e in stack.get(refund_id)["events"]),
        timeout=20,
        what="the simulator's refund.created webhook",
    )
    outstanding = "SELECT id FROM webhook_events WHERE processed_at IS NULL"
    wait_until(lambda: not db_rows(stack, outstanding), timeout=20, what="stored webhooks to be processed")


def events_mentioning(refund: dict[str, Any], event_id: str) -> list[dict[str, Any]]:
    return [e for e in refund["events"] if event_id in e["detail"]]


# ----------------------------------------------------------------------------------------------- tests


def test_signatures_made_here_satisfy_the_official_sdk() -> None:
    _, body = refund_event(
        {
            "id": str(uuid.uuid4()),
            "gateway_refund_id": "re_1",
            "amount": 100,
            "currency": "EUR",
            "payment_reference": "pi_1",
        }
    )
    header = sign(body)
    event = stripe.Webhook.construct_event(body.decode(), header, STRIPE_SECRET)
    assert event["type"] == "refund.updated"
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert header == f"t={timestamp},v1={v1_of(body, STRIPE_SECRET, timestamp)}"


def test_valid_event_is_applied_and_a_redelivery_only_once(stack: Stack) -> None:
    stack.faults()
    refund = processing_refund(stack)
    event_id, body = refund_event(refund, status="succeeded")

    first = deliver(stack, body, sign(body))
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "stored": 1, "duplicates": 0}
    assert "succeeded" in processed(stack, event_id)

    after = stack.get(refund["id"])
    assert after["status"] == "succeeded"
    moved = events_mentioning(after, event_id)
    assert [(e["from_status"], e["status"], e["source"]) for e in moved] == [
        ("processing", "succeeded", "webhook")
    ]

    # Stripe re-signs each retry: same body, another timestamp.
    again = deliver(stack, body, sign(body, timestamp=int(time.time()) - 5))
    assert again.status_code == 200, again.text
    assert again.json() == {"received": True, "stored": 0, "duplicates": 1}
    time.sleep(0.5)
    assert stored_count(stack, event_id) == 1
    assert len(events_mentioning(stack.get(refund["id"]), event_id)) == 1
    # Paid once: the payment's refunded amount counts this refund once.
    with stack.api() as client:
        payment = client.post(
            "/api/v1/payments",
            json={
                "connection": CONNECTION,
                "payment_reference": refund["payment_reference"],
                "amount": 10_000,
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
            },
        ).json()
    assert payment["refunded_amount"] == 3_000


def test_concurrent_duplicate_deliveries_are_stored_once(stack: Stack) -> None:
    stack.faults()
    refund = succeeded_refund(stack)
    event_id, body = refund_event(refund, status="succeeded")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: deliver(stack, body, sign(body)), range(6)))
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    assert sum(a.json()["stored"] for a in answers) == 1
    assert sum(a.json()["duplicates"] for a in answers) == 5
    processed(stack, event_id)
    assert stored_count(stack, event_id) == 1
    assert len(events_mentioning(stack.get(refund["id"]), event_id)) == 1


def test_refund_failed_reverses_a_succeeded_refund(stack: Stack) -> None:
    stack.faults()
    refund = succeeded_refund(stack)
    event_id, body = refund_event(refund, event_type="refund.failed", status="failed")
    response = deliver(stack, body, sign(body))
    assert response.status_code == 200, response.text
    processed(stack, event_id)
    after = stack.get(refund["id"])
    assert after["status"] == "reversed", after
    assert [(e["from_status"], e["status"], e["source"]) for e in events_mentioning(after, event_id)] == [
        ("succeeded", "reversed", "webhook")
    ]
    assert after["error_code"] == "declined"

    # A late success report for a reversed refund changes nothing.
    late_id, late = refund_event(refund, status="succeeded")
    assert deliver(stack, late, sign(late)).status_code == 200
    processed(stack, late_id)
    assert stack.get(refund["id"])["status"] == "reversed"


# What the processor writes beside a reversal that the database cannot hold as it came: text longer
# than its column (PostgreSQL refuses it) or with a NUL character (PostgreSQL cannot store one).
UNSTORABLE_TEXT = {
    "overlong_failure_reason": {"failure_reason": "x" * 300},
    "nul_in_failure_reason": {"failure_reason": "expired_or_canceled_card\u0000"},
    "overlong_status": {"status": "failed" + "x" * 100},
    "nul_in_status": {"status": "fail\u0000ed"},
    "lone_surrogate_in_failure_reason": {"failure_reason": "lost\ud800"},
}


@pytest.mark.parametrize("case", sorted(UNSTORABLE_TEXT))
def test_a_reversal_whose_text_the_database_cannot_hold_is_still_applied(stack: Stack, case: str) -> None:
    """The report was acknowledged (200) and stored, and then every run of its job failed on
    PostgreSQL (value too long, NUL): the refund stayed succeeded although the money came back."""
    stack.faults()
    refund = succeeded_refund(stack)
    event_id, body = refund_event(refund, event_type="refund.failed", status="failed")
    event = json.loads(body)
    for name, value in UNSTORABLE_TEXT[case].items():
        event["data"]["object"][name] = value
    body = json.dumps(event).encode()  # ASCII: NUL and the surrogate travel as JSON escapes
    response = deliver(stack, body, sign(body))
    assert response.status_code == 200, response.text
    assert "reversed" in processed(stack, event_id)
    after = stack.get(refund["id"])
    assert after["status"] == "reversed", after
    assert after["error_code"] == "declined"


def test_an_event_id_with_a_nul_character_is_malformed_on_every_database(stack: Stack) -> None:
    """SQLite stored it (200) and PostgreSQL refused it as a generic validation_error, uncounted."""
    body = b'{"id": "evt_\\u0000x", "object": "event", "type": "charge.succeeded", "data": {"object": {}}}'
    before = rejected_metric(stack)
    response = deliver(stack, body, sign(body))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "malformed_webhook"
    wait_until(lambda: rejected_metric(stack) == before + 1, timeout=10, what="the rejection counted")


def test_a_report_to_another_connection_of_the_same_account_is_applied(stack: Stack) -> None:
    """CONTRACT §6 ``account``: connections with the same processor and account reach the same account
    and may carry each other's refunds. A Stripe account sends its webhooks to one endpoint, which may
    be another connection's than the one a refund was made through (a second key of the account). The
    report was stored as about "no matching refund" and the refund never moved."""
    stack.faults()
    stack.share_stripe_account("stripe-sibling", "whsec_refundwatch_sibling")
    refund = succeeded_refund(stack)  # made through stripe-test
    event_id, body = refund_event(refund, event_type="refund.failed", status="failed")
    response = deliver(stack, body, sign(body, "whsec_refundwatch_sibling"), connection="stripe-sibling")
    assert response.status_code == 200, response.text
    assert "reversed" in processed(stack, event_id)
    assert stack.get(refund["id"])["status"] == "reversed"


def test_late_pending_update_never_moves_a_refund_backwards(stack: Stack) -> None:
    stack.faults()
    refund = succeeded_refund(stack)
    event_id, body = refund_event(refund, status="pending")
    response = deliver(stack, body, sign(body))
    assert response.status_code == 200, response.text
    processed(stack, event_id)
    after = stack.get(refund["id"])
    assert after["status"] == "succeeded", after
    noted = events_mentioning(after, event_id)
    assert len(noted) == 1
    assert noted[0]["from_status"] is None
    assert "ignored: earlier news" in noted[0]["detail"]


def test_a_report_of_what_is_recorded_is_recorded_where_it_is_received(stack: Stack) -> None:
    """Stripe's refund.created after a final answer (and any report repeating a refund's status)
    tells what refundwatch already holds. It is recorded as ignored as it is received, in the words
    the worker's general path uses, with no job: the worker is stopped meanwhile. A report that
    differs (here its amount) is still left to the worker."""
    stack.faults()
    refund = succeeded_refund(stack)
    stack.stop_worker()
    try:
        event_id, body = refund_event(refund, event_type="refund.created", status="succeeded")
        answer = deliver(stack, body, sign(body))
        assert answer.status_code == 200, answer.text
        ((processed_at, outcome),) = db_rows(
            stack, "SELECT processed_at, outcome FROM webhook_events WHERE event_id = ?", event_id
        )
        assert processed_at is not None
        assert outcome == "refund.created: succeeded (IGNORE)"
        after = stack.get(refund["id"])
        assert (after["status"], after["updated_at"]) == ("succeeded", refund["updated_at"])
        (noted,) = events_mentioning(after, event_id)
        assert (noted["status"], noted["from_status"], noted["source"]) == ("succeeded", None, "webhook")
        assert noted["detail"] == (
            f"webhook refund.created ({event_id}): processor status succeeded"
            " — ignored: earlier news: the refund has already succeeded"
        )
        again = deliver(stack, body, sign(body))  # a redelivery: stored once, noted once
        assert again.json()["duplicates"] == 1, again.text
        assert len(events_mentioning(stack.get(refund["id"]), event_id)) == 1

        odd_id, odd = refund_event(refund, status="succeeded", amount=refund["amount"] + 1)
        assert deliver(stack, odd, sign(odd)).status_code == 200
        ((processed_at, _),) = db_rows(
            stack, "SELECT processed_at, outcome FROM webhook_events WHERE event_id = ?", odd_id
        )
        assert processed_at is None  # for the worker
    finally:
        stack.start_worker()
        stack.wait_worker_ready()
    processed(stack, odd_id)


def test_amount_mismatch_goes_to_manual_review(stack: Stack) -> None:
    stack.faults()
    refund = processing_refund(stack)
    event_id, body = refund_event(refund, status="succeeded", amount=refund["amount"] + 1)
    assert deliver(stack, body, sign(body)).status_code == 200
    processed(stack, event_id)
    after = stack.get(refund["id"])
    assert after["status"] == "manual_review", after


def test_multiple_v1_signatures_any_may_match(stack: Stack) -> None:
    stack.faults()
    refund = succeeded_refund(stack)
    event_id, body = refund_event(refund, event_type="refund.failed", status="failed")
    timestamp = int(time.time())
    rotated_out = v1_of(body, "whsec_old_rotated_out", timestamp)
    header = f"t={timestamp},v1={rotated_out},v1={v1_of(body, STRIPE_SECRET, timestamp)}"
    stripe.Webhook.construct_event(body.decode(), header, STRIPE_SECRET)  # the SDK accepts it too
    response = deliver(stack, body, header)
    assert response.status_code == 200, response.text
    processed(stack, event_id)
    assert stack.get(refund["id"])["status"] == "reversed"


def _bad_signatures(body: bytes) -> dict[str, tuple[bytes, str | None]]:
    now = int(time.time())
    tampered = body.replace(b'"status": "failed"', b'"status": "succeeded"')
    assert tampered != body
    return {
        "bad_signature": (body, f"t={now},v1={'ab' * 32}"),
        "wrong_secret": (body, sign(body, "whsec_somebody_else")),
        "stale_timestamp": (body, sign(body, timestamp=now - 301)),
        "future_timestamp": (body, sign(body, timestamp=now + 400)),
        "missing_header": (body, None),
        "empty_header": (body, ""),
        "no_timestamp": (body, sign(body).split(",", 1)[1]),
        "only_v0_scheme": (body, sign(body).replace("v1=", "v0=")),
        "tampered_body": (tampered, sign(body)),
    }


BAD_SIGNATURE_CASES = sorted(_bad_signatures(b'{"type": "refund.failed", "status": "failed"}'))


@pytest.fixture(scope="module")
def target(stack: Stack) -> dict[str, Any]:
    """One succeeded refund that every refused delivery tries (and fails) to reverse."""
    stack.faults()
    return succeeded_refund(stack)


@pytest.mark.parametrize("case", BAD_SIGNATURE_CASES)
def test_bad_signatures_are_refused_counted_and_audited(
    stack: Stack, target: dict[str, Any], case: str
) -> None:
    refund = target
    event_id, body = refund_event(refund, event_type="refund.failed", status="failed")
    sent, signature = _bad_signatures(body)[case]
    metric_before, pending_before = rejected_metric(stack), pending_rejections(stack)

    response = deliver(stack, sent, signature)
    assert response.status_code in (400, 401), response.text
    assert response.json()["code"] == "invalid_signature"

    assert rejected_metric(stack) == metric_before + 1
    # Audited once per connection and minute by the worker (test_webhook_rejections): the rejection
    # is in this minute's bucket, or already in an audit entry if the minute closed meanwhile.
    assert pending_rejections(stack) + audited_rejections(stack) >= pending_before + 1
    time.sleep(0.5)
    assert stored_count(stack, event_id) == 0
    after = stack.get(refund["id"])
    assert after["status"] == "succeeded"
    assert events_mentioning(after, event_id) == []


def test_unknown_connection_is_404(stack: Stack) -> None:
    stack.faults()
    _, body = refund_event(
        {
            "id": str(uuid.uuid4()),
            "gateway_refund_id": "re_x",
            "amount": 1,
            "currency": "EUR",
            "payment_reference": "pi_x",
        }
    )
    response = deliver(stack, body, sign(body), connection="no-such-connection")
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "unknown_connection"


def test_a_connection_of_a_processor_not_supported_yet_refuses_its_webhooks(stack: Stack) -> None:
    """CONTRACT §6 lets a connections file name square and braintree, and ``connections import``
    takes them; a delivery to such a connection was a 500 (no adapter to verify it with). It is
    refused as unverifiable: 401, nothing stored, counted like every rejection."""
    path = stack.workdir / "connections-square.toml"
    path.write_text(
        "[[connection]]\n"
        'name = "square-later"\n'
        'processor = "square"\n'
        'access_token = "EAAAEexample"\n'
        'webhook_signature_key = "square-signature-key"\n'
        'notification_url = "https://refundwatch.example/webhooks/square-later"\n'
    )
    stack.cli("connections", "import", str(path))
    body = json.dumps({"event_id": "6a8f5f28-54a1-4eb0-a98a-3111513fd4fc", "type": "refund.updated"}).encode()
    for _ in range(2):  # the connection cache looks a new name up again within a second
        response = httpx2.post(
            f"{stack.web_url}/webhooks/square-later",
            content=body,
            headers={"Content-Type": "application/json", "x-square-hmacsha256-signature": "c2ln"},
            timeout=30,
        )
        if response.status_code != 404:
            break
        time.sleep(1.1)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_signature"
    assert "square" in response.json()["message"]
    connection = db_rows(stack, "SELECT id FROM connections WHERE name = ?", "square-later")[0][0]
    assert db_rows(stack, "SELECT count(*) FROM webhook_events WHERE connection_id = ?", connection) == [(0,)]


GARBAGE = {
    "not_json": b"this is not json",
    "invalid_utf8": b"\xff\xfe\x00{",
    "json_array": b"[1, 2, 3]",
    "json_string": b'"evt"',
    "not_an_event": b'{"object": "refund", "id": "re_1"}',
    "event_without_id": b'{"object": "event", "type": "refund.updated", "data": {"object": {}}}',
    "refund_event_without_refund": (
        b'{"id": "evt_g1", "object": "event", "type": "refund.updated", "data": 5}'
    ),
    "refund_event_bad_refund": (
        b'{"id": "evt_g2", "object": "event", "type": "refund.failed", "data": {"object": {"id": 7}}}'
    ),
    "deeply_nested": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_with_a_valid_signature_is_4xx_never_500(stack: Stack, case: str) -> None:
    body = GARBAGE[case]
    timestamp = int(time.time())
    # Stripe's scheme computed by hand: the SDK signs text, and some of these bodies are not UTF-8.
    response = deliver(stack, body, f"t={timestamp},v1={v1_of(body, STRIPE_SECRET, timestamp)}")
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["code"] in ("malformed_webhook", "validation_error")


OVERLONG = {
    "event_id_300_chars": {"id": "evt_" + "a" * 300, "type": "charge.succeeded"},
    "event_type_200_chars": {"id": "evt_long_type", "type": "x" * 200},
}
# JSON escapes keep the body ASCII (so valid UTF-8), but the parsed id holds a lone surrogate.
LONE_SURROGATE = (
    b'{"id": "evt_\\ud800", "object": "event", "type": "charge.succeeded", "data": {"object": {}}}'
)


@pytest.mark.parametrize("case", sorted(OVERLONG))
def test_overlong_event_id_or_type_is_never_a_500(stack: Stack, case: str) -> None:
    fields = OVERLONG[case]
    body = json.dumps({**fields, "object": "event", "data": {"object": {}}}).encode()
    response = deliver(stack, body, sign(body))
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["code"] == "malformed_webhook"


def test_event_id_with_a_lone_surrogate_is_never_a_500(stack: Stack) -> None:
    response = deliver(stack, LONE_SURROGATE, sign(LONE_SURROGATE))
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.json()["code"] == "malformed_webhook"


def test_events_that_change_no_refund_are_acknowledged(stack: Stack) -> None:
    stack.faults()
    other_id = f"evt_{uuid.uuid4().hex[:24]}"
    other = json.dumps(
        {
            "id": other_id,
            "object": "event",
            "type": "charge.succeeded",
            "data": {"object": {"id": "ch_1", "object": "charge"}},
        }
    ).encode()
    unknown_id, unknown = refund_event(
        {
            "id": str(uuid.uuid4()),
            "gateway_refund_id": "re_nobody",
            "amount": 5,
            "currency": "EUR",
            "payment_reference": "pi_nobody",
        }
    )
    for event_id, body in ((other_id, other), (unknown_id, unknown)):
        response = deliver(stack, body, sign(body))
        assert response.status_code == 200, response.text
        assert response.json()["stored"] == 1
        assert processed(stack, event_id)
    assert "not a refund status change" in processed(stack, other_id)
    assert "no matching refund" in processed(stack, unknown_id)
