"""A flood of bad webhook signatures: limited per address and connection, counted exactly, audited once
per connection and minute by the worker, and never a database write on the request path.

Real processes: the stack's web, worker, simulator, Redis and database, plus a second web process
with a low rejection limit behind a trusted proxy (127.0.0.20), so each forwarded client address is
its own sender.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import redis
from test_webhooks import CONNECTION, processed, refund_event, rejected_metric, sign

from _services import free_port, start_private_redis
from stack import Proc, Stack, db_rows, wait_http, wait_until

pytestmark = pytest.mark.slow

LIMIT = 20
FLOOD = 200
PROXY = "127.0.0.20"
ATTACKER, PROCESSOR, PROBER = "203.0.113.7", "203.0.113.8", "203.0.113.9"
REJECTED = "webhook:event:rejected"
# Where a flush keeps the minutes it has claimed (refundwatch.webhooks.rejections).
CLAIMED_PREFIX = "refundwatch:webhooks:rejections:claimed:"
FLUSHING_KEY = "refundwatch:webhooks:rejections:flushing"
RATE_LIMITED_METRIC = re.compile(
    r'^refundwatch_webhooks_rate_limited_total\{connection="stripe-test"\} (\d+)(?:\.0)?$', re.MULTILINE
)


@pytest.fixture(scope="module")
def guarded(stack: Stack) -> Iterator[str]:
    """A second web process on the stack's database and Redis with a low rejection limit."""
    port = free_port()
    env = {
        **stack.env,
        "REFUNDWATCH_RATE_LIMIT_WEBHOOK_REJECTIONS_PER_MINUTE": str(LIMIT),
        "REFUNDWATCH_TRUSTED_PROXIES": PROXY,
    }
    proc = Proc(
        "web-guarded", ["refundwatch", "serve", "--port", str(port)], env, stack.workdir / "web-g.log"
    )
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def through_proxy(url: str) -> httpx2.Client:
    return httpx2.Client(base_url=url, transport=httpx2.HTTPTransport(local_address=PROXY), timeout=30)


def post(
    client: httpx2.Client, body: bytes, signature: str, sender: str, connection: str = CONNECTION
) -> Any:
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature, "X-Forwarded-For": sender}
    return client.post(f"/webhooks/{connection}", content=body, headers=headers)


def rate_limited_metric(stack: Stack) -> int:
    response = stack.metrics(timeout=10)
    match = RATE_LIMITED_METRIC.search(response.text)
    return int(match.group(1)) if match else 0


def rejection_entries(stack: Stack) -> list[dict[str, Any]]:
    rows = db_rows(
        stack,
        "SELECT details FROM audit_log WHERE action = ? AND target_id = ? ORDER BY id",
        REJECTED,
        CONNECTION,
    )
    return [json.loads(r[0]) for r in rows]


def audit_count(stack: Stack) -> int:
    return int(db_rows(stack, "SELECT COUNT(*) FROM audit_log")[0][0])


def charge_event() -> tuple[str, bytes]:
    """A valid event that changes no refund: stored, processed, acknowledged."""
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    body = {"id": event_id, "object": "event", "type": "charge.succeeded", "data": {"object": {"id": "ch_1"}}}
    return event_id, json.dumps(body).encode()


def member_of(entry: dict[str, Any]) -> str:
    minute = dt.datetime.fromisoformat(entry["minute"].replace("Z", "+00:00"))
    return f"{int(minute.timestamp()) // 60}|{CONNECTION}"


def test_a_flood_is_limited_counted_exactly_and_audited_per_minute(stack: Stack, guarded: str) -> None:
    stack.faults()
    _, bad_body = refund_event(
        {
            "id": str(uuid.uuid4()),
            "gateway_refund_id": "re_f",
            "amount": 1,
            "currency": "EUR",
            "payment_reference": "p",
        }
    )
    valid_id, valid_body = charge_event()
    rejected_before, limited_before = rejected_metric(stack), rate_limited_metric(stack)
    entries_before, audit_before = rejection_entries(stack), audit_count(stack)

    # No worker while the flood runs: whatever reaches the audit log now was written by the web side.
    stack.stop_worker()
    statuses: list[int] = []
    with through_proxy(guarded) as proxy:
        for n in range(FLOOD):
            response = post(proxy, bad_body, f"t={n},v1={'ab' * 32}", ATTACKER)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["code"] == "rate_limited", response.text
                assert int(response.headers["retry-after"]) >= 1
            if n == FLOOD // 2:  # the processor, from its own address, is not throttled by the flood
                accepted = post(proxy, valid_body, sign(valid_body), PROCESSOR)
                assert accepted.status_code == 200, accepted.text
                assert accepted.json()["stored"] == 1
    refused, limited = statuses.count(401), statuses.count(429)
    assert refused + limited == FLOOD, sorted(set(statuses))
    assert statuses[: LIMIT + 1] == [401] * LIMIT + [429], statuses[: LIMIT + 1]

    assert rejected_metric(stack) == rejected_before + refused
    assert rate_limited_metric(stack) == limited_before + limited
    assert rejection_entries(stack) == entries_before, "a rejection wrote to the database"
    assert audit_count(stack) == audit_before + 1  # only the accepted event's entry

    stack.start_worker()
    stack.wait_worker_ready()
    processed(stack, valid_id, timeout=30)

    def flushed() -> list[dict[str, Any]]:
        new = [e for e in rejection_entries(stack) if e not in entries_before]
        # The 429s can run into a minute with no 401 in it: that minute's bucket is flushed later.
        counted = sum(e["count"] for e in new), sum(e.get("rate_limited", 0) for e in new)
        return new if counted[0] >= refused and counted[1] >= limited else []

    entries = wait_until(flushed, timeout=150, interval=0.5, what="the rejections to be audited")
    assert 1 <= len(entries) <= 3, entries  # one per minute the flood touched
    assert len({member_of(e) for e in entries}) == len(entries)
    assert sum(e["count"] for e in entries) == refused
    assert sum(e.get("rate_limited", 0) for e in entries) == limited
    assert sum(e["addresses"].get(ATTACKER, 0) for e in entries) == refused
    assert all(sum(e["reasons"].values()) == e["count"] for e in entries)
    assert stack.cli("audit", "verify").returncode == 0


def test_unknown_connection_names_are_limited_per_address(stack: Stack, guarded: str) -> None:
    _, body = charge_event()
    with through_proxy(guarded) as proxy:
        answers = [post(proxy, body, sign(body), PROBER, f"probe-{n}").status_code for n in range(LIMIT + 1)]
        other = post(proxy, body, sign(body), PROCESSOR, "probe-x").status_code
    assert answers == [404] * LIMIT + [429]
    assert other == 404


def test_the_flush_writes_one_entry_per_minute_after_a_crash_at_any_step(stack: Stack) -> None:
    """A worker that died after claiming a minute, or after writing its entry but before deleting the
    claim, leaves the claim behind; the next flush finishes it with exactly one entry per minute."""
    client = redis.Redis.from_url(stack.redis_url)
    long_ago = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    member = f"{int(long_ago.timestamp()) // 60}|{CONNECTION}"
    fields = {"count": 3, "r:bad signature": 3, "a:192.0.2.1": 3, "#r": 1, "#a": 1}

    def claimed_and_flushed() -> list[dict[str, Any]]:
        client.hset(f"{CLAIMED_PREFIX}{member}", mapping=fields)
        client.sadd(FLUSHING_KEY, member)
        wait_until(
            lambda: (
                not client.exists(f"{CLAIMED_PREFIX}{member}") and not client.sismember(FLUSHING_KEY, member)
            ),
            timeout=30,
            what="the claimed minute to be flushed",
        )
        return [e for e in rejection_entries(stack) if e.get("minute") == "2026-01-02T03:04:00Z"]

    try:
        first = claimed_and_flushed()  # crash after the claim: the minute is not lost
        again = claimed_and_flushed()  # crash after the entry was written: it is not written twice
    finally:
        client.close()
    assert (
        first
        == again
        == [
            {
                "minute": "2026-01-02T03:04:00Z",
                "count": 3,
                "rate_limited": 0,
                "reasons": {"bad signature": 3},
                "addresses": {"192.0.2.1": 3},
            }
        ]
    )
    assert stack.cli("audit", "verify").returncode == 0


def test_with_redis_down_each_rejection_is_audited_directly(stack: Stack) -> None:
    """Redis away: no count, no limit, but the fact is never lost: one audit entry per rejection."""
    port, redis_url = free_port(), start_private_redis()
    env = {**stack.env, "REFUNDWATCH_REDIS_URL": redis_url}
    proc = Proc(
        "web-noredis", ["refundwatch", "serve", "--port", str(port)], env, stack.workdir / "web-nr.log"
    )
    proc.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        with contextlib.suppress(redis.ConnectionError):  # it goes away while answering
            redis.Redis.from_url(redis_url).shutdown(nosave=True)
        _, body = charge_event()
        before = rejection_entries(stack)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            answers = [post(client, body, f"t=1,v1={'cd' * 32}", "ignored").status_code for _ in range(3)]
    finally:
        proc.stop()
    assert answers == [401] * 3
    new = [e for e in rejection_entries(stack) if e not in before]
    assert len(new) == 3, new
    assert all(e == {"reason": new[0]["reason"]} for e in new), new
