"""Refunds of a connection an operator has disabled wait, say why once, and go ahead when it is enabled.

The worker used to send queued refunds of a connection disabled after they were accepted (issue 11).
Intake already refuses new refunds for a disabled connection; these tests cover the ones accepted
before: queued ones, and a submitting one whose earlier outcome is unknown.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from stack import Proc, Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

WAIT_SECONDS = "1"
WAITING = "waiting: connection stripe-test is disabled"


def _import(stack: Stack, *, enabled: bool) -> None:
    """The stack's own connections file, with ``enabled`` set, through ``refundwatch connections import``."""
    text = (stack.workdir / "connections-stripe.toml").read_text()  # refundwatch's, Stripe alone
    path = stack.workdir / f"connections-{'on' if enabled else 'off'}.toml"
    path.write_text(f"{text.rstrip()}\nenabled = {'true' if enabled else 'false'}\n")
    stack.cli("connections", "import", str(path))


def kill_group(proc: Proc) -> None:
    """SIGKILL a process and its children (granian serves from child processes)."""
    assert proc.popen is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.popen.pid, signal.SIGKILL)
    proc.popen.wait(10)


def _restart_worker(stack: Stack) -> None:
    stack.stop_worker()
    stack.start_worker(REFUNDWATCH_DISABLED_CONNECTION_WAIT_SECONDS=WAIT_SECONDS)
    stack.wait_worker_ready()


def _next_attempt_at(stack: Stack, refund_id: str) -> object:
    ident: object = uuid.UUID(refund_id)
    if stack.backend == "sqlite":
        ident = uuid.UUID(refund_id).bytes
    return db_rows(stack, "SELECT next_attempt_at FROM refunds WHERE id = ?", ident)[0][0]


def _waiting_events(refund: dict[str, object]) -> int:
    events = refund["events"]
    assert isinstance(events, list)
    return sum(e["detail"] == WAITING for e in events)


@pytest.fixture
def enabled_again(stack: Stack) -> Iterator[None]:
    yield
    _import(stack, enabled=True)  # the module's other tests need it


def _ledger(stack: Stack, reference: str) -> list[dict[str, object]]:
    return [r for r in stack.ledger() if r["payment_reference"] == reference]


def _new_refund(stack: Stack, reference: str, amount: int) -> str:
    """Accepted once the web process's connection cache (10 s) has seen the connection enabled again."""
    key = uuid.uuid4().hex

    def accepted() -> str | None:
        response = stack.refund(reference, amount, key=key)
        if response.status_code == 422 and response.json()["code"] == "connection_disabled":
            return None
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    refund_id: str = wait_until(accepted, timeout=20, interval=0.5, what="intake to accept")
    return refund_id


def test_queued_refund_waits_while_disabled_then_succeeds_once(stack: Stack, enabled_again: None) -> None:
    stack.faults()
    reference = stack.payment(10_000)
    stack.stop_worker()  # the refund is accepted and queued; then the operator disables the connection
    refund_id = _new_refund(stack, reference, 4_000)
    _import(stack, enabled=False)
    _restart_worker(stack)

    wait_until(lambda: _waiting_events(stack.get(refund_id)), timeout=30, what="waiting")
    time.sleep(4)  # several looks at 1 s apart: still one line on the timeline
    refund = stack.get(refund_id)
    assert refund["status"] == "queued"
    assert refund["attempts"] == 0
    assert _waiting_events(refund) == 1
    assert _next_attempt_at(stack, refund_id) is not None  # the sweeper leaves it to its job
    assert _ledger(stack, reference) == []

    _import(stack, enabled=True)
    refund = stack.wait_status(refund_id, "succeeded", "failed", "manual_review", timeout=40)
    assert refund["status"] == "succeeded"
    assert refund["attempts"] == 1
    assert _waiting_events(refund) == 1
    assert len(_ledger(stack, reference)) == 1


def test_a_connections_rate_limit_holds_across_workers(stack: Stack) -> None:
    """CONTRACT §6 ``rate_limit_per_second`` (enforced across all workers) was imported and stored,
    and nothing read it: 20 refunds went to a connection limited to 2 a second in about a second.
    Each call now takes its slot in a schedule the workers share, so no second carries more than
    the limit. Read from the refunds' own timelines (when each was sent), not from the test's clock."""
    rate = 4
    text = (stack.workdir / "connections-stripe.toml").read_text()
    path = stack.workdir / "connections-paced.toml"
    path.write_text(
        text.replace('name = "stripe-test"', 'name = "stripe-paced"').rstrip()
        + f"\nrate_limit_per_second = {rate}\n"
    )
    stack.cli("connections", "import", str(path))
    # Running workers see a new or changed connection within their cache's lifetime (10 s): the
    # test's two workers start after the import instead.
    stack.stop_worker()
    stack.start_worker()
    second = Proc("worker2", ["refundwatch", "worker"], stack.env, stack.workdir / "worker2.log").start()
    try:
        stack.wait_worker_ready()
        time.sleep(1.1)  # the web process looks a new connection name up within a second
        references = [stack.payment(1_000, connection="stripe-paced") for _ in range(14)]
        ids = [
            stack.refund(reference, 100, connection="stripe-paced").json()["id"] for reference in references
        ]
        sent = []
        for refund_id in ids:
            refund = stack.wait_status(refund_id, "succeeded", timeout=60)
            sent += [
                dt.datetime.fromisoformat(e["at"])
                for e in refund["events"]
                if e["detail"].startswith("attempt 1: sending")
            ]
        assert len(sent) == len(ids)
        sent.sort()
        # Slots are 1/rate apart on Redis's clock; the timeline's times are taken a few ms after each
        # (the claim), so a window may catch one more at its edge, never a burst.
        busiest = max(sum(1 for t in sent if start <= t < start + dt.timedelta(seconds=1)) for start in sent)
        assert busiest <= rate + 1, [t.isoformat() for t in sent]
        assert (sent[-1] - sent[0]).total_seconds() >= 0.9 * (len(sent) - 1) / rate, sent
        assert second.alive, second.tail()
        # A forced sync waits a few seconds for its slot at most; beyond, the caller is told when to
        # come back (it slept until its slot, however far: a burst of them held requests for minutes).
        ((connection_id,),) = db_rows(stack, "SELECT id FROM connections WHERE name = ?", "stripe-paced")
        client = redis.Redis.from_url(stack.redis_url)
        try:
            seconds, micros = client.time()
            ident = uuid.UUID(bytes=connection_id) if isinstance(connection_id, bytes) else connection_id
            key = f"refundwatch:pace:{ident}"  # its schedule, a minute ahead
            client.set(key, str(seconds * 1_000_000 + micros + 60_000_000), px=70_000)
            with stack.api() as api:
                answer = api.post(f"/api/v1/refunds/{ids[0]}/sync")
            assert answer.status_code == 429, answer.text
            assert answer.json()["code"] == "rate_limited"
            assert 50 <= int(answer.headers["retry-after"]) <= 61
            client.delete(key)
        finally:
            client.close()
    finally:
        second.stop()


def _db_state(stack: Stack, refund_id: str) -> tuple[str, int, list[str]]:
    """(status, attempts, timeline details) from the database: the web server is down in this test."""
    ident: object = uuid.UUID(refund_id).bytes if stack.backend == "sqlite" else uuid.UUID(refund_id)
    status, attempts = db_rows(stack, "SELECT status, attempts FROM refunds WHERE id = ?", ident)[0]
    details = db_rows(stack, "SELECT detail FROM refund_events WHERE refund_id = ? ORDER BY id", ident)
    return str(status), int(attempts), [str(d[0]) for d in details]


def test_submitting_refund_waits_and_its_resend_replays(stack: Stack, enabled_again: None) -> None:
    """Outcome unknown (the processor executed it, the answer timed out): disabling never fails it, and
    the re-send after re-enabling carries the same key, so the processor replays.

    The web process is killed so the simulator's webhook finds nobody (only the re-send can resolve
    the refund). Last in the module: the web server stays down.
    """
    stack.faults(latency_ms=1_500, timeout_rate=1.0, timeout_ms=3_000)
    reference = stack.payment(10_000)
    refund_id = _new_refund(stack, reference, 3_000)
    kill_group(stack.procs["web"])  # before the simulator executes (1.5 s latency)
    wait_until(
        lambda: any("attempt 1 failed: timeout" in d for d in _db_state(stack, refund_id)[2]),
        timeout=15,
        interval=0.1,
        what="the first attempt to time out",
    )
    stack.stop_worker()  # the operator disables the connection while the outcome is unknown
    stack.faults()
    _import(stack, enabled=False)
    _restart_worker(stack)

    wait_until(lambda: WAITING in _db_state(stack, refund_id)[2], timeout=30, what="waiting")
    time.sleep(3)
    status, attempts, details = _db_state(stack, refund_id)
    assert status == "submitting", details
    assert details.count(WAITING) == 1
    assert [r["idempotency_key"] for r in _ledger(stack, reference)] == [f"rw_{uuid.UUID(refund_id).hex}"]

    _import(stack, enabled=True)
    wait_until(
        lambda: _db_state(stack, refund_id)[0] not in ("queued", "submitting"),
        timeout=40,
        interval=0.2,
        what="the re-send",
    )
    status, after, details = _db_state(stack, refund_id)
    assert status == "succeeded", details
    assert after == attempts + 1
    assert len(_ledger(stack, reference)) == 1
