"""Refund execution end to end: web, worker, database and the gateway simulator as real processes.

Each test drives the simulator's faults (shared by the module, so every test starts with
``stack.faults()``) and checks three witnesses: the refund's JSON and timeline, refundwatch's own
database, and the simulator's ledger (what the "processor" really executed, with which key).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from typing import Any

import pytest

from processors import PROCESSORS, STRIPE_KEY, STRIPE_SECRET, kit
from refundwatch.gateways.registry import get_gateway
from stack import Proc, Stack, db_rows, wait_http, wait_until

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


# --------------------------------------------------------------------------------------------- helpers


def gateway_key(refund_id: str) -> str:
    """The processor idempotency key refundwatch stores for a refund (first generation)."""
    return f"rw_{uuid.UUID(refund_id).hex}"


def stored_key(stack: Stack, gateway_refund_id: str) -> str:
    rows = db_rows(
        stack, "SELECT gateway_idempotency_key FROM refunds WHERE gateway_refund_id = ?", gateway_refund_id
    )
    assert len(rows) == 1, rows
    return str(rows[0][0])


def ledger_for(stack: Stack, reference: str) -> list[dict[str, Any]]:
    return [row for row in stack.ledger() if row["payment_reference"] == reference]


def payment_state(
    stack: Stack, reference: str, amount: int, currency: str = "EUR", processor: str = "stripe"
) -> dict[str, Any]:
    """Read a payment back: registering it again with the same data answers 200 with its balances."""
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": kit(processor).connection,
                "payment_reference": reference,
                "amount": amount,
                "currency": currency,
                "captured_at": "2026-11-01T10:00:00Z",
            },
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def transitions(refund: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(from, to, source) of every status change in the timeline, the creation included."""
    events = refund["events"]
    first = events[0]
    moves = [(None, first["status"], first["source"])]
    moves += [(e["from_status"], e["status"], e["source"]) for e in events[1:] if e["from_status"]]
    return moves


def event_with(stack: Stack, refund_id: str, text: str) -> dict[str, Any] | None:
    refund = stack.get(refund_id)
    return refund if any(text in e["detail"] for e in refund["events"]) else None


def new_refund(stack: Stack, reference: str, amount: int) -> str:
    response = stack.refund(reference, amount)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "queued"
    return str(body["id"])


def kill_group(proc: Proc) -> None:
    """SIGKILL a process and its children (granian serves from child processes)."""
    assert proc.popen is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.popen.pid, signal.SIGKILL)  # started with start_new_session: its own group
    proc.popen.wait(10)


def _db_refund(stack: Stack, refund_id: str) -> tuple[str, int, list[tuple[str, str | None, str, str]]]:
    """(status, attempts, events as (status, from_status, source, detail)) straight from the database."""
    ident: Any = uuid.UUID(refund_id)
    if stack.backend == "sqlite":
        ident = ident.bytes
    status, attempts = db_rows(stack, "SELECT status, attempts FROM refunds WHERE id = ?", ident)[0]
    events = db_rows(
        stack,
        "SELECT status, from_status, source, detail FROM refund_events WHERE refund_id = ? ORDER BY id",
        ident,
    )
    return str(status), int(attempts), [(e[0], e[1], e[2], e[3]) for e in events]


# ----------------------------------------------------------------------------------------------- tests


def test_happy_path_executes_once_with_the_stored_key(stack: Stack) -> None:
    # The worker's answer alone: Stripe's refund.created webhook, applied on receipt, could otherwise
    # settle the refund first on a busy machine (a webhook-driven success is tested elsewhere).
    stack.faults(webhook_drop_rate=1.0)
    try:
        reference = stack.payment(10_000)
        client_key = uuid.uuid4().hex
        response = stack.refund(reference, 2_500, key=client_key)
        assert response.status_code == 201, response.text
        refund_id = response.json()["id"]

        refund = stack.wait_status(refund_id, *FINAL)
        assert refund["status"] == "succeeded"
        assert refund["gateway_refund_id"].startswith("re_")
        assert refund["attempts"] == 1
        assert refund["error_code"] is None
        assert transitions(refund) == [
            (None, "queued", "api"),
            ("queued", "submitting", "worker"),
            ("submitting", "succeeded", "worker"),
        ]

        rows = ledger_for(stack, reference)
        assert len(rows) == 1, rows
        row = rows[0]
        assert (row["amount"], row["currency"], row["status"]) == (2_500, "EUR", "succeeded")
        assert row["gateway_refund_id"] == refund["gateway_refund_id"]
        # The key the processor saw is the one refundwatch committed before calling it.
        assert (
            row["idempotency_key"] == stored_key(stack, refund["gateway_refund_id"]) == gateway_key(refund_id)
        )

        payment = payment_state(stack, reference, 10_000)
        assert (payment["refunded_amount"], payment["refundable_amount"]) == (2_500, 7_500)

        # The client's own Idempotency-Key again: the same refund, nothing new at the processor.
        again = stack.refund(reference, 2_500, key=client_key)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == refund_id
        time.sleep(0.5)
        assert len(ledger_for(stack, reference)) == 1
    finally:
        stack.faults()


def keeps_errors(processor: str) -> bool:
    """The processor's idempotency keeps error answers too: a re-sent key cannot execute twice."""
    return get_gateway(processor).capabilities.idempotency_covers_errors


@pytest.mark.parametrize("processor", PROCESSORS)
def test_transient_5xx_is_retried_with_the_same_key(stack: Stack, processor: str) -> None:
    stack.faults(processor, error_rate=1.0)
    try:
        reference = stack.payment(10_000, processor=processor)
        refund_id = new_refund(stack, reference, 1_000)
        wait_until(
            lambda: event_with(stack, refund_id, "attempt 1 failed: gateway_unavailable"),
            timeout=15,
            what="the first attempt to fail with a 5xx",
        )
    finally:
        stack.faults(processor)

    refund = stack.wait_status(refund_id, *FINAL)
    assert refund["status"] == "succeeded", refund
    assert refund["attempts"] > 1
    failed_attempts = [e for e in refund["events"] if "failed: gateway_unavailable" in e["detail"]]
    assert failed_attempts
    assert all("same idempotency key" in e["detail"] for e in failed_attempts)
    assert all(e["status"] == "submitting" for e in failed_attempts)

    rows = ledger_for(stack, reference)
    assert len(rows) == 1, rows
    assert rows[0]["idempotency_key"] == gateway_key(refund_id)


@pytest.mark.parametrize("processor", PROCESSORS)
def test_timeout_while_the_webhook_reports_success_never_fails(stack: Stack, processor: str) -> None:
    """The simulator executes, sends its webhook (Stripe: refund.created; Adyen: the REFUND notification
    after settle_ms), then hangs past the 2 s client timeout.

    The webhook settles the refund; the attempt that times out afterwards must change nothing.
    """
    if processor == "paypal":
        # The fault hangs PayPal's token call too, and then nothing is sent: a refund first, so the
        # worker holds a token (run alone, or after a test that expired it, this test had none).
        stack.wait_status(new_refund(stack, stack.payment(1_000, processor=processor), 100), "succeeded")
    stack.faults(processor, timeout_rate=1.0, timeout_ms=3_000)
    try:
        reference = stack.payment(10_000, processor=processor)
        refund_id = new_refund(stack, reference, 1_500)
        refund = stack.wait_status(refund_id, *FINAL, timeout=15)
        assert refund["status"] == "succeeded", refund
        time.sleep(2.5)  # let the hanging call time out in the worker
    finally:
        stack.faults(processor)
    refund = stack.get(refund_id)
    assert refund["status"] == "succeeded", refund
    assert "failed" not in {e["status"] for e in refund["events"]}
    assert ("submitting", "succeeded", "webhook") in transitions(refund)
    rows = ledger_for(stack, reference)
    assert len(rows) == 1, rows
    assert rows[0]["idempotency_key"] == gateway_key(refund_id)


@pytest.mark.parametrize("processor", PROCESSORS)
def test_outage_ends_in_manual_review_and_retry_succeeds_once(stack: Stack, processor: str) -> None:
    stack.faults(processor, outage=True)
    try:
        reference = stack.payment(10_000, processor=processor)
        refund_id = new_refund(stack, reference, 2_000)
        refund = stack.wait_status(refund_id, *FINAL, timeout=30)
        assert refund["status"] == "manual_review", refund
        assert refund["attempts"] == 4
        # A 5xx is a refusal only where the processor's idempotency keeps error answers too; where it
        # keeps only 2xx (Checkout.com) the request may have executed: the outcome is unknown.
        assert refund["error_code"] == (
            "gateway_unavailable" if keeps_errors(processor) else "outcome_unknown"
        )
        assert refund["error_message"]
        assert "failed" not in {e["status"] for e in refund["events"]}
        assert ledger_for(stack, reference) == []
        # Still counted against the payment while a person decides.
        assert payment_state(stack, reference, 10_000, processor=processor)["refundable_amount"] == 8_000
    finally:
        stack.faults(processor)

    with stack.api() as client:
        response = client.post(f"/api/v1/refunds/{refund_id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("queued", "submitting", "succeeded")

    refund = stack.wait_status(refund_id, *FINAL)
    assert refund["status"] == "succeeded", refund
    assert refund["error_code"] is None
    rows = ledger_for(stack, reference)
    assert len(rows) == 1, rows
    # manual_review's outcome was unknown: the retry keeps the original key.
    assert rows[0]["idempotency_key"] == gateway_key(refund_id)
    assert any(
        e["source"] == "api" and e["status"] == "queued" and e["from_status"] == "manual_review"
        for e in refund["events"]
    )


def test_permanent_refusal_fails_and_releases_the_amount(stack: Stack) -> None:
    stack.faults()
    # refundwatch believes 6000 were captured, the processor only 1000: Stripe answers amount_too_large.
    reference = stack.payment(6_000, simulator_amount=1_000)
    refund_id = new_refund(stack, reference, 5_000)
    refund = stack.wait_status(refund_id, *FINAL)
    assert refund["status"] == "failed", refund
    assert refund["error_code"] == "amount_exceeds_refundable"
    assert refund["attempts"] == 1  # a refusal is not retried
    assert refund["gateway_refund_id"] is None
    assert ledger_for(stack, reference) == []

    payment = payment_state(stack, reference, 6_000)
    assert (payment["refundable_amount"], payment["refunded_amount"]) == (6_000, 0)
    # 5000 more only fits in 6000 if the failed refund's 5000 was released.
    second = stack.refund(reference, 5_000)
    assert second.status_code == 201, second.text
    assert stack.wait_status(second.json()["id"], *FINAL)["status"] == "failed"


def test_pending_refund_succeeds_through_the_webhook(stack: Stack) -> None:
    stack.faults(pending_rate=1.0, settle_ms=800)
    try:
        reference = stack.payment(10_000)
        refund_id = new_refund(stack, reference, 3_000)
        refund = stack.wait_status(refund_id, "processing", "succeeded", "failed", "manual_review")
        assert refund["status"] in ("processing", "succeeded"), refund
        refund = stack.wait_status(refund_id, *FINAL, timeout=30)
    finally:
        stack.faults()
    assert refund["status"] == "succeeded", refund
    moves = transitions(refund)
    assert ("submitting", "processing") in [(f, t) for f, t, _ in moves]
    assert ("processing", "succeeded", "webhook") in moves, moves
    rows = ledger_for(stack, reference)
    assert [r["status"] for r in rows] == ["succeeded"], rows
    assert payment_state(stack, reference, 10_000)["refunded_amount"] == 3_000


@pytest.mark.parametrize("processor", PROCESSORS)
def test_fail_later_reverses_and_gives_the_amount_back(stack: Stack, processor: str) -> None:
    """Stripe: refund.updated to failed after succeeded; Adyen: REFUND_FAILED after REFUND success."""
    stack.faults(processor, fail_later_rate=1.0, settle_ms=2_000)
    try:
        reference = stack.payment(10_000, processor=processor)
        refund_id = new_refund(stack, reference, 4_000)
        refund = stack.wait_status(refund_id, *FINAL)
        assert refund["status"] == "succeeded", refund
        payment = payment_state(stack, reference, 10_000, processor=processor)
        assert (payment["refunded_amount"], payment["refundable_amount"]) == (4_000, 6_000)
        refund = stack.wait_status(refund_id, "reversed", timeout=30)
    finally:
        stack.faults(processor)
    assert ("succeeded", "reversed", "webhook") in transitions(refund), transitions(refund)
    assert refund["error_code"]  # why the processor took it back
    payment = payment_state(stack, reference, 10_000, processor=processor)
    assert (payment["refunded_amount"], payment["refundable_amount"]) == (0, 10_000)
    rows = ledger_for(stack, reference)
    assert [r["status"] for r in rows] == ["failed"], rows


def test_sync_endpoint_returns_the_refund_and_records_a_sync_event(stack: Stack) -> None:
    stack.faults()
    reference = stack.payment(10_000)
    refund_id = new_refund(stack, reference, 700)
    before = stack.wait_status(refund_id, *FINAL)
    assert before["status"] == "succeeded"
    syncs_before = sum(e["source"] == "sync" for e in before["events"])

    with stack.api() as client:
        response = client.post(f"/api/v1/refunds/{refund_id}/sync")
        missing = client.post(f"/api/v1/refunds/{uuid.uuid4()}/sync")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == refund_id
    assert body["status"] == "succeeded"
    assert sum(e["source"] == "sync" for e in body["events"]) == syncs_before + 1
    assert missing.status_code == 404, missing.text
    assert len(ledger_for(stack, reference)) == 1


def _health_rows(stack: Stack) -> list[tuple[bool, str | None]]:
    rows = db_rows(
        stack,
        "SELECT h.ok, h.error FROM health_checks h JOIN connections c ON c.id = h.connection_id "
        "WHERE c.name = ? ORDER BY h.id",
        "stripe-test",
    )
    return [(bool(ok), error) for ok, error in rows]


def test_health_checks_are_recorded(stack: Stack) -> None:
    stack.faults()
    wait_until(
        lambda: any(ok for ok, _ in _health_rows(stack)),
        timeout=10,
        interval=0.3,
        what="a successful health check row",
    )
    failures_before = sum(not ok for ok, _ in _health_rows(stack))
    stack.faults(outage=True)
    try:
        rows = wait_until(
            lambda: (r := _health_rows(stack)) and sum(not ok for ok, _ in r) > failures_before and r,
            timeout=10,
            interval=0.3,
            what="a failed health check row during the outage",
        )
    finally:
        stack.faults()
    assert all(error for ok, error in rows if not ok)
    assert all(error is None for ok, error in rows if ok)


def test_retry_of_a_refused_refund_uses_a_new_key(stack: Stack) -> None:
    """Late in the module: it resets the simulator (forgetting every payment) to fix this one's amount."""
    stack.faults()
    reference = stack.payment(6_000, simulator_amount=1_000)
    refund_id = new_refund(stack, reference, 5_000)
    assert stack.wait_status(refund_id, *FINAL)["status"] == "failed"

    # The processor now knows the payment with its full amount (a reset forgets the old one).
    stack.control("reset", {})
    stack.control(
        "payments",
        {"processor": "stripe", "payment_reference": reference, "amount": 6_000, "currency": "EUR"},
    )
    with stack.api() as client:
        response = client.post(f"/api/v1/refunds/{refund_id}/retry")
    assert response.status_code == 200, response.text

    refund = stack.wait_status(refund_id, *FINAL)
    assert refund["status"] == "succeeded", refund
    rows = ledger_for(stack, reference)
    assert len(rows) == 1, rows
    new_key = rows[0]["idempotency_key"]
    assert new_key != gateway_key(refund_id)
    assert new_key == f"{gateway_key(refund_id)}_r1"
    assert stored_key(stack, refund["gateway_refund_id"]) == new_key
    assert payment_state(stack, reference, 6_000)["refunded_amount"] == 5_000


@pytest.mark.parametrize("processor", PROCESSORS)
def test_connection_resets_are_retried_with_the_same_key(stack: Stack, processor: str) -> None:
    """The connection drops, half the time after the processor executed: outcome unknown, so the
    re-send carries the same key and the processor replays instead of paying twice."""
    # Where the first answer is the outcome (Stripe), its webhook could settle a refund whose answer was
    # cut off before the worker records the cut: dropped, so the same-key re-send is what tells.
    quiet = {"webhook_drop_rate": 1.0} if kit(processor).answers_outcome else {}
    # Slower retries than the stack's: the faults cut every call, the look-ups that come before a
    # re-send too (Checkout.com), and must be lifted before a refund has used all its attempts.
    stack.stop_worker()
    stack.start_worker(REFUNDWATCH_RETRY_BASE_SECONDS="2", REFUNDWATCH_RETRY_MAX_SECONDS="4")
    stack.wait_worker_ready()
    try:
        connection_resets(stack, processor, quiet)
    finally:
        stack.stop_worker()  # the stack's own retries again
        stack.start_worker()
        stack.wait_worker_ready()


def connection_resets(stack: Stack, processor: str, quiet: dict[str, float]) -> None:
    stack.faults(processor, reset_rate=1.0, **quiet)
    try:
        references = [stack.payment(10_000, processor=processor) for _ in range(3)]
        ids = [new_refund(stack, reference, 1_100) for reference in references]
        for refund_id in ids:
            wait_until(
                lambda refund_id=refund_id: event_with(stack, refund_id, "attempt 1 failed"),
                timeout=15,
                interval=0.05,
                what="the first attempt to be cut off",
            )
    finally:
        stack.faults(processor)
    for refund_id, reference in zip(ids, references, strict=True):
        refund = stack.wait_status(refund_id, *FINAL)
        assert refund["status"] == "succeeded", refund
        assert "failed" not in {e["status"] for e in refund["events"]}
        rows = ledger_for(stack, reference)
        assert [r["idempotency_key"] for r in rows] == [gateway_key(refund_id)], rows
        assert rows[0]["gateway_refund_id"] == refund["gateway_refund_id"]


def test_a_call_ends_inside_the_workers_job_even_if_the_connection_allows_longer(stack: Stack) -> None:
    """timeout_seconds was checked only against the importing shell's job timeout: a worker with shorter
    jobs (the stack's: 5 s) let a 40 s call run until arq killed the job, and the refund ended in manual
    review, "outcome unknown". The worker caps the call below its own job timeout (5 s - 2 s margin), so
    the call times out inside the job, on the ordinary timeout path, and the look-up settles it."""
    name = f"slow-{uuid.uuid4().hex[:8]}"
    connection = (
        f'[[connection]]\nname = "{name}"\nprocessor = "stripe"\nbase_url = "{stack.sim_url}/stripe"\n'
        f'api_key = "{STRIPE_KEY}"\nwebhook_secret = "{STRIPE_SECRET}"\ntimeout_seconds = 40\n'
    )
    path = stack.workdir / f"{name}.toml"
    path.write_text(connection)
    # The shell that imports it has long jobs, so 40 s is accepted there.
    stack.cli("connections", "import", str(path), extra_env={"REFUNDWATCH_JOB_TIMEOUT_SECONDS": "60"})
    time.sleep(1.1)  # running processes look a new connection name up again within a second
    reference = stack.payment(5_000, connection=name)
    stack.faults(latency_ms=4_500)  # beyond the 3 s cap, within the 5 s job
    try:
        response = stack.refund(reference, 1_000, connection=name)
        assert response.status_code == 201, response.text
        refund_id = response.json()["id"]
        wait_until(
            lambda: any("attempt 1 failed: timeout" in e[3] for e in _db_refund(stack, refund_id)[2]),
            timeout=15,
            interval=0.1,
            what="the first attempt to time out inside its job",
        )
        stack.faults()
        refund = stack.wait_status(refund_id, *FINAL, timeout=30)
        assert refund["status"] == "succeeded", refund
        assert len(ledger_for(stack, reference)) == 1
        log = (stack.workdir / "worker.log").read_text(errors="replace")
        assert log.count(f"connection {name!r}: timeout_seconds 40") == 1, log[-3000:]
    finally:
        stack.faults()


def restart_web(stack: Stack) -> None:
    web = stack.procs["web"]
    if not web.alive:
        web.start()
        wait_http(f"{stack.web_url}/healthz", web)


@pytest.mark.parametrize("processor", PROCESSORS)
def test_timeout_keeps_submitting_then_the_replay_is_answered_once(stack: Stack, processor: str) -> None:
    """Outcome unknown and no webhook can arrive: submitting, then a same-key replay, one ledger row.

    The web process is killed so the simulator's webhook (Stripe's refund.created, Adyen's REFUND
    notification) finds nobody; the replay gets the saved first answer: Stripe's is the outcome
    (succeeded), Adyen's only "received" (processing, until a notification comes). Last in the
    module: the web server is started again at the end.
    """
    answer = "succeeded" if kit(processor).answers_outcome else "processing"
    # Where the processor keeps only 2xx answers for a key (Checkout.com), nothing is re-sent: the
    # refund is found among the payment's actions, as it stands by then (accepted, or settled).
    answers = {answer} if keeps_errors(processor) else {"processing", "succeeded"}
    stack.faults(processor, latency_ms=1_500, timeout_rate=1.0, timeout_ms=3_000)
    try:
        reference = stack.payment(10_000, processor=processor)
        refund_id = new_refund(stack, reference, 1_500)
        kill_group(stack.procs["web"])  # before the simulator executes (1.5 s latency)
        seen: set[str] = set()

        def timed_out() -> bool:
            status, _, events = _db_refund(stack, refund_id)
            seen.add(status)
            return any("attempt 1 failed: timeout" in e[3] for e in events)

        wait_until(timed_out, timeout=15, interval=0.1, what="the first attempt to time out")
        status, _, events = _db_refund(stack, refund_id)
        assert status == "submitting", events
        assert any("outcome unknown" in e[3] for e in events)
        # The processor did execute it: one row, under the stored key.
        assert [r["idempotency_key"] for r in ledger_for(stack, reference)] == [gateway_key(refund_id)]
        stack.faults(processor)
        wait_until(
            lambda: _db_refund(stack, refund_id)[0] not in ("queued", "submitting"),
            timeout=20,
            interval=0.1,
            what="the replay",
        )
        assert seen <= {"queued", "submitting"}, seen

        status, attempts, events = _db_refund(stack, refund_id)
        assert status in answers, events
        assert attempts >= 2
        assert "failed" not in {e[0] for e in events}
        assert ("submitting", status, "worker") in [(f, t, src) for t, f, src, _ in events]
        if not keeps_errors(processor):
            assert any("before any re-send" in e[3] for e in events), events
        rows = ledger_for(stack, reference)
        assert len(rows) == 1, rows
        assert rows[0]["idempotency_key"] == gateway_key(refund_id)
    finally:
        stack.faults(processor)
        restart_web(stack)
