"""Crashes and lost queues: no refund is lost and none is executed twice.

The worker is SIGKILLed with refunds in flight, and Redis loses every job message; the database is
the source of truth, and the processor's idempotency key (stored with the refund) turns every re-sent
call into a replay. The simulator's ledger is the witness: exactly one row per refund.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from _services import flush_redis_db
from processors import PROCESSORS
from stack import Stack, wait_until

pytestmark = pytest.mark.slow

QUEUE = "refundwatch:queue"  # refundwatch.runtime.QUEUE_NAME
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


def create_refunds(stack: Stack, processor: str, count: int, amount: int) -> dict[str, str]:
    """``count`` refunds, each on its own payment; {refund id: payment reference}."""
    created: dict[str, str] = {}
    for i in range(count):
        reference = stack.payment(10_000, processor=processor)
        response = stack.refund(reference, amount + i)
        assert response.status_code == 201, response.text
        created[response.json()["id"]] = reference
    return created


def statuses(stack: Stack, ids: set[str]) -> dict[str, str]:
    """Their statuses, read through the list API."""
    found: dict[str, str] = {}
    with stack.api() as client:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/refunds", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            found.update({r["id"]: r["status"] for r in body["data"] if r["id"] in ids})
            cursor = body["next_cursor"]
            if not cursor or len(found) == len(ids):
                return found


def all_final(stack: Stack, ids: set[str]) -> dict[str, str] | None:
    current = statuses(stack, ids)
    return current if len(current) == len(ids) and all(s in FINAL for s in current.values()) else None


def assert_executed_exactly_once(stack: Stack, refunds: dict[str, str]) -> None:
    for refund_id in refunds:
        refund = stack.get(refund_id)
        assert refund["status"] == "succeeded", refund
        assert "failed" not in {e["status"] for e in refund["events"]}
    references = set(refunds.values())
    rows = [r for r in stack.ledger() if r["payment_reference"] in references]
    keys = sorted(r["idempotency_key"] for r in rows)
    assert keys == sorted(f"rw_{uuid.UUID(i).hex}" for i in refunds), rows  # one each: none lost, none twice
    by_reference = {r["payment_reference"]: r for r in rows}
    for refund_id, reference in refunds.items():
        refund = stack.get(refund_id)
        assert by_reference[reference]["gateway_refund_id"] == refund["gateway_refund_id"]
        assert by_reference[reference]["amount"] == refund["amount"]


def ensure_worker(stack: Stack) -> None:
    worker = stack.procs.get("worker")
    if worker is None or not worker.alive:
        stack.start_worker()


@pytest.mark.parametrize("processor", PROCESSORS)
def test_killed_worker_loses_nothing_and_pays_nothing_twice(stack: Stack, processor: str) -> None:
    stack.faults(processor, latency_ms=1_500)
    try:
        # Created while no worker runs, so they all go out together when it starts (on a loaded
        # machine, refunds created one by one could each finish before the next is in flight).
        stack.stop_worker()
        refunds = create_refunds(stack, processor, 10, 1_000)
        stack.start_worker()
        ids = set(refunds)
        wait_until(
            lambda: sum(s == "submitting" for s in statuses(stack, ids).values()) >= 4,
            timeout=30,
            interval=0.05,
            what="several refunds to be in flight",
        )
        stack.procs["worker"].kill()  # SIGKILL: calls in flight, outcomes unknown
        in_flight = statuses(stack, ids)
        assert "submitting" in in_flight.values(), in_flight
        # More work arrives while no worker runs: it waits as queued.
        later = create_refunds(stack, processor, 3, 2_000)
        assert set(statuses(stack, set(later)).values()) == {"queued"}
        refunds.update(later)
        stack.start_worker()
        wait_until(
            lambda: all_final(stack, set(refunds)), timeout=60, interval=0.5, what="every refund to finish"
        )
    finally:
        ensure_worker(stack)
        stack.faults(processor)
    assert_executed_exactly_once(stack, refunds)
    resent = [i for i in refunds if any("before any re-send" in e["detail"] for e in stack.get(i)["events"])]
    assert resent, "no refund was re-sent after the crash: the kill came too late to test anything"


@pytest.mark.parametrize("processor", PROCESSORS)
def test_lost_queue_is_rebuilt_from_the_database(stack: Stack, processor: str) -> None:
    """Redis forgets every job message while no worker runs, for refunds queued and refunds in flight.

    The start-up sweep re-enqueues both from the database; those whose call was in flight are re-sent
    with their stored key, so the processor replays instead of paying twice.
    """
    stack.faults(processor, latency_ms=1_500)
    try:
        # Created while no worker runs, so they go out together (see the test above).
        stack.stop_worker()
        in_flight = create_refunds(stack, processor, 4, 4_000)
        stack.start_worker()
        wait_until(
            lambda: sum(s == "submitting" for s in statuses(stack, set(in_flight)).values()) >= 2,
            timeout=30,
            interval=0.05,
            what="refunds to be in flight",
        )
        stack.procs["worker"].kill()
        queued = create_refunds(stack, processor, 4, 3_000)
        assert set(statuses(stack, set(queued)).values()) == {"queued"}
        queue = redis.Redis.from_url(stack.redis_url)
        try:
            assert queue.zcard(QUEUE) >= len(queued)  # their jobs are waiting in Redis...
            flush_redis_db(stack.redis_url)  # ...and now they are gone, in-progress marks included
            assert queue.zcard(QUEUE) == 0
        finally:
            queue.close()
        stack.faults(processor)
        stack.start_worker()
        refunds = {**in_flight, **queued}
        wait_until(
            lambda: all_final(stack, set(refunds)), timeout=40, interval=0.3, what="every refund to finish"
        )
    finally:
        ensure_worker(stack)
        stack.faults(processor)
    assert_executed_exactly_once(stack, refunds)
