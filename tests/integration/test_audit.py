"""The tamper-evident audit log on a running refundwatch: recorded, sealed, guarded, verified.

Real activity (API, worker, webhooks) writes entries; ``refundwatch audit seal`` / ``verify`` check the
chain. Plain UPDATE/DELETE are refused by the database's own triggers; an attacker with superuser
rights who bypasses them (PostgreSQL ``session_replication_role = replica`` or ``DISABLE TRIGGER``,
SQLite ``DROP TRIGGER``) is caught by ``verify``, which names the first bad entry in one line.
Each tampering is undone afterwards (guards bypassed the same way), and the last test checks that
the restored chain verifies again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from refundwatch.config import Settings
from stack import Stack, wait_until

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")
INTACT = re.compile(r"^audit chain intact: (\d+) entries verified, (\d+) awaiting their seal(?:; [^;]+)*$")
COLUMNS = (
    "id",
    "at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "ip",
    "user_agent",
    "entry_hash",
    "seq",
    "prev_hash",
    "hash",
)


# ------------------------------------------------------------------------------------- database access


def _sqlite_path(stack: Stack) -> str:
    return stack.database_url.split(":///", 1)[1]


def _pg_dsn(stack: Stack) -> str:
    return stack.database_url.replace("postgresql+asyncpg://", "postgresql://")


def _pg_sql(sql: str) -> str:
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _run(factory: Callable[[], Awaitable[Any]]) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # never on the test thread's event loop
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=60)


def db_rows(stack: Stack, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of one query (``?`` placeholders on both backends), as dicts."""
    if stack.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(_sqlite_path(stack), timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    async def work() -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(stack), timeout=10)
        try:
            return [dict(row) for row in await conn.fetch(_pg_sql(sql), *params)]
        finally:
            await conn.close()

    result: list[dict[str, Any]] = _run(work)
    return result


def plain_statement(stack: Stack, sql: str) -> None:
    """Run one statement as an ordinary client would (guards in place)."""
    if stack.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(_sqlite_path(stack), timeout=30)) as conn:
            conn.execute(sql)
            conn.commit()
        return

    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(stack), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(work)


def bypassing_guards(stack: Stack, sql: str, *params: Any, how: str = "replica") -> None:
    """Run one statement the way an attacker with database superuser rights would: guards bypassed.

    PostgreSQL: ``SET LOCAL session_replication_role = replica`` (user triggers do not fire) or
    ``ALTER TABLE … DISABLE TRIGGER USER``, inside one transaction. SQLite: drop the guard triggers,
    run the statement, and put the triggers back, inside one transaction.
    """
    if stack.backend == "sqlite":
        with contextlib.closing(
            sqlite3.connect(_sqlite_path(stack), timeout=30, isolation_level=None)
        ) as conn:
            conn.execute("BEGIN IMMEDIATE")
            guards = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
            ).fetchall()
            assert {name for name, _ in guards} == {"audit_log_seal_only", "audit_log_no_delete"}
            for name, _ in guards:
                conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(sql, params)
            for _, ddl in guards:
                conn.execute(ddl)
            conn.execute("COMMIT")
        return

    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(stack), timeout=10)
        try:
            async with conn.transaction():
                if how == "replica":
                    await conn.execute("SET LOCAL session_replication_role = replica")
                    await conn.execute(_pg_sql(sql), *params)
                else:
                    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
                    await conn.execute(_pg_sql(sql), *params)
                    await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
        finally:
            await conn.close()

    _run(work)


def restore_row(stack: Stack, row: dict[str, Any]) -> None:
    columns = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    bypassing_guards(stack, f"INSERT INTO audit_log ({columns}) VALUES ({marks})", *(row[c] for c in COLUMNS))


def audit_rows(stack: Stack, where: str = "1 = 1", *params: Any) -> list[dict[str, Any]]:
    return db_rows(stack, f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE {where} ORDER BY id", *params)


# ------------------------------------------------------------------------------------------- helpers


def verify(stack: Stack) -> tuple[int, str, str]:
    result = stack.cli("audit", "verify", check=False)
    return result.returncode, result.stdout.strip(), result.stderr.strip()


def assert_broken(stack: Stack, *needles: str) -> str:
    """verify fails with one line that names the first bad entry; the line."""
    code, out, err = verify(stack)
    assert code != 0, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def content_hash(row: dict[str, Any]) -> str:
    """The entry hash as refundwatch computes it (audit/services.py), for a forger who knows it."""
    at = row["at"]
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    fields = [at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    fields += [
        row[c] for c in ("actor_type", "actor_id", "action", "target_type", "target_id", "details", "ip")
    ]
    fields.append(row["user_agent"])
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_hash(seq: int, prev_hash: str, entry_hash: str) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{entry_hash}".encode()).hexdigest()


def sealed(stack: Stack) -> list[dict[str, Any]]:
    return audit_rows(stack, "seq IS NOT NULL")


def sealed_transitions(stack: Stack, refund_id: str, count: int) -> list[dict[str, Any]] | None:
    """The refund's transition entries once there are ``count`` of them and all are sealed."""
    rows = audit_rows(stack, "target_id = ? AND action LIKE ?", refund_id, "%:refund:transition")
    return rows if len(rows) == count and all(r["seq"] is not None for r in rows) else None


def middle_sealed(stack: Stack) -> dict[str, Any]:
    rows = sorted(sealed(stack), key=lambda r: r["seq"])
    assert len(rows) >= 5, rows
    return rows[len(rows) // 2]


def _payments(stack: Stack, count: int) -> None:
    with stack.api() as client:
        for _ in range(count):
            response = client.post(
                "/api/v1/payments",
                json={
                    "connection": "stripe-test",
                    "payment_reference": f"pi_{uuid.uuid4().hex[:20]}",
                    "amount": 100,
                    "currency": "EUR",
                    "captured_at": "2026-11-01T10:00:00Z",
                },
            )
            assert response.status_code == 201, response.text


# --------------------------------------------------------------------------------- recording and sealing


def test_activity_is_audited_sealed_and_verified(stack: Stack) -> None:
    stack.faults()
    good_reference = stack.payment(10_000)
    good = stack.refund(good_reference, 1_000)
    assert good.status_code == 201, good.text
    refused_reference = stack.payment(6_000, simulator_amount=1_000)
    refused = stack.refund(refused_reference, 5_000)
    assert refused.status_code == 201, refused.text
    good_id, refused_id = good.json()["id"], refused.json()["id"]
    assert stack.wait_status(good_id, *FINAL)["status"] == "succeeded"
    assert stack.wait_status(refused_id, *FINAL)["status"] == "failed"
    with stack.api() as client:
        assert client.post(f"/api/v1/refunds/{refused_id}/retry").status_code == 200
    wait_until(
        lambda: stack.get(refused_id)["status"] == "failed" and stack.get(refused_id)["attempts"] == 1,
        timeout=20,
        what="the retried refund to fail again",
    )
    rejected = httpx2.post(
        f"{stack.web_url}/webhooks/stripe-test",
        content=b'{"id": "evt_forged", "object": "event", "type": "refund.failed"}',
        headers={"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        timeout=30,
    )
    assert rejected.status_code in (400, 401)

    for refund_id in (good_id, refused_id):
        refund = stack.get(refund_id)
        moves = [e for e in refund["events"] if e["from_status"]]
        expected = len(moves)
        # The worker seals every second; wait until this refund's entries are all in the chain.
        rows = wait_until(
            lambda rid=refund_id, n=expected: sealed_transitions(stack, rid, n),
            timeout=20,
            what=f"the audit rows of refund {refund_id}",
        )
        recorded = [(json.loads(r["details"])["from"], json.loads(r["details"])["to"]) for r in rows]
        assert recorded == [(e["from_status"], e["status"]) for e in moves]
        assert [r["action"] for r in rows] == [f"{e['source']}:refund:transition" for e in moves]
        created = audit_rows(stack, "target_id = ? AND action = ?", refund_id, "api:refund:create")
        assert len(created) == 1
        assert created[0]["actor_type"] == "api_key"
        assert json.loads(created[0]["details"])["amount"] == refund["amount"]

    retried = audit_rows(stack, "target_id = ? AND action = ?", refused_id, "api:refund:transition")
    assert [json.loads(r["details"])["trigger"] for r in retried] == ["retry"]
    assert {r["action"] for r in audit_rows(stack, "target_id = ?", good_id)} >= {
        "api:refund:create",
        "worker:refund:transition",
    }
    payments = [
        json.loads(r["details"])["reference"] for r in audit_rows(stack, "action = ?", "api:payment:create")
    ]
    assert {good_reference, refused_reference} <= set(payments)
    # Rejected webhooks are audited once per connection and minute, after the minute closes
    # (webhooks.rejections; tests/integration/test_webhook_rejections.py waits for that flush).
    assert audit_rows(stack, "action = ?", "webhook:event:accepted")  # the simulator's signed webhooks

    seal = stack.cli("audit", "seal")
    assert re.fullmatch(r"sealed \d+ entries", seal.stdout.strip()), seal.stdout
    floor = len(sealed(stack))
    code, out, err = verify(stack)
    assert code == 0, err
    match = INTACT.fullmatch(out)
    assert match, out
    assert int(match.group(1)) >= floor > 0
    assert int(match.group(1)) + int(match.group(2)) <= len(audit_rows(stack))


# ----------------------------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET details = '{}'",
        "UPDATE audit_log SET seq = NULL, hash = NULL WHERE seq IS NOT NULL",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
        "TRUNCATE audit_log",
    ],
)
def test_plain_update_delete_and_truncate_are_refused(stack: Stack, statement: str) -> None:
    if statement.startswith("TRUNCATE") and stack.backend == "sqlite":
        pytest.skip("SQLite has no TRUNCATE")
    before = audit_rows(stack, "seq IS NOT NULL")
    assert before
    _expect_refused(stack, statement)
    after = {r["id"]: r for r in audit_rows(stack, "seq IS NOT NULL")}
    assert all(after.get(r["id"]) == r for r in before), "a sealed entry changed or vanished"


def _expect_refused(stack: Stack, statement: str) -> None:
    if stack.backend == "sqlite":
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            plain_statement(stack, statement)
        return
    import asyncpg

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        plain_statement(stack, statement)


# ---------------------------------------------------------------------------------------------- anchors


def _anchor_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_worker_anchors_the_head_when_it_moves(stack: Stack) -> None:
    path = stack.workdir / "periodic-anchors.jsonl"
    stack.stop_worker()
    stack.start_worker(REFUNDWATCH_AUDIT_ANCHOR=str(path), REFUNDWATCH_AUDIT_ANCHOR_INTERVAL_SECONDS="1")
    try:
        wait_until(lambda: _anchor_lines(path) or None, timeout=30, what="the worker's first anchor")
        for _ in range(2):  # each round of activity moves the head, and the worker anchors it
            before = _anchor_lines(path)[-1]["seq"]
            _payments(stack, 2)
            wait_until(
                lambda before=before: _anchor_lines(path)[-1]["seq"] > before or None,
                timeout=30,
                what="an anchor of the moved head",
            )
        lines = _anchor_lines(path)
        assert len(lines) >= 3
        assert all(a["seq"] < b["seq"] for a, b in itertools.pairwise(lines)), lines  # only moves
        anchored = audit_rows(stack, "seq = ?", lines[-1]["seq"])
        assert [r["hash"] for r in anchored] == [lines[-1]["hash"]]
        result = stack.cli("audit", "verify", "--anchors", str(path))
        assert "matches the last anchor" in result.stdout, result.stdout
    finally:
        stack.stop_worker()
        stack.start_worker()
        stack.wait_worker_ready()


class FifoReader:
    """The README's log shipper: reads the anchor FIFO and keeps every line (a thread, non-blocking)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there from now on
        self.lines: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self.stopping.is_set():
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                chunk = b""
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.lines.append(json.loads(line))
            if not chunk:
                time.sleep(0.05)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        os.close(self.fd)


def _refusals(stack: Stack) -> int:
    return (stack.workdir / "worker.log").read_text(errors="replace").count("refusing to anchor")


def test_the_worker_never_anchors_a_shortened_chain_into_a_fifo(stack: Stack) -> None:
    """A FIFO cannot be read back: the worker keeps the last anchor it wrote, between its runs and across
    a restart (in Redis), so a deleted tail is refused there as well as in a file. And it writes only
    when the head moved: a FIFO does not get the same head every second."""
    fifo = stack.workdir / "anchors.fifo"
    reader = FifoReader(fifo)
    env = {"REFUNDWATCH_AUDIT_ANCHOR": str(fifo), "REFUNDWATCH_AUDIT_ANCHOR_INTERVAL_SECONDS": "1"}
    stack.stop_worker()
    stack.start_worker(**env)
    try:
        stack.wait_worker_ready()
        _payments(stack, 6)
        wait_until(lambda: not audit_rows(stack, "seq IS NULL"), timeout=20, what="everything sealed")
        head = max(r["seq"] for r in sealed(stack))
        wait_until(
            lambda: reader.lines and reader.lines[-1]["seq"] == head, timeout=20, what="the head anchored"
        )
        time.sleep(3)  # the head does not move: nothing more is written
        seqs = [line["seq"] for line in reader.lines]
        assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
        for restarted in (False, True):
            if restarted:  # a new worker process knows the last anchor too
                stack.stop_worker()
                stack.start_worker(**env)
                stack.wait_worker_ready()
            tail = [r for r in sealed(stack) if r["seq"] > head - 5]
            written, refusals = len(reader.lines), _refusals(stack)
            dropping_guards(stack, [("DELETE FROM audit_log WHERE seq > ?", (head - 5,))])
            try:
                wait_until(lambda r=refusals: _refusals(stack) > r, timeout=20, what="the worker to refuse")
                time.sleep(2)
                assert reader.lines[written:] == [], reader.lines[written:]  # no anchor at seq head - 5
            finally:
                # Entries written meanwhile (the worker and the web audit too) may have taken the
                # deleted tail's ids (SQLite) or seqs: they go, and the tail comes back as it was.
                first_id = min(r["id"] for r in tail)
                dropping_guards(
                    stack, [("DELETE FROM audit_log WHERE seq > ? OR id >= ?", (head - 5, first_id))]
                )
                for row in tail:
                    restore_row(stack, row)
    finally:
        stack.stop_worker()
        stack.start_worker()
        stack.wait_worker_ready()
        reader.close()


def test_the_worker_anchors_at_most_once_per_interval(stack: Stack) -> None:
    path = stack.workdir / "rare-anchors.jsonl"
    stack.stop_worker()
    with contextlib.closing(redis.Redis.from_url(stack.redis_url)) as client:
        client.delete("refundwatch:audit:anchor:tried")  # as on a new installation: due at once
    stack.start_worker(REFUNDWATCH_AUDIT_ANCHOR=str(path), REFUNDWATCH_AUDIT_ANCHOR_INTERVAL_SECONDS="600")
    try:
        wait_until(lambda: _anchor_lines(path) or None, timeout=30, what="the worker's first anchor")
        for _ in range(3):
            _payments(stack, 1)
            time.sleep(1.5)
        wait_until(lambda: not audit_rows(stack, "seq IS NULL"), timeout=20, what="everything sealed")
        time.sleep(2)
        assert len(_anchor_lines(path)) == 1, _anchor_lines(path)
    finally:
        stack.stop_worker()
        stack.start_worker()
        stack.wait_worker_ready()


# -------------------------------------------------------------------------------------------- tampering


@pytest.fixture(scope="module")
def quiet(stack: Stack) -> Iterator[Stack]:
    """No sealer running while entries are tampered with and restored; the worker comes back after.

    Some sealed history first (five payments), so the chain has a middle whatever ran before.
    """
    with stack.api() as client:
        for _ in range(5):
            response = client.post(
                "/api/v1/payments",
                json={
                    "connection": "stripe-test",
                    "payment_reference": f"pi_{uuid.uuid4().hex[:20]}",
                    "amount": 100,
                    "currency": "EUR",
                    "captured_at": "2026-11-01T10:00:00Z",
                },
            )
            assert response.status_code == 201, response.text
    wait_until(lambda: not audit_rows(stack, "seq IS NULL"), timeout=20, what="the worker to seal everything")
    stack.stop_worker()
    try:
        yield stack
    finally:
        stack.start_worker()


def test_edited_sealed_entry_is_named(quiet: Stack) -> None:
    stack = quiet
    row = middle_sealed(stack)
    bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", '{"amount":1}', row["id"])
    try:
        line = assert_broken(stack, f"#{row['id']} ", f"(seq {row['seq']})", "content was changed")
    finally:
        bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", row["details"], row["id"])
    assert "audit chain broken" in line


def test_edited_entry_with_a_recomputed_entry_hash_is_named(quiet: Stack) -> None:
    stack = quiet
    row = middle_sealed(stack)
    forged = {**row, "actor_id": "nobody"}
    assert content_hash(row) == row["entry_hash"]  # the forger knows the algorithm
    bypassing_guards(
        stack,
        "UPDATE audit_log SET actor_id = ?, entry_hash = ? WHERE id = ?",
        "nobody",
        content_hash(forged),
        row["id"],
        how="disable",
    )
    try:
        assert_broken(stack, f"#{row['id']} ", "hash does not match")
    finally:
        bypassing_guards(
            stack,
            "UPDATE audit_log SET actor_id = ?, entry_hash = ? WHERE id = ?",
            row["actor_id"],
            row["entry_hash"],
            row["id"],
            how="disable",
        )


def test_deleted_sealed_entry_leaves_a_named_gap(quiet: Stack) -> None:
    stack = quiet
    row = middle_sealed(stack)
    successor = next(r for r in sealed(stack) if r["seq"] == row["seq"] + 1)
    bypassing_guards(stack, "DELETE FROM audit_log WHERE id = ?", row["id"], how="disable")
    try:
        assert_broken(stack, f"#{successor['id']} ", f"expected seq {row['seq']}", "missing")
    finally:
        restore_row(stack, row)


def test_forged_entry_appended_to_the_chain_is_named(quiet: Stack) -> None:
    stack = quiet
    head = max(sealed(stack), key=lambda r: r["seq"])
    forged_id = max(r["id"] for r in audit_rows(stack)) + 1000
    forged = {
        **head,
        "id": forged_id,
        "action": "api:refund:create",
        "details": '{"amount":999999}',
        "seq": head["seq"] + 1,
        "prev_hash": head["hash"],
        "entry_hash": hashlib.sha256(b"forged").hexdigest(),
        "hash": hashlib.sha256(b"forged chain").hexdigest(),
    }
    restore_row(stack, forged)  # a plain INSERT: the guards only watch UPDATE and DELETE
    try:
        assert_broken(stack, f"#{forged_id} ", f"(seq {head['seq'] + 1})")
    finally:
        bypassing_guards(stack, "DELETE FROM audit_log WHERE id = ?", forged_id)


def test_forged_entry_outside_the_chain_is_named(quiet: Stack) -> None:
    stack = quiet
    first = min(sealed(stack), key=lambda r: r["seq"])
    forged_id = max(r["id"] for r in audit_rows(stack)) + 2000
    forged = {**first, "id": forged_id, "seq": 0, "details": '{"forged":true}'}
    restore_row(stack, forged)
    try:
        assert_broken(stack, f"#{forged_id}")
    finally:
        bypassing_guards(stack, "DELETE FROM audit_log WHERE id = ?", forged_id)


def test_edited_unsealed_entry_is_named(quiet: Stack) -> None:
    stack = quiet
    reference = f"pi_{uuid.uuid4().hex[:20]}"
    with stack.api() as client:
        response = client.post(
            "/api/v1/payments",
            json={
                "connection": "stripe-test",
                "payment_reference": reference,
                "amount": 4_200,
                "currency": "EUR",
                "captured_at": "2026-11-01T10:00:00Z",
            },
        )
    assert response.status_code == 201, response.text
    row = next(r for r in audit_rows(stack, "action = ?", "api:payment:create") if reference in r["details"])
    assert row["seq"] is None  # no sealer runs
    tampered = row["details"].replace("4200", "42")
    # Not sealed yet is not "open for editing": the guard refuses it as well.
    _expect_refused(stack, f"UPDATE audit_log SET details = '{tampered}' WHERE id = {row['id']}")
    bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", tampered, row["id"])
    try:
        assert_broken(stack, f"#{row['id']} ", "not yet sealed", "changed")
    finally:
        bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", row["details"], row["id"])


def dropping_guards(stack: Stack, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """What a table owner can do: drop the guard triggers, run statements, put the triggers back."""
    if stack.backend == "sqlite":
        for sql, params in statements:
            bypassing_guards(stack, sql, *params)
        return

    async def work() -> None:
        import asyncpg

        conn = await asyncpg.connect(_pg_dsn(stack), timeout=10)
        try:
            async with conn.transaction():
                triggers = await conn.fetch(
                    "SELECT tgname, pg_get_triggerdef(oid) AS ddl FROM pg_trigger"
                    " WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"
                )
                assert {t["tgname"] for t in triggers} == {"audit_log_append_only", "audit_log_no_truncate"}
                for trigger in triggers:
                    await conn.execute(f'DROP TRIGGER "{trigger["tgname"]}" ON audit_log')
                for sql, params in statements:
                    await conn.execute(_pg_sql(sql), *params)
                for trigger in triggers:
                    await conn.execute(trigger["ddl"])
        finally:
            await conn.close()

    _run(work)


def anchors(stack: Stack) -> list[dict[str, Any]]:
    """The anchors in the stack's default destination (var/audit-anchors.jsonl under its directory)."""
    return _anchor_lines(stack.workdir / "var" / "audit-anchors.jsonl")


def test_deleting_the_newest_entries_after_an_anchor_is_found(quiet: Stack) -> None:
    """Issue 11: the table owner drops the trigger and deletes the last ten entries; the anchor,
    kept outside the database, still knows how long the chain was."""
    stack = quiet
    _payments(stack, 12)
    stack.cli("audit", "seal")
    stack.cli("audit", "anchor")
    head = max(sealed(stack), key=lambda r: r["seq"])
    tail = [r for r in sealed(stack) if r["seq"] > head["seq"] - 10]
    assert len(tail) == 10
    dropping_guards(stack, [("DELETE FROM audit_log WHERE seq > ?", (head["seq"] - 10,))])
    try:
        line = assert_broken(stack, "missing tail", f"seq {head['seq'] - 10}", f"seq {head['seq']}")
        assert "anchor" in line
        # Nor can the next anchor bless the shortened chain.
        written = anchors(stack)
        refused = stack.cli("audit", "anchor", check=False)
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "refusing to anchor" in refused.stderr
        assert f"seq {head['seq']}" in refused.stderr
        assert anchors(stack) == written
    finally:
        for row in tail:
            restore_row(stack, row)


def test_a_rewritten_tail_is_found_at_the_anchor(quiet: Stack) -> None:
    """The newest entries deleted and new ones sealed after them: as long as before, but not the same."""
    stack = quiet
    stack.cli("audit", "seal")
    stack.cli("audit", "anchor")
    head = max(sealed(stack), key=lambda r: r["seq"])
    tail = [r for r in sealed(stack) if r["seq"] > head["seq"] - 3]
    dropping_guards(stack, [("DELETE FROM audit_log WHERE seq > ?", (head["seq"] - 3,))])
    try:
        _payments(stack, 4)
        stack.cli("audit", "seal")
        replaced = next(r for r in sealed(stack) if r["seq"] == head["seq"])
        assert replaced["hash"] != head["hash"]  # (SQLite may even reuse the deleted row's id)
        assert_broken(stack, f"#{replaced['id']} ", f"(seq {head['seq']})", "differs from the last anchor")
    finally:
        dropping_guards(stack, [("DELETE FROM audit_log WHERE seq > ? OR seq IS NULL", (head["seq"] - 3,))])
        for row in tail:
            restore_row(stack, row)


@pytest.mark.parametrize("formula", ["unkeyed", "guessed key"])
def test_an_entry_rewritten_without_the_key_is_named(quiet: Stack, formula: str) -> None:
    """A table owner edits an entry and recomputes every hash after it, as refundwatch did before the
    key (or with a key of their own): without REFUNDWATCH_AUDIT_KEY the chain does not hold."""
    stack = quiet
    rows = sorted(sealed(stack), key=lambda r: r["seq"])[-3:]
    target = rows[0]

    def rehash(seq: int, prev: str, entry_hash: str) -> str:
        if formula == "unkeyed":
            return chain_hash(seq, prev, entry_hash)
        return hmac.new(b"refundwatch", f"{seq}|{prev}|{entry_hash}".encode(), hashlib.sha256).hexdigest()

    forged, prev = [], target["prev_hash"]
    for row in rows:
        changed = {**row, "actor_id": "nobody"} if row is target else dict(row)
        changed["entry_hash"] = content_hash(changed)
        changed["prev_hash"], changed["hash"] = prev, rehash(row["seq"], prev, changed["entry_hash"])
        prev = changed["hash"]
        forged.append(changed)
    rewrite = "UPDATE audit_log SET actor_id = ?, entry_hash = ?, prev_hash = ?, hash = ? WHERE id = ?"
    dropping_guards(
        stack,
        [(rewrite, (r["actor_id"], r["entry_hash"], r["prev_hash"], r["hash"], r["id"])) for r in forged],
    )
    try:
        assert_broken(stack, f"#{target['id']} ", f"(seq {target['seq']})", "hash does not match")
    finally:
        dropping_guards(
            stack,
            [(rewrite, (r["actor_id"], r["entry_hash"], r["prev_hash"], r["hash"], r["id"])) for r in rows],
        )


def test_unkeyed_entries_pass_only_as_the_chains_start_and_the_anchor_pins_them(
    quiet: Stack, tmp_path: Path
) -> None:
    """Entries sealed before refundwatch keyed its chain carry the plain sha256 and still verify, at
    the chain's start; a whole chain rewritten that way (no key needed) is caught by the anchor."""
    stack = quiet
    stack.cli("audit", "anchor")
    rows = sorted(sealed(stack), key=lambda r: r["seq"])
    unkeyed, prev = [], "0" * 64  # the genesis prev_hash
    for row in rows:
        digest = chain_hash(row["seq"], prev, row["entry_hash"])
        unkeyed.append((prev, digest, row["id"]))
        prev = digest
    rewrite = "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?"
    dropping_guards(stack, [(rewrite, params) for params in unkeyed])
    try:
        first = next(a for a in anchors(stack) if a["seq"] > 0)  # every anchor is held against the chain
        assert_broken(stack, f"(seq {first['seq']})", "hash differs from the")
        (tmp_path / "empty.jsonl").touch()  # no anchors: the chain alone
        alone = stack.cli("audit", "verify", "--anchors", str(tmp_path / "empty.jsonl"))
        assert f"the first {len(rows)} were sealed before REFUNDWATCH_AUDIT_KEY (unkeyed)" in alone.stdout
    finally:
        dropping_guards(stack, [(rewrite, (r["prev_hash"], r["hash"], r["id"])) for r in rows])


def test_verify_needs_the_key_that_sealed_the_chain(quiet: Stack) -> None:
    stack = quiet
    first = min(sealed(stack), key=lambda r: r["seq"])
    wrong = stack.cli(
        "audit", "verify", check=False, extra_env={"REFUNDWATCH_AUDIT_KEY": "a-wrong-key-0123456789"}
    )
    assert wrong.returncode != 0
    assert wrong.stderr.count("\n") == 1, wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert f"#{first['id']} (seq 1)" in wrong.stderr
    assert "REFUNDWATCH_AUDIT_KEY" in wrong.stderr
    # Rotation: a new key first, the one that sealed so far after it; both verify.
    sealing_key = Settings(mode="test").audit_key_list[0]
    rotated = stack.cli(
        "audit",
        "verify",
        check=False,
        extra_env={"REFUNDWATCH_AUDIT_KEY": f"a-new-key-0123456789,{sealing_key}"},
    )
    assert rotated.returncode == 0, rotated.stderr
    assert INTACT.fullmatch(rotated.stdout.strip()), rotated.stdout


def test_anchoring_twice_appends_twice_and_verify_reads_the_last(quiet: Stack, tmp_path: Path) -> None:
    """Each `audit anchor` appends a line, even when the head did not move: a later line with the
    same head is itself a witness that nothing was added or lost in between."""
    stack = quiet
    stack.cli("audit", "seal")
    before = anchors(stack)
    outputs = [stack.cli("audit", "anchor").stdout.strip() for _ in range(2)]
    head = max(sealed(stack), key=lambda r: r["seq"])
    assert outputs[0] == outputs[1] == f"anchored the audit chain at seq {head['seq']} ({head['hash'][:16]}…)"
    added = anchors(stack)[len(before) :]
    assert [(a["seq"], a["hash"]) for a in added] == [(head["seq"], head["hash"])] * 2
    assert added[0]["at"] <= added[1]["at"]
    code, out, err = verify(stack)
    assert code == 0, err
    assert f"matches the last anchor (seq {head['seq']}, {added[1]['at']})" in out

    (tmp_path / "empty.jsonl").touch()
    empty = stack.cli("audit", "verify", "--anchors", str(tmp_path / "empty.jsonl"))
    assert empty.stdout.strip().endswith("; no anchor yet"), empty.stdout
    assert INTACT.fullmatch(empty.stdout.strip())

    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(json.dumps(added[0]) + "\n" + '{"seq": "many"}\n')
    for args, env in (
        (("audit", "verify", "--anchors", str(malformed)), {}),
        (("audit", "verify"), {"REFUNDWATCH_AUDIT_ANCHOR": str(malformed)}),
        (("audit", "anchor"), {"REFUNDWATCH_AUDIT_ANCHOR": str(malformed)}),
    ):
        result = stack.cli(*args, check=False, extra_env=env)
        assert result.returncode != 0, args
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert str(malformed) in result.stderr
        assert "no valid seq" in result.stderr
    assert malformed.read_text().count("\n") == 2  # nothing appended behind a bad anchor


def assert_one_line(stderr: str) -> None:
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr


def _anchor_file(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"seq": r["seq"], "hash": r["hash"], "at": f"line-{i}"}) + "\n"
            for i, r in enumerate(rows, 1)
        )
    )
    return path


def test_verify_checks_every_anchor_not_only_the_last(quiet: Stack, tmp_path: Path) -> None:
    """An anchor written over a deleted tail (the line going back) is found, and so is an older line
    whose hash the chain no longer holds, although the last line matches."""
    stack = quiet
    stack.cli("audit", "seal")
    rows = sorted(sealed(stack), key=lambda r: r["seq"])
    earlier, head = rows[-4], rows[-1]
    good = _anchor_file(tmp_path / "good.jsonl", earlier, head, head)
    result = stack.cli("audit", "verify", "--anchors", str(good))
    assert f"matches the last anchor (seq {head['seq']}, line-3)" in result.stdout

    backwards = _anchor_file(tmp_path / "backwards.jsonl", earlier, head, earlier)
    result = stack.cli("audit", "verify", "--anchors", str(backwards), check=False)
    assert result.returncode == 1, result.stdout
    assert_one_line(result.stderr)
    assert "line 3" in result.stderr
    assert f"seq {earlier['seq']}" in result.stderr
    assert f"seq {head['seq']}" in result.stderr
    assert "back" in result.stderr

    wrong = _anchor_file(tmp_path / "wrong.jsonl", {**earlier, "hash": rows[-3]["hash"]}, head)
    result = stack.cli("audit", "verify", "--anchors", str(wrong), check=False)
    assert result.returncode == 1, result.stdout
    assert_one_line(result.stderr)
    assert f"#{earlier['id']} (seq {earlier['seq']})" in result.stderr
    assert "line-1" in result.stderr
    assert "differs" in result.stderr


def test_verify_refuses_an_anchor_file_that_does_not_exist(quiet: Stack, tmp_path: Path) -> None:
    """A file named with --anchors must be there: a typo would otherwise pass as "no anchor yet"."""
    missing = tmp_path / "typo.jsonl"
    result = quiet.cli("audit", "verify", "--anchors", str(missing), check=False)
    assert result.returncode != 0, result.stdout
    assert_one_line(result.stderr)
    assert str(missing) in result.stderr
    assert "does not exist" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.touch()  # an empty copy: the chain alone
    result = quiet.cli("audit", "verify", "--anchors", str(empty))
    assert result.stdout.strip().endswith("; no anchor yet"), result.stdout


def test_an_unreadable_time_is_named_as_tampering(quiet: Stack) -> None:
    stack = quiet
    if stack.backend != "sqlite":
        pytest.skip("PostgreSQL's timestamptz column cannot hold an unreadable time")
    row = middle_sealed(stack)
    bypassing_guards(stack, "UPDATE audit_log SET at = 'garbage' WHERE id = ?", row["id"])
    try:
        assert_broken(stack, f"audit entry #{row['id']} ", f"(seq {row['seq']})", "time")
    finally:
        bypassing_guards(stack, "UPDATE audit_log SET at = ? WHERE id = ?", row["at"], row["id"])


def test_anchoring_to_a_path_that_cannot_be_created_says_why(quiet: Stack, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "anchors.jsonl"
    result = quiet.cli("audit", "anchor", check=False, extra_env={"REFUNDWATCH_AUDIT_ANCHOR": str(target)})
    assert result.returncode != 0, result.stdout
    assert_one_line(result.stderr)
    assert "cannot reach a service" not in result.stderr
    assert str(target) in result.stderr
    assert "Not a directory" in result.stderr


def test_restored_chain_verifies_again(quiet: Stack) -> None:
    """Last: every tampering above was undone, so the chain is whole again."""
    code, out, err = verify(quiet)
    assert code == 0, err
    assert INTACT.fullmatch(out), out
