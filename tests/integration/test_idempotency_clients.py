"""Idempotency keys belong to the client, not to one credential (issue 11 §1).

A returns system rotates its API key (a new key with the same ``--name``, then the old one revoked)
while a request is being retried: the retry with the new key must answer the first refund, not make
a second one. Different clients with the same Idempotency-Key string stay independent, and a machine
client on OIDC access tokens replays by its client id whatever token it holds. Real keys from the
CLI, real tokens from the test identity provider, the real worker and simulator, both databases.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import uuid
from pathlib import Path
from typing import Any

import httpx2

from stack import Stack, db_rows, db_write

MIGRATION = (
    Path(__file__).resolve().parents[2]
    / "src/refundwatch/db/migrations/versions/0011_idempotency_scope_per_client.py"
)


def new_key(stack: Stack, name: str) -> str:
    key = stack.cli("apikeys", "create", "--name", name, "--scopes", "refunds:read,refunds:write").stdout
    assert key.strip().startswith("rw_"), key
    return key.strip()


def refund_body(reference: str, amount: int = 1_000) -> dict[str, Any]:
    return {"payment_reference": reference, "amount": amount, "currency": "EUR", "reason": "return"}


def post(stack: Stack, token: str, key: str, body: dict[str, Any]) -> httpx2.Response:
    with stack.api(token) as client:
        return client.post("/api/v1/refunds", json=body, headers={"Idempotency-Key": key})


def refunds_of(stack: Stack, reference: str) -> list[dict[str, Any]]:
    with stack.api() as client:
        response = client.get("/api/v1/refunds", params={"payment_reference": reference})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def executed(stack: Stack, reference: str) -> list[dict[str, Any]]:
    return [row for row in stack.ledger() if row["payment_reference"] == reference]


def test_a_key_rotated_mid_retry_replays_the_first_refund(stack: Stack) -> None:
    client_name = f"returns-{uuid.uuid4().hex[:8]}"
    old_key = new_key(stack, client_name)
    reference = stack.payment(10_000)
    key, body = f"ret-{uuid.uuid4().hex}", refund_body(reference)

    first = post(stack, old_key, key, body)  # the caller times out waiting, and rotates its key
    assert first.status_code == 201, first.text
    new = new_key(stack, client_name)
    retry = post(stack, new, key, body)

    assert retry.status_code == 200, retry.text
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert [r["id"] for r in refunds_of(stack, reference)] == [first.json()["id"]]
    stack.wait_status(first.json()["id"], "succeeded")
    assert len(executed(stack, reference)) == 1
    # The old key still replays too, and a different body under the key is still a conflict.
    again = post(stack, old_key, key, body)
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    changed = post(stack, new, key, refund_body(reference, 999))
    assert changed.status_code == 409, changed.text
    assert changed.json()["code"] == "idempotency_key_reused"
    # Who sent it is still the one key: the audit trail and four-eyes checks name credentials.
    (created_by,) = db_rows(stack, "SELECT created_by FROM refunds WHERE idempotency_key = ?", key)[0]
    assert created_by.startswith("api_key:"), created_by


def test_two_clients_with_the_same_key_get_two_refunds(stack: Stack) -> None:
    ours, theirs = new_key(stack, f"a-{uuid.uuid4().hex[:8]}"), new_key(stack, f"b-{uuid.uuid4().hex[:8]}")
    reference = stack.payment(10_000)
    key, body = f"order-{uuid.uuid4().hex[:6]}", refund_body(reference)
    mine, other = post(stack, ours, key, body), post(stack, theirs, key, body)
    assert (mine.status_code, other.status_code) == (201, 201), (mine.text, other.text)
    assert mine.json()["id"] != other.json()["id"]
    assert len(refunds_of(stack, reference)) == 2
    for refund in (mine, other):
        stack.wait_status(refund.json()["id"], "succeeded")
    assert len(executed(stack, reference)) == 2


def test_a_machine_client_replays_by_client_id_with_a_new_token(stack: Stack) -> None:
    assert stack.idp is not None
    reference = stack.payment(10_000)
    key, body = f"jwt-{uuid.uuid4().hex}", refund_body(reference)
    first = post(stack, stack.idp.machine_token(), key, body)
    assert first.status_code == 201, first.text
    retry = post(stack, stack.idp.machine_token(), key, body)  # a fresh token of the same client
    assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"])
    assert len(refunds_of(stack, reference)) == 1


def _run_backfill(stack: Stack) -> None:
    """Migration 0011's backfill, on the stack's database (its upgrade ran at stack start)."""
    spec = importlib.util.spec_from_file_location("migration_0011", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    async def work() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(stack.database_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(module.backfill)
        finally:
            await engine.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result(timeout=60)


def test_a_request_from_before_the_upgrade_replays_with_a_new_key(stack: Stack) -> None:
    """A refund stored under the old per-key scope (``api_key:<id>``, what ``created_by`` holds) is
    moved to its client by the migration: the new key replays it, the old key still does."""
    client_name = f"legacy-{uuid.uuid4().hex[:8]}"
    old_key = new_key(stack, client_name)
    reference = stack.payment(10_000)
    key, body = f"old-{uuid.uuid4().hex}", refund_body(reference)
    first = post(stack, old_key, key, body)
    assert first.status_code == 201, first.text
    db_write(stack, "UPDATE refunds SET client_scope = created_by WHERE idempotency_key = ?", key)
    (scope,) = db_rows(stack, "SELECT client_scope FROM refunds WHERE idempotency_key = ?", key)[0]
    assert scope.startswith("api_key:")  # as the code before this change stored it

    _run_backfill(stack)

    assert db_rows(stack, "SELECT client_scope FROM refunds WHERE idempotency_key = ?", key) == [
        (f"client:{client_name}",)
    ]
    for token in (new_key(stack, client_name), old_key):
        retry = post(stack, token, key, body)
        assert (retry.status_code, retry.json()["id"]) == (200, first.json()["id"]), retry.text
    assert len(refunds_of(stack, reference)) == 1


def key_id(stack: Stack, key: str) -> str:
    lines = [line for line in stack.cli("apikeys", "list").stdout.splitlines() if f" {key[:8]}… " in line]
    assert len(lines) == 1, lines
    assert key not in lines[0]  # only the prefix is ever shown
    return lines[0].split()[0]


def test_rotation_ends_with_revoking_the_old_key(stack: Stack) -> None:
    client_name = f"rotating-{uuid.uuid4().hex[:8]}"
    old_key = new_key(stack, client_name)  # never used: no web process has it cached
    new = new_key(stack, client_name)
    old_id = key_id(stack, old_key)
    result = stack.cli("apikeys", "revoke", old_id)
    assert f"revoked {old_id}" in result.stdout
    assert f"revoked {old_id}" in stack.cli("apikeys", "revoke", old_id).stdout  # again: no change
    with stack.api(old_key) as client:
        assert client.get("/api/v1/refunds").status_code == 401
    with stack.api(new) as client:
        assert client.get("/api/v1/refunds").status_code == 200
    listed = [line for line in stack.cli("apikeys", "list").stdout.splitlines() if line.startswith(old_id)]
    assert "revoked" in listed[0]
    (count,) = db_rows(
        stack, "SELECT count(*) FROM audit_log WHERE action = 'cli:apikey:revoke' AND target_id = ?", old_id
    )[0]
    assert count == 1
    for bad in ("not-an-id", str(uuid.uuid4())):
        refused = stack.cli("apikeys", "revoke", bad, check=False)
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
