"""Status sync takes turns (issue 11, defect 6): every ``processing`` refund is synced, not only the oldest.

The scenario: a processor whose webhooks never reach refundwatch (a second simulator started without a
webhook URL), 2,000 refunds accepted as pending, and only the newest few settle at the processor. A
sync that finds "still pending" does not touch a refund, so a sync ordered by ``updated_at`` polled
the oldest batch every round and never learned that the newest had succeeded. With turns, each round
claims the least recently synced batch and stamps it, so every refund is synced within a bounded
number of rounds, and the settled ones succeed.

Creating 2,000 refunds through the API takes minutes on a loaded two-core machine, so 110 pending
refunds go through the API, the worker and the simulator, and the database then holds 17 copies of
each (new ids, same processor refund, so each copy's sync reads a real "pending" answer). The 20 late
refunds go through the API after them, so they are the newest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import sqlite3
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from _services import free_port
from stack import Proc, Stack, db_rows, wait_http, wait_until

pytestmark = pytest.mark.slow

CONNECTION = "stripe-quiet"
QUIET_KEY = "sk_test_refundwatch_quiet"
TOTAL = 2_000
LATE = 20  # the newest refunds, which settle at the processor while the others stay pending
THROUGH_API = 110  # pending refunds created for real; the database holds COPIES more of each
COPIES = 17
BATCH = 200
PER_PAYMENT = 10
AMOUNT = 100
assert THROUGH_API * (COPIES + 1) + LATE == TOTAL


@pytest.fixture(scope="module")
def quiet(stack: Stack) -> str:
    """A second simulator that sends no webhooks, a refundwatch connection to it, and a worker that
    syncs in small batches (every 2 s, the stack's interval), so 2,000 refunds need many rounds."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim_file = stack.workdir / "quiet-simulator.toml"
    sim_file.write_text(
        f'[[connection]]\nname = "{CONNECTION}"\nprocessor = "stripe"\napi_key = "{QUIET_KEY}"\n'
    )
    sim = Proc(
        "quiet-simulator",
        ["refundwatch.simulator", "--port", str(port), "--connections", str(sim_file)],
        stack.env,
        stack.workdir / "quiet-simulator.log",
    )
    stack.procs["quiet-simulator"] = sim.start()
    wait_http(f"{url}/_control/faults", sim)
    conn_file = stack.workdir / "quiet.toml"
    conn_file.write_text(
        f'[[connection]]\nname = "{CONNECTION}"\nprocessor = "stripe"\nbase_url = "{url}/stripe"\n'
        f'api_key = "{QUIET_KEY}"\nwebhook_secret = "whsec_quiet"\nhealth_check_interval_seconds = 60\n'
    )
    stack.cli("connections", "import", str(conn_file))
    stack.stop_worker()
    stack.start_worker(REFUNDWATCH_SYNC_BATCH_SIZE=str(BATCH))
    stack.wait_worker_ready()
    return url


def _control(url: str, path: str, body: object) -> None:
    response = httpx2.post(f"{url}/_control/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text


def _payments(stack: Stack, sim_url: str, count: int) -> list[str]:
    references = []
    with stack.api() as client:
        for _ in range(count):
            reference = f"pi_{uuid.uuid4().hex[:20]}"
            amount = PER_PAYMENT * AMOUNT
            _control(
                sim_url,
                "payments",
                {"processor": "stripe", "payment_reference": reference, "amount": amount, "currency": "EUR"},
            )
            response = client.post(
                "/api/v1/payments",
                json={
                    "connection": CONNECTION,
                    "payment_reference": reference,
                    "amount": amount,
                    "currency": "EUR",
                    "captured_at": "2026-11-01T10:00:00Z",
                },
            )
            assert response.status_code == 201, response.text
            references.append(reference)
    return references


def _refunds(stack: Stack, references: list[str], per_payment: int) -> list[str]:
    """``per_payment`` refunds on each payment, sent by a few concurrent clients."""

    def post(reference: str) -> str:
        response = stack.refund(reference, AMOUNT)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    work = [r for r in references for _ in range(per_payment)]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, work))


def _count(stack: Stack, sql: str) -> int:
    return int(db_rows(stack, sql)[0][0])


def _processing(stack: Stack) -> int:
    return _count(stack, "SELECT count(*) FROM refunds WHERE status = 'processing'")


_COLUMNS = (
    "payment_id, connection_id, payment_reference, amount, currency, reason, order_id, invoice_id, status, "
    "gateway_idempotency_key, gateway_refund_id, gateway_status, attempts, error_code, error_message, "
    "processor_code, client_scope, request_fingerprint, created_by, submitted_at, accepted_at, "
    "finalized_at, next_attempt_at, created_at, updated_at, metadata_encrypted"
)


def _copy_processing_refunds(stack: Stack, copies: int) -> None:
    """``copies`` more rows for every processing refund: new id and client key, same processor refund."""
    if stack.backend == "postgresql":
        db_rows(
            stack,
            f"INSERT INTO refunds (id, idempotency_key, {_COLUMNS}) "
            f"SELECT gen_random_uuid(), idempotency_key || '-copy-' || n, {_COLUMNS} "
            f"FROM refunds, generate_series(1, {copies}) AS n WHERE status = 'processing'",
        )
        return
    path = stack.database_url.split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:  # commits on success
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {copies}) "
            f"INSERT INTO refunds (id, idempotency_key, {_COLUMNS}) "
            f"SELECT randomblob(16), idempotency_key || '-copy-' || i, {_COLUMNS} "
            f"FROM refunds, n WHERE status = 'processing'"
        )


def test_every_processing_refund_is_synced(stack: Stack, quiet: str) -> None:
    # 1,980 refunds the processor keeps pending for an hour, then 20 it settles after a second.
    _control(quiet, "faults", {"processor": "stripe", "pending_rate": 1.0, "settle_ms": 3_600_000})
    _refunds(stack, _payments(stack, quiet, THROUGH_API // PER_PAYMENT), PER_PAYMENT)
    wait_until(lambda: _processing(stack) == THROUGH_API, timeout=120, interval=0.5, what="refunds accepted")
    _copy_processing_refunds(stack, COPIES)
    _control(quiet, "faults", {"processor": "stripe", "settle_ms": 1_000})
    _refunds(stack, _payments(stack, quiet, LATE // PER_PAYMENT), PER_PAYMENT)
    assert _count(stack, "SELECT count(*) FROM refunds") == TOTAL

    # Only a sync can tell refundwatch that the late ones succeeded (no webhooks from this processor).
    wait_until(
        lambda: _count(stack, "SELECT count(*) FROM refunds WHERE status = 'succeeded'") == LATE,
        timeout=150,
        interval=1,
        what="the newest refunds to be synced to succeeded",
    )
    # And every one of the 2,000 has had its turn (10 rounds of 200 every 2 s, bounded by the wait).
    wait_until(
        lambda: _count(stack, "SELECT count(*) FROM refunds WHERE last_synced_at IS NULL") == 0,
        timeout=90,
        interval=1,
        what="every refund to be synced",
    )
    assert _processing(stack) == TOTAL - LATE  # nothing learned about the pending ones: untouched


def _claims_in_parallel(database_url: str, claimers: int, batch: int) -> list[list[uuid.UUID]]:
    """``claimers`` runtimes (each its own engines and connections, as separate workers have) claim
    until nothing is due; returns every batch each one took."""
    from refundwatch.config import Settings
    from refundwatch.refunds.syncing import claim_due_syncs
    from refundwatch.runtime import Runtime

    async def one(rt: Runtime) -> list[list[uuid.UUID]]:
        batches = []
        while taken := await claim_due_syncs(rt, interval_seconds=3_600, batch=batch):
            batches.append(taken)
        return batches

    async def run() -> list[list[uuid.UUID]]:
        runtimes = [Runtime.build(Settings(mode="test", database_url=database_url)) for _ in range(claimers)]
        try:
            results = await asyncio.gather(*(one(rt) for rt in runtimes))
        finally:
            for rt in runtimes:
                await rt.db.dispose()
        return list(itertools.chain.from_iterable(results))

    return asyncio.run(run())


def _set_all_synced_long_ago(stack: Stack) -> None:
    """Every processing refund last synced two hours ago, so all are due for an hour-long interval."""
    if stack.backend == "postgresql":
        db_rows(
            stack,
            "UPDATE refunds SET last_synced_at = now() - interval '2 hours' WHERE status = 'processing'",
        )
        return
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    path = stack.database_url.split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn, conn:  # commits on success
        conn.execute("UPDATE refunds SET last_synced_at = ? WHERE status = 'processing'", (long_ago,))


def test_parallel_claims_take_disjoint_batches(stack: Stack, quiet: str) -> None:
    """A fleet's workers run the same round at the same moment: each refund goes to exactly one."""
    stack.stop_worker()  # only the claimers below take turns now
    try:
        _set_all_synced_long_ago(stack)
        due = _processing(stack)
        assert due >= 1_000
        batches = _claims_in_parallel(stack.database_url, claimers=4, batch=50)
        taken = Counter(itertools.chain.from_iterable(batches))
        assert all(len(b) <= 50 for b in batches)
        assert max(taken.values()) == 1, "a refund was claimed by two workers"
        assert len(taken) == due, "a due refund was left out"
    finally:
        stack.start_worker(REFUNDWATCH_SYNC_BATCH_SIZE=str(BATCH))
        stack.wait_worker_ready()
