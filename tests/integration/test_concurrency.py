"""Over-refunding and double execution are impossible under real concurrent HTTP requests (both backends).

Each race runs twice: once as it comes (all requests released together by a barrier), and once with the
payment's row held by the test while the requests arrive (PostgreSQL: ``SELECT … FOR UPDATE``; SQLite:
the database write lock), so every request is inside the intake transaction at the same moment and the
race is reproduced on every run instead of by luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx2
import pytest

from processors import PROCESSORS
from stack import Stack

HOLD_SECONDS = 2.0


@pytest.fixture(autouse=True)
def _no_faults(stack: Stack) -> None:
    for processor in stack.connected:
        stack.faults(processor)


@contextlib.contextmanager
def payment_row_held(stack: Stack, reference: str) -> Iterator[None]:
    """Hold the payment's row lock (PostgreSQL) or the database write lock (SQLite) until the block exits."""
    if stack.backend == "sqlite":
        conn = sqlite3.connect(
            stack.database_url.split("///", 1)[1], timeout=30, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return

    acquired, release = threading.Event(), threading.Event()
    url = stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def hold() -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT id FROM payments WHERE payment_reference = $1 FOR UPDATE", reference
                )
                assert len(rows) == 1
                acquired.set()
                while not release.is_set():
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),), daemon=True)
    thread.start()
    try:
        assert acquired.wait(30), "could not lock the payment row"
        yield
    finally:
        release.set()
        thread.join(30)


def fire(
    stack: Stack, requests: list[tuple[str, dict[str, Any]]], *, hold: str | None = None
) -> list[httpx2.Response]:
    """Send every (idempotency key, body) at once: one thread and one warm connection each, then a barrier.

    With ``hold`` (a payment reference), the payment is locked while the requests arrive and released
    HOLD_SECONDS after they were sent."""
    barrier = threading.Barrier(len(requests) + 1)

    def one(key: str, body: dict[str, Any]) -> httpx2.Response:
        with stack.api() as client:
            assert client.get("/healthz").status_code == 200  # the connection is open before the race
            barrier.wait(timeout=30)
            return client.post("/api/v1/refunds", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        held = payment_row_held(stack, hold) if hold else contextlib.nullcontext()
        with held:
            futures = [pool.submit(one, key, body) for key, body in requests]
            barrier.wait(timeout=30)
            if hold:
                time.sleep(HOLD_SECONDS)
        return [f.result(timeout=120) for f in futures]


def refunds_of(stack: Stack, reference: str) -> list[dict[str, Any]]:
    with stack.api() as client:
        page = client.get("/api/v1/refunds", params={"payment_reference": reference, "limit": 200}).json()
    assert page["has_more"] is False
    data: list[dict[str, Any]] = page["data"]
    return data


def ledger_of(stack: Stack, reference: str) -> list[dict[str, Any]]:
    return [r for r in stack.ledger() if r["payment_reference"] == reference]


def describe(responses: list[httpx2.Response]) -> str:
    return "\n".join(f"{r.status_code} {r.text[:200]}" for r in responses)


@pytest.mark.parametrize("processor", PROCESSORS)
@pytest.mark.parametrize("held", [False, True], ids=["barrier", "row-held"])
def test_concurrent_refunds_never_exceed_the_payment(stack: Stack, held: bool, processor: str) -> None:
    reference = stack.payment(10_000, processor=processor)
    body = {"payment_reference": reference, "amount": 700, "currency": "EUR", "reason": "return"}
    responses = fire(
        stack, [(f"over-{uuid.uuid4().hex}", body) for _ in range(40)], hold=reference if held else None
    )

    statuses = Counter(r.status_code for r in responses)
    assert all(r.status_code < 500 for r in responses), describe(responses)
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(accepted) * 700 <= 10_000, statuses
    assert len(accepted) == 10_000 // 700 == 14, statuses
    for response in refused:
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "amount_exceeds_refundable", response.text
    accepted_ids = {r.json()["id"] for r in accepted}
    assert len(accepted_ids) == 14

    listed = refunds_of(stack, reference)
    assert {r["id"] for r in listed} == accepted_ids
    assert sum(r["amount"] for r in listed) == 14 * 700 <= 10_000

    for refund_id in accepted_ids:
        stack.wait_status(refund_id, "succeeded", timeout=60)
    rows = ledger_of(stack, reference)
    assert len(rows) == 14
    assert sum(r["amount"] for r in rows) == sum(r["amount"] for r in refunds_of(stack, reference)) == 9_800
    assert len({r["idempotency_key"] for r in rows}) == 14

    # What is left (10,000 - 9,800 = 200) is still refundable, and not a unit more.
    again = fire(stack, [(uuid.uuid4().hex, {**body, "amount": 200}) for _ in range(5)])
    assert sorted(r.status_code for r in again) == [201, 422, 422, 422, 422], describe(again)


@pytest.mark.parametrize("processor", PROCESSORS)
@pytest.mark.parametrize("amount", [1_500, 10_000], ids=["part", "whole"])
def test_concurrent_same_key_creates_one_refund(stack: Stack, amount: int, processor: str) -> None:
    """20 requests with one key and body, all inside intake at once: one refund, the other 19 replay it
    (200, Idempotent-Replayed), one row in the processor's ledger."""
    reference = stack.payment(10_000, processor=processor)
    key = f"held-{uuid.uuid4().hex}"
    body = {"payment_reference": reference, "amount": amount, "currency": "EUR", "reason": "return"}
    responses = fire(stack, [(key, body)] * 20, hold=reference)

    assert all(r.status_code in (200, 201) for r in responses), describe(responses)
    assert len({r.json()["id"] for r in responses}) == 1, describe(responses)
    assert [r.status_code for r in responses].count(201) == 1, describe(responses)
    for replay in (r for r in responses if r.status_code == 200):
        assert replay.headers.get("Idempotent-Replayed") == "true"
    refund_id = responses[0].json()["id"]
    assert [r["id"] for r in refunds_of(stack, reference)] == [refund_id]
    stack.wait_status(refund_id, "succeeded", timeout=60)
    rows = ledger_of(stack, reference)
    assert len(rows) == 1
    assert rows[0]["amount"] == amount


def test_concurrent_payment_registration_is_idempotent(stack: Stack) -> None:
    """The same payment registered 10 times at once: one payment, all answers 200/201, never a 500."""
    reference = f"pi_{uuid.uuid4().hex[:20]}"
    payment = {
        "connection": "stripe-test",
        "payment_reference": reference,
        "amount": 5_000,
        "currency": "EUR",
        "captured_at": "2026-11-01T10:00:00Z",
    }
    barrier = threading.Barrier(10)

    def one() -> httpx2.Response:
        with stack.api() as client:
            client.get("/healthz")
            barrier.wait(timeout=30)
            return client.post("/api/v1/payments", json=payment)

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = [f.result(timeout=120) for f in [pool.submit(one) for _ in range(10)]]
    assert all(r.status_code in (200, 201) for r in responses), describe(responses)
    assert [r.status_code for r in responses].count(201) == 1, describe(responses)
    assert len({r.json()["id"] for r in responses}) == 1
