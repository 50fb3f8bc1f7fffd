"""Adyen end to end: web, worker, database and the stack's simulator as real processes, on both databases.

Adyen only acknowledges a refund ("received"); the outcome comes in signed notifications, several
items to a delivery, and there is no endpoint to read a refund back. Notifications here are sent by
the simulator, or built and signed by the test with the official SDK's ``generate_notification_sig``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx2
import pytest
from Adyen.util import generate_notification_sig

from processors import ADYEN_HMAC_KEY, ADYEN_MERCHANT, kit
from refundwatch.audit.actions import processor_actor
from refundwatch.db.engine import Database
from refundwatch.gateways.base import GatewayStatus, WebhookEvent
from refundwatch.refunds import cas
from refundwatch.webhooks import fastpath, storing
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

ADYEN = kit("adyen")
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


def faults(stack: Stack, **values: Any) -> None:
    stack.faults("adyen", **values)


def payment(stack: Stack, amount: int = 10_000) -> str:
    return stack.payment(amount, processor="adyen")


def refund(stack: Stack, psp: str, amount: int) -> str:
    response = stack.refund(psp, amount, connection=ADYEN.connection)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def ledger(stack: Stack, psp: str) -> list[dict[str, Any]]:
    return [r for r in stack.ledger() if r["payment_reference"] == psp]


def item(refund: dict[str, Any], event: str, success: bool, *, amount: int | None = None) -> dict[str, Any]:
    """A NotificationRequestItem about this refund, signed with the SDK's own helper."""
    body: dict[str, Any] = {
        "additionalData": {},
        "amount": {"value": refund["amount"] if amount is None else amount, "currency": refund["currency"]},
        "eventCode": event,
        "eventDate": "2026-12-06T10:00:00+01:00",
        "merchantAccountCode": ADYEN_MERCHANT,
        "merchantReference": refund["id"],
        "originalReference": refund["payment_reference"],
        "pspReference": refund["gateway_refund_id"],
        "reason": "" if success else "Insufficient balance on payment",
        "success": "true" if success else "false",
    }
    signature = generate_notification_sig(body, ADYEN_HMAC_KEY)
    body["additionalData"]["hmacSignature"] = (
        signature.decode() if isinstance(signature, bytes) else signature
    )
    return body


def deliver(stack: Stack, *items: dict[str, Any]) -> httpx2.Response:
    body = {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
    return httpx2.post(
        f"{stack.web_url}/webhooks/{ADYEN.connection}",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def details(refund: dict[str, Any]) -> list[str]:
    return [str(e["detail"]) for e in refund["events"]]


def test_received_is_processing_and_the_refund_notification_settles_it(stack: Stack) -> None:
    faults(stack, settle_ms=1_500)
    psp = payment(stack)
    refund_id = refund(stack, psp, 2_500)
    processing = stack.wait_status(refund_id, "processing", *FINAL)
    assert processing["status"] in ("processing", "succeeded"), processing
    done = stack.wait_status(refund_id, *FINAL)
    assert done["status"] == "succeeded", done
    assert "processing" in {e["status"] for e in done["events"]}  # never straight to success
    rows = ledger(stack, psp)
    assert len(rows) == 1, rows
    assert rows[0]["idempotency_key"]
    assert rows[0]["gateway_refund_id"] == done["gateway_refund_id"]


def twice_accepted(stack: Stack, psp: str) -> bool:
    deliveries = [d for d in stack.control("webhooks?processor=adyen") if psp in d["event_id"]]
    return sum(d["state"] == "delivered" for d in deliveries) >= 2 and any(d["duplicate"] for d in deliveries)


def test_every_notification_delivered_twice_is_applied_once(stack: Stack) -> None:
    """The simulator sends each delivery twice (Adyen retries what it thinks unacknowledged)."""
    faults(stack, webhook_duplicate_rate=1.0)
    try:
        psps = [payment(stack) for _ in range(3)]
        ids = [refund(stack, psp, 900) for psp in psps]
        done = [stack.wait_status(refund_id, *FINAL) for refund_id in ids]
        for refund_now in done:  # the second copy has been answered, not merely sent
            wait_until(
                lambda psp=refund_now["gateway_refund_id"]: twice_accepted(stack, psp),
                timeout=20,
                what=f"both copies of {refund_now['gateway_refund_id']}'s notification accepted",
            )
    finally:
        faults(stack)
    for refund_now in (stack.get(refund_id) for refund_id in ids):
        assert refund_now["status"] == "succeeded", refund_now
        assert [e["status"] for e in refund_now["events"]].count("succeeded") == 1, refund_now["events"]
        stored = db_rows(
            stack,
            "SELECT event_id FROM webhook_events WHERE event_id LIKE ?",
            f"{refund_now['gateway_refund_id']}%",
        )
        assert len(stored) == 1, stored
    for psp in psps:
        assert len(ledger(stack, psp)) == 1


def test_one_bad_item_is_refused_and_the_others_applied(stack: Stack) -> None:
    faults(stack, webhook_drop_rate=1.0)
    first, second = (refund(stack, payment(stack), 1_000) for _ in range(2))
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
    # Signed but unreadable (an amount that is not a number) beside a good item: refused alone.
    unreadable = item(two, "REFUND", True, amount="lots")  # type: ignore[arg-type]
    fine = item(two, "REFUND", True)
    assert deliver(stack, unreadable, fine).text == "[accepted]"
    assert stack.wait_status(second, *FINAL)["status"] == "succeeded"
    faults(stack)


def test_refund_failed_after_success_is_reversed_and_disorder_never_lost(stack: Stack) -> None:
    faults(stack, webhook_drop_rate=1.0)
    psp = payment(stack)
    refund_id = refund(stack, psp, 3_000)
    current = stack.wait_status(refund_id, "processing")
    assert deliver(stack, item(current, "REFUND", True)).status_code == 200
    assert stack.wait_status(refund_id, *FINAL)["status"] == "succeeded"
    assert deliver(stack, item(current, "REFUND_FAILED", True)).status_code == 200
    assert stack.wait_status(refund_id, "reversed")["status"] == "reversed"

    # Out of order: the failure first, then the success it follows. Money truth: a person decides.
    other = stack.wait_status(refund(stack, payment(stack), 1_000), "processing")
    assert deliver(stack, item(other, "REFUND", False)).status_code == 200
    assert stack.wait_status(other["id"], *FINAL)["status"] == "failed"
    assert deliver(stack, item(other, "REFUND", True)).status_code == 200
    assert stack.wait_status(other["id"], "manual_review")["status"] == "manual_review"
    faults(stack)


def test_sync_cannot_ask_adyen_and_silence_ends_in_manual_review(stack: Stack) -> None:
    faults(stack, webhook_drop_rate=1.0)
    psp = payment(stack)
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
        faults(stack)
    assert any("no notification from adyen" in d for d in details(refund_now)), details(refund_now)
    assert len(ledger(stack, psp)) == 1


def test_a_notification_before_the_received_answer_still_ends_succeeded(stack: Stack) -> None:
    """Adyen notifies fast: the REFUND notification arrives while the 201 "received" answer is still
    on its way. The late answer must not move the refund back to processing."""
    faults(stack, timeout_rate=1.0, timeout_ms=1_200, settle_ms=0)
    try:
        psp = payment(stack)
        refund_id = refund(stack, psp, 1_500)
        wait_until(
            lambda: any("processor status received" in d for d in details(stack.get(refund_id))),
            timeout=20,
            what="the late received answer",
        )
        after = stack.get(refund_id)
    finally:
        faults(stack)
    assert after["status"] == "succeeded", after
    moves = [(e["from_status"], e["status"]) for e in after["events"] if e["from_status"]]
    assert ("submitting", "succeeded") in moves, moves  # the notification came first
    late = [e for e in after["events"] if "processor status received" in e["detail"]]
    assert [(e["status"], e["from_status"]) for e in late] == [("succeeded", None)], late
    assert "ignored: earlier news: the refund has already succeeded" in late[0]["detail"]
    assert len(ledger(stack, psp)) == 1


def stored_event(stack: Stack, refund: dict[str, Any], event: str, success: bool) -> list[tuple[Any, ...]]:
    event_id = f"{refund['gateway_refund_id']}:{event}:{'true' if success else 'false'}"
    return db_rows(stack, "SELECT processed_at, outcome FROM webhook_events WHERE event_id = ?", event_id)


def test_confirming_notifications_are_applied_on_receipt_and_the_rest_left_to_the_worker(
    stack: Stack,
) -> None:
    """A notification that confirms what is expected (this attempt, amount and currency as asked) is
    applied when it is received, with no worker running: status, balance, timeline and the stored
    event marked processed, at once. Anything else (an amount that differs) waits for the worker's
    locked path, and still ends where it must."""
    faults(stack, webhook_drop_rate=1.0)
    try:
        ids = [refund(stack, payment(stack), amount) for amount in (1_100, 1_200, 1_300)]
        ok, refused, odd = (stack.wait_status(r, "processing") for r in ids)
        stack.stop_worker()
        try:
            good = item(ok, "REFUND", True)
            response = deliver(
                stack, good, good, item(refused, "REFUND", False), item(odd, "REFUND", True, amount=9)
            )
            assert (response.status_code, response.text) == (200, "[accepted]")
            # Applied before the answer went out: nothing else could have applied them.
            assert stack.get(ok["id"])["status"] == "succeeded"
            assert stack.get(refused["id"])["status"] == "failed"
            ((processed_at, outcome),) = stored_event(stack, ok, "REFUND", True)
            assert processed_at is not None
            assert outcome == "REFUND: succeeded (moved)"
            assert stored_event(stack, refused, "REFUND", False)[0][1] == "REFUND: failed (moved)"
            # Reported 9 EUR cents for a 13 EUR refund: not the fast path's to decide.
            assert stack.get(odd["id"])["status"] == "processing"
            ((processed_at, outcome),) = stored_event(stack, odd, "REFUND", True)
            assert processed_at is None
            assert outcome is None
        finally:
            stack.start_worker()
            stack.wait_worker_ready()
        assert stack.wait_status(odd["id"], "manual_review")["status"] == "manual_review"
    finally:
        faults(stack)
    # A person must decide: the worker says so in one structured line (refunds.outcome_log).
    wait_until(
        lambda: any(
            f'"refund_id": "{odd["id"]}"' in line and '"status": "manual_review"' in line
            for line in (stack.workdir / "worker.log").read_text(errors="replace").splitlines()
        ),
        timeout=20,
        what="the manual_review outcome line",
    )
    succeeded = stack.get(ok["id"])
    assert [e["status"] for e in succeeded["events"]].count("succeeded") == 1, succeeded["events"]
    assert any(f"webhook REFUND ({ok['gateway_refund_id']}:REFUND:true)" in d for d in details(succeeded))
    # Reserved counts every refund not released (succeeded ones too); a failure releases its amount.
    for current, balance in ((ok, (1_100, 1_100)), (refused, (0, 0))):
        rows = db_rows(
            stack,
            "SELECT refunded_amount, reserved_amount FROM payments WHERE payment_reference = ?",
            current["payment_reference"],
        )
        assert rows == [balance], (current["id"], rows)
    transitions = db_rows(
        stack, "SELECT action FROM audit_log WHERE target_id = ? AND action LIKE ?", ok["id"], "%webhook%"
    )
    assert len(transitions) == 1, transitions


def test_the_same_notification_delivered_concurrently_moves_the_refund_once(stack: Stack) -> None:
    """Adyen retries a delivery it thinks unacknowledged while the first is still being stored: eight
    copies at once, each applied on receipt if it can be. One is stored and applied, the rest are
    acknowledged duplicates."""
    faults(stack, webhook_drop_rate=1.0)
    try:
        current = stack.wait_status(refund(stack, payment(stack), 1_400), "processing")
        good = item(current, "REFUND", True)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: deliver(stack, good), range(8)))
    finally:
        faults(stack)
    assert {(a.status_code, a.text) for a in answers} == {(200, "[accepted]")}
    done = stack.wait_status(current["id"], *FINAL)
    assert done["status"] == "succeeded", done
    assert [e["status"] for e in done["events"]].count("succeeded") == 1, done["events"]
    assert len(stored_event(stack, current, "REFUND", True)) == 1
    accepted = db_rows(
        stack,
        "SELECT id FROM audit_log WHERE action = ? AND target_id = ?",
        "webhook:event:accepted",
        f"{current['gateway_refund_id']}:REFUND:true",
    )
    assert len(accepted) == 1, accepted
    balance = db_rows(
        stack,
        "SELECT refunded_amount FROM payments WHERE payment_reference = ?",
        current["payment_reference"],
    )
    assert balance == [(1_400,)]


def test_the_audit_chain_seals_and_verifies_after_notifications(stack: Stack) -> None:
    """Entries written by the webhook paths (stored events, transitions applied on receipt) carry
    entry hashes the sealer agrees with: the whole chain seals and verifies."""
    faults(stack, webhook_drop_rate=1.0)
    try:
        one, two = (stack.wait_status(refund(stack, payment(stack), 700), "processing") for _ in range(2))
        # One applied on receipt (stored with its transition), one stored for the worker (a mismatch).
        assert (
            deliver(stack, item(one, "REFUND", True), item(two, "REFUND", True, amount=7)).status_code == 200
        )
        assert stack.wait_status(two["id"], "manual_review")["status"] == "manual_review"
    finally:
        faults(stack)
    deadline = time.monotonic() + 60
    while db_rows(stack, "SELECT count(*) FROM audit_log WHERE seq IS NULL")[0][0]:
        if time.monotonic() > deadline:
            rows = db_rows(
                stack,
                "SELECT at, actor_type, actor_id, action, target_type, target_id, details, ip, user_agent,"
                " entry_hash FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT 3",
            )
            raise AssertionError(f"the worker did not seal the audit chain: {rows}")
        time.sleep(0.2)
    result = stack.cli("audit", "verify", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_notification_reaching_a_refund_still_submitting_is_applied_on_receipt(stack: Stack) -> None:
    """Adyen notifies fast: its REFUND notification can come while the worker has not yet recorded the
    "received" answer (a busy worker, or here one killed with the call in flight). A notification
    about the attempt in flight is applied on receipt, with no worker: the refund takes the processor
    refund id it names. One naming an earlier attempt's processor refund (a late success for a refused
    first attempt, while the retry is in flight) is not the fast path's: it waits for the worker,
    which tells a person the processor may have refunded twice."""
    faults(stack, webhook_drop_rate=1.0)
    psp_retried = payment(stack)
    retried = stack.wait_status(refund(stack, psp_retried, 1_600), "processing")
    assert deliver(stack, item(retried, "REFUND", False)).status_code == 200
    assert stack.wait_status(retried["id"], "failed")["status"] == "failed"
    # Each call now executes, then hangs past the worker's timeout: killed meanwhile, outcome unknown.
    faults(stack, webhook_drop_rate=1.0, timeout_rate=1.0, timeout_ms=30_000)
    try:
        stack.stop_worker()
        psp = payment(stack)
        fresh_id = refund(stack, psp, 1_700)
        with stack.api() as client:
            assert client.post(f"/api/v1/refunds/{retried['id']}/retry").status_code == 200
        stack.start_worker()
        wait_until(
            lambda: len(ledger(stack, psp)) == 1 and len(ledger(stack, psp_retried)) == 2,
            timeout=30,
            what="both calls executed at the processor",
        )
        stack.procs["worker"].kill()
        fresh = stack.get(fresh_id)
        again = stack.get(retried["id"])
        assert (fresh["status"], fresh["gateway_refund_id"]) == ("submitting", None), fresh
        assert (again["status"], again["gateway_refund_id"]) == ("submitting", None), again
        (executed,) = ledger(stack, psp)
        fresh_report = item(fresh | {"gateway_refund_id": executed["gateway_refund_id"]}, "REFUND", True)
        late_report = item(retried, "REFUND", True)  # the first attempt's processor refund id
        response = deliver(stack, fresh_report, late_report)
        assert (response.status_code, response.text) == (200, "[accepted]")
        # Applied before the answer went out: no worker runs.
        done = stack.get(fresh_id)
        assert (done["status"], done["gateway_refund_id"]) == ("succeeded", executed["gateway_refund_id"])
        assert stored_event(stack, done, "REFUND", True) == [
            (stored_event(stack, done, "REFUND", True)[0][0], "REFUND: succeeded (moved)")
        ]
        assert stack.get(retried["id"])["status"] == "submitting"
        ((processed_at, _),) = stored_event(stack, retried, "REFUND", True)
        assert processed_at is None  # left for the worker's locked path
    finally:
        faults(stack)
        stack.start_worker()
        stack.wait_worker_ready()
    balance = db_rows(stack, "SELECT refunded_amount FROM payments WHERE payment_reference = ?", psp)
    assert balance == [(1_700,)]
    warned = wait_until(
        lambda: [
            d for d in details(stack.get(retried["id"])) if "ALERT: money moved for another attempt" in d
        ],
        timeout=30,
        what="the double-refund alert on the timeline",
    )
    # Told apart as an earlier attempt's, or (when the retry's re-sent call was answered first) as not
    # the current attempt's: either way it names the first attempt's processor refund.
    assert f"about processor refund {retried['gateway_refund_id']}" in warned[0]
    # The retry's call is re-sent with its own key after the restart: a replay, never a third refund
    # (its own REFUND notification, no longer dropped, may already have settled it).
    stack.wait_status(retried["id"], "processing", "succeeded")
    assert len(ledger(stack, psp_retried)) == 2


def test_a_deliverys_confirming_notifications_run_as_one_pipelined_batch(stack: Stack) -> None:
    """PostgreSQL: the fast path runs a delivery's confirming notifications of one shape in one
    pipelined, atomic round trip (``cas.run_many``). Every parameter of that statement must be given,
    the literal NULL of the outgoing webhooks' part included: without it every batch failed and was
    applied one by one, with the same outcome at several times the cost. The batch's rows name the
    events it applied; a redelivery of the same batch moves nothing."""
    if stack.backend != "postgresql":
        pytest.skip("pipelined batches are PostgreSQL's; SQLite applies a delivery in one write")
    # Adyen's own notifications stay lost for the whole test: one sent after a reset of the faults
    # would settle a refund before the batch does.
    faults(stack, webhook_drop_rate=1.0)
    try:
        current = [stack.wait_status(refund(stack, payment(stack), 600), "processing") for _ in range(3)]
        _run_the_batch_twice(stack, current)
    finally:
        faults(stack)


def _run_the_batch_twice(stack: Stack, current: list[dict[str, Any]]) -> None:
    ((connection_id,),) = db_rows(
        stack, "SELECT connection_id FROM refunds WHERE id = ?", uuid.UUID(current[0]["id"])
    )

    def plans() -> list[cas.Prepared]:
        events = [
            (
                b"{}",
                WebhookEvent(
                    event_id=f"{r['gateway_refund_id']}:REFUND:true",
                    event_type="REFUND",
                    gateway_refund_id=r["gateway_refund_id"],
                    refund_id=r["id"],
                    status=GatewayStatus.SUCCEEDED,
                    amount=r["amount"],
                    currency=r["currency"],
                ),
            )
            for r in current
        ]
        actor, now = processor_actor(ADYEN.connection), dt.datetime.now(dt.UTC)
        rows = storing.new_rows(connection_id, ADYEN.connection, events, actor, now)
        return [fastpath.prepare(connection_id, ADYEN.connection, new, stored=False)[0] for new in rows]

    async def run_twice() -> tuple[set[uuid.UUID], set[uuid.UUID], set[uuid.UUID]]:
        db = Database(stack.database_url)
        try:
            batch, again = plans(), plans()  # Adyen resends what it thinks unacknowledged
            first = {row["webhook_event_id"] for row in await cas.run_many(db, batch)}
            second = {row["webhook_event_id"] for row in await cas.run_many(db, again)}
            return {p.params["y_id"] for p in batch}, first, second
        finally:
            await db.dispose()

    sent, applied, reapplied = asyncio.run(run_twice())
    assert applied == sent  # each moved row names the event stored with it
    assert reapplied == set()
    for r in current:
        done = stack.get(r["id"])
        assert done["status"] == "succeeded", done
        assert [e["status"] for e in done["events"]].count("succeeded") == 1, done["events"]
        assert len(stored_event(stack, r, "REFUND", True)) == 1
