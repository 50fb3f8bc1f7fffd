"""Outgoing webhooks end to end (issue 15 §1): the API, the outbox, signatures, order, retries, safety.

A real receiver on 127.0.0.1 (allow-listed by REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS) answers the running
worker; the ``standardwebhooks`` verifier is the witness of every signature. One stack per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from processors import kit
from refundwatch.audit.actions import Actor
from refundwatch.config import Settings
from refundwatch.outgoing import history, retention
from refundwatch.outgoing.events import EVENT_TYPES
from refundwatch.runtime import Runtime
from stack import Proc, Stack, db_rows, wait_until
from webhook_receiver import HANG, SLOW, Received, Receiver

PATH = "/api/v1/webhook-endpoints"
REFUND_EVENTS = [e for e in EVENT_TYPES if e.startswith("refund.")]
TIMEOUT_SECONDS = 3
HOOK_ENV = {
    "REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "REFUNDWATCH_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
    "REFUNDWATCH_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "REFUNDWATCH_WEBHOOK_RETRY_MAX_SECONDS": "1",
    "REFUNDWATCH_WEBHOOK_MAX_ATTEMPTS": "60",
    # Continuous failure for 18 s disables an endpoint: far longer than any burst below.
    "REFUNDWATCH_WEBHOOK_DISABLE_AFTER_HOURS": "0.005",
    "REFUNDWATCH_WEBHOOK_SWEEP_SECONDS": "0.5",
    "REFUNDWATCH_ALERT_INTERVAL_SECONDS": "2",  # a re-enabled endpoint's alert resolves within seconds
}


@dataclass
class Hooks:
    stack: Stack
    receiver: Receiver
    key: str

    def api(self) -> httpx2.Client:
        return self.stack.api(self.key)

    def endpoint(self, path: str, events: list[str], **extra: Any) -> dict[str, Any]:
        with self.api() as client:
            response = client.post(PATH, json={"url": self.receiver.url(path), "events": events, **extra})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def refund(self, amount: int = 1_000, captured: int = 10_000) -> str:
        response = self.stack.refund(self.stack.payment(captured), amount)
        assert response.status_code == 201, response.text
        refund_id: str = response.json()["id"]
        return refund_id

    def deliveries(self, endpoint_id: str) -> list[tuple[Any, ...]]:
        """(id, event type, refund id, status) of an endpoint's deliveries, in id order."""
        rows = db_rows(
            self.stack,
            "SELECT d.id, d.event_type, d.refund_id, d.status, e.id FROM webhook_deliveries d "
            "JOIN webhook_endpoints e ON e.id = d.endpoint_id ORDER BY d.id",
        )
        return [(r[0], r[1], _uuid(r[2]), r[3]) for r in rows if str(_uuid(r[4])) == endpoint_id]


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value))


@pytest.fixture(scope="module")
def hooks(stack: Stack) -> Iterator[Hooks]:
    stack.restart_with(HOOK_ENV)
    key = stack.cli("apikeys", "create", "--name", "hooks", "--scopes", "webhooks:write").stdout.strip()
    receiver = Receiver()
    try:
        yield Hooks(stack, receiver, key)
    finally:
        receiver.close()


def _sql_write(stack: Stack, sql: str, *params: Any) -> None:
    if stack.backend != "sqlite":
        db_rows(stack, sql, *params)  # autocommit there
        return
    with contextlib.closing(sqlite3.connect(stack.database_url.split(":///", 1)[1], timeout=30)) as conn:
        conn.execute(sql, params)
        conn.commit()


def _first_arrivals(received: list[Received], secret: str) -> list[dict[str, Any]]:
    """Each message's payload, verified, in the order messages first arrived."""
    seen: dict[str, dict[str, Any]] = {}
    for request in received:
        payload = request.verified(secret)  # every attempt is signed, not only the first
        seen.setdefault(request.message_id, payload)
    return list(seen.values())


def _in_order_per_refund(payloads: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Each refund's sequences in the order they first arrived, checked strictly increasing."""
    by_refund: dict[str, list[int]] = defaultdict(list)
    for payload in payloads:
        by_refund[payload["data"]["id"]].append(payload["data"]["sequence"])
    for refund_id, sequences in by_refund.items():
        assert sequences == sorted(set(sequences)), (refund_id, sequences)
    return by_refund


def _all_succeeded(hooks: Hooks, endpoint_id: str, count: int) -> bool:
    rows = hooks.deliveries(endpoint_id)
    return len(rows) >= count and all(r[3] == "succeeded" for r in rows)


def test_endpoint_api(hooks: Hooks) -> None:
    stack, url = hooks.stack, hooks.receiver.url("/contract")
    body = {"url": url, "events": ["refund.succeeded"], "description": "contract"}
    with httpx2.Client(base_url=stack.web_url) as anonymous:
        assert anonymous.post(PATH, json=body).status_code == 401
    with stack.api() as refunds_only:
        refused = refunds_only.post(PATH, json=body)
        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"
        assert refunds_only.get(PATH).status_code == 403
    with hooks.api() as client:
        created = client.post(PATH, json=body)
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        assert endpoint["events"] == ["refund.succeeded"]
        assert endpoint["enabled"] is True
        one = client.get(f"{PATH}/{endpoint['id']}")
        assert one.status_code == 200
        assert "secret" not in one.json()
        listed = client.get(PATH).json()["data"]
        assert endpoint["id"] in {e["id"] for e in listed}
        assert all("secret" not in e for e in listed)

        unknown = client.post(PATH, json={**body, "events": ["refund.exploded"]})
        assert unknown.status_code == 422
        assert unknown.json()["code"] == "unknown_event_type"
        for bad in (
            "https://10.1.2.3/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://127.0.0.2:9/not-allow-listed",
            "https://[::1]/loopback",
            "ftp://example.com/hook",
            "https://user:pass@example.com/hook",
        ):
            refused = client.post(PATH, json={**body, "url": bad})
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["code"] == "endpoint_not_allowed", bad
        no_connection = client.post(PATH, json={**body, "connection": "nowhere"})
        assert no_connection.status_code == 422
        assert no_connection.json()["code"] == "unknown_connection"

        target = f"{PATH}/{endpoint['id']}"
        changed = client.patch(
            target,
            json={"events": ["refund.failed", "refund.succeeded"], "connection": kit("stripe").connection},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["events"] == ["refund.succeeded", "refund.failed"]
        assert changed.json()["connection"] == kit("stripe").connection
        private = client.patch(target, json={"url": "https://192.168.1.5/x"})
        assert private.status_code == 422
        assert private.json()["code"] == "endpoint_not_allowed"
        off = client.patch(target, json={"enabled": False})
        assert off.json()["enabled"] is False
        assert off.json()["disabled_reason"]
        on = client.patch(target, json={"enabled": True})
        assert on.json()["enabled"] is True
        assert on.json()["disabled_reason"] is None
        rotated = client.post(f"{target}/rotate-secret", json={"overlap_hours": 2})
        assert rotated.status_code == 200
        assert rotated.json()["secret"] != endpoint["secret"]
        assert rotated.json()["previous_secret_expires_at"]
        assert client.delete(target).status_code == 204
        gone = client.get(target)
        assert gone.status_code == 404
        assert gone.json()["code"] == "webhook_endpoint_not_found"
    actions = {
        row[0] for row in db_rows(stack, "SELECT action FROM audit_log WHERE target_id = ?", endpoint["id"])
    }
    assert {f"api:webhook_endpoint:{verb}" for verb in ("create", "update", "disable", "enable")} <= actions
    assert {"api:webhook_endpoint:rotate_secret", "api:webhook_endpoint:delete"} <= actions


def test_events_arrive_signed_and_in_order_through_failures(hooks: Hooks) -> None:
    stack, path = hooks.stack, "/flaky"
    endpoint = hooks.endpoint(path, REFUND_EVENTS)
    # The receiver fails, times out, fails again, then recovers.
    hooks.receiver.plan(path, 500, SLOW, 503)
    refunds = [hooks.refund(1_000 + i) for i in range(3)]
    for refund_id in refunds:
        stack.wait_status(refund_id, "succeeded")
    wait_until(
        lambda: (rows := hooks.deliveries(endpoint["id"])) and all(r[3] == "succeeded" for r in rows),
        timeout=90,
        interval=0.3,
        what="every delivery to succeed",
    )
    payloads = _first_arrivals(hooks.receiver.received(path), endpoint["secret"])
    rows = hooks.deliveries(endpoint["id"])
    assert {r[0] for r in rows} == {p["data"]["sequence"] for p in payloads}  # each arrived at least once
    by_refund: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in payloads:
        by_refund[payload["data"]["id"]].append(payload)
    assert set(by_refund) == set(refunds)
    for refund_id, events in by_refund.items():
        sequences = [p["data"]["sequence"] for p in events]
        assert sequences == sorted(set(sequences)), events  # strictly in order, per refund
        types = [p["type"] for p in events]
        assert types[0] == "refund.created", types
        assert types[-1] == "refund.succeeded", types
        assert all(p["data"]["status"] == p["type"].removeprefix("refund.") for p in events[1:])
        shown, last = stack.get(refund_id), events[-1]["data"]
        for field in ("id", "status", "amount", "currency", "payment_reference", "connection", "reason"):
            assert last[field] == shown[field], field
        assert last["events"] == shown["events"][: len(last["events"])]
    attempts = db_rows(
        stack,
        "SELECT a.ok, a.status_code, a.error FROM webhook_attempts a "
        "JOIN webhook_deliveries d ON d.id = a.delivery_id JOIN webhook_endpoints e ON e.id = d.endpoint_id "
        "WHERE e.url = ?",
        hooks.receiver.url(path),
    )
    failed = [a for a in attempts if not a[0]]
    assert {a[1] for a in failed} >= {500, 503}, attempts
    assert "timeout" in {a[2] for a in failed}, attempts
    with hooks.api() as client:
        assert client.get(f"{PATH}/{endpoint['id']}").json()["enabled"] is True  # a burst never disables


def test_outbox_is_exact(hooks: Hooks) -> None:
    stack = hooks.stack
    stack.connect("adyen")
    created = hooks.endpoint("/x-created", ["refund.created", "refund.pending_approval"])
    succeeded = hooks.endpoint("/x-succeeded", ["refund.succeeded"], connection=kit("stripe").connection)
    elsewhere = hooks.endpoint("/x-adyen", ["refund.succeeded"], connection=kit("adyen").connection)
    off = hooks.endpoint("/x-off", ["refund.created", "refund.succeeded"])
    with hooks.api() as client:
        assert client.patch(f"{PATH}/{off['id']}", json={"enabled": False}).status_code == 200
    refunds = [hooks.refund(500 + i) for i in range(4)]
    waiting = hooks.refund(60_000, captured=100_000)  # at or above the approval threshold
    assert stack.get(waiting)["status"] == "pending_approval"
    for refund_id in refunds:
        stack.wait_status(refund_id, "succeeded")
    transitions = defaultdict(int)
    for refund_id, status, before in db_rows(
        stack, "SELECT refund_id, status, from_status FROM refund_events"
    ):
        if before is not None and status == "succeeded":
            transitions[str(_uuid(refund_id))] += 1
    ours = {uuid.UUID(r) for r in [*refunds, waiting]}
    assert [r for r in hooks.deliveries(elsewhere["id"]) if r[2] in ours] == []
    assert [r for r in hooks.deliveries(off["id"]) if r[2] in ours] == []
    on_created = [r for r in hooks.deliveries(created["id"]) if r[2] in ours]
    for refund_id in refunds:
        assert [r[1] for r in on_created if r[2] == uuid.UUID(refund_id)] == ["refund.created"]
        mine = [r for r in hooks.deliveries(succeeded["id"]) if r[2] == uuid.UUID(refund_id)]
        assert [r[1] for r in mine] == ["refund.succeeded"] * transitions[refund_id] == ["refund.succeeded"]
    approval = [r[1] for r in on_created if r[2] == uuid.UUID(waiting)]  # in id order
    assert approval == ["refund.created", "refund.pending_approval"]


def test_rotation_signs_with_old_and_new_secret(hooks: Hooks) -> None:
    path = "/rotating"
    endpoint = hooks.endpoint(path, ["refund.created"])
    with hooks.api() as client:
        target = f"{PATH}/{endpoint['id']}/rotate-secret"
        new = client.post(target, json={"overlap_hours": 1}).json()["secret"]
        hooks.refund()
        first = wait_until(lambda: hooks.receiver.delivered(path), timeout=30, what="a delivery")[0]
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        first.verified(endpoint["secret"])  # the receiver may still hold the old secret...
        first.verified(new)  # ...or already the new one
        newest = client.post(target, json={"overlap_hours": 0}).json()["secret"]
    hooks.refund()
    second = wait_until(lambda: hooks.receiver.delivered(path)[1:], timeout=30, what="a second delivery")[0]
    second.verified(newest)
    with pytest.raises(WebhookVerificationError):
        second.verified(new)  # the overlap is over: only the newest secret signs


def test_private_address_is_refused_at_send_time(hooks: Hooks) -> None:
    """The registered host later leads to an address that is not allowed (as DNS rebinding would):
    nothing is sent, and the attempt says why."""
    path = "/rebound"
    endpoint = hooks.endpoint(path, ["refund.created"])
    moved = hooks.receiver.url(path).replace("127.0.0.1", "127.0.0.2")
    _sql_write(
        hooks.stack, "UPDATE webhook_endpoints SET url = ? WHERE url = ?", moved, hooks.receiver.url(path)
    )
    hooks.refund()
    query = (
        "SELECT a.error FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id "
        "JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.url = ?"
    )
    errors = wait_until(lambda: db_rows(hooks.stack, query, moved), timeout=30, what="a refused attempt")
    assert {e[0] for e in errors} == {"address_not_allowed"}
    assert hooks.receiver.received(path) == []
    with hooks.api() as client:
        assert client.delete(f"{PATH}/{endpoint['id']}").status_code == 204


def test_endpoint_failing_for_hours_is_disabled(hooks: Hooks) -> None:
    path = "/dead"
    hooks.receiver.plan(path, *[500] * 500)
    endpoint = hooks.endpoint(path, ["refund.created"])
    hooks.refund()
    with hooks.api() as client:
        found = wait_until(
            lambda: (e := client.get(f"{PATH}/{endpoint['id']}").json())["enabled"] is False and e,
            timeout=90,
            interval=0.5,
            what="the endpoint to be disabled",
        )
    assert "failed" in found["disabled_reason"]
    assert len(hooks.receiver.received(path)) > 2  # retried many times before
    actions = {
        r[0] for r in db_rows(hooks.stack, "SELECT action FROM audit_log WHERE target_id = ?", endpoint["id"])
    }
    assert "worker:webhook_endpoint:disable" in actions

    # A person is told (alerts): by the endpoint's host only, since a URL may carry a token.
    def alert() -> tuple[Any, ...] | None:
        rows = db_rows(
            hooks.stack,
            "SELECT state, summary FROM alerts WHERE kind = 'webhook_endpoint' AND key = ?",
            endpoint["id"],
        )
        return tuple(rows[-1]) if rows else None

    state, summary = wait_until(alert, timeout=30, what="the endpoint-disabled alert")
    assert state == "open"
    assert "127.0.0.1" in summary
    assert path not in summary
    with hooks.api() as client:
        assert client.patch(f"{PATH}/{endpoint['id']}", json={"enabled": True}).status_code == 200
        client.patch(f"{PATH}/{endpoint['id']}", json={"events": ["refund.canceled"]})  # no more sends
    wait_until(lambda: (a := alert()) is not None and a[0] == "resolved", timeout=30, what="resolved")


def test_events_still_arrive_after_worker_is_killed_mid_delivery(hooks: Hooks) -> None:
    stack, path = hooks.stack, "/killed"
    endpoint = hooks.endpoint(path, ["refund.created"])
    hooks.receiver.plan(path, HANG)
    held_before = hooks.receiver.held
    try:
        hooks.refund()
        wait_until(
            lambda: hooks.receiver.held > held_before, timeout=30, interval=0.02, what="a send in flight"
        )
        stack.procs["worker"].kill()  # SIGKILL, mid-delivery: the claim's lease has to run out
        stack.start_worker()
        delivered = wait_until(
            lambda: hooks.receiver.delivered(path), timeout=60, interval=0.2, what="a re-send"
        )
    finally:
        if not stack.procs["worker"].alive:
            stack.start_worker()
    (held,) = [r for r in hooks.receiver.received(path) if r.answered is None]
    assert delivered[0].message_id == held.message_id  # the same message, sent again
    again, first = delivered[0].verified(endpoint["secret"]), held.verified(endpoint["secret"])
    # Rendered again (the killed worker recorded nothing): the same change of the same refund.
    for field in ("id", "sequence", "status", "events"):
        assert again["data"][field] == first["data"][field]
    # The receiver answers before the worker records the answer: wait for the record.
    wait_until(
        lambda: [r[3] for r in hooks.deliveries(endpoint["id"])] == ["succeeded"],
        timeout=30,
        what="the one delivery recorded as succeeded",
    )


def test_operators_see_every_attempt_and_can_resend(hooks: Hooks) -> None:
    """The services the admin pages call: deliveries per endpoint and refund, their attempts, and
    re-sending one delivery or every delivery since a moment (same webhook-id, signed afresh)."""
    stack, path = hooks.stack, "/history"
    endpoint = hooks.endpoint(path, ["refund.created", "refund.succeeded"])
    hooks.receiver.plan(path, 500)
    refund_id = hooks.refund()
    stack.wait_status(refund_id, "succeeded")
    wait_until(
        lambda: [r[3] for r in hooks.deliveries(endpoint["id"])] == ["succeeded", "succeeded"],
        timeout=30,
        what="both deliveries to succeed",
    )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    admin = Actor("user", "operator")

    async def look_and_resend() -> tuple[list[history.DeliveryOut], list[history.AttemptOut], int]:
        settings = Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url)
        rt = await Runtime.build(settings).open(redis=False, http=False)
        try:
            ours = uuid.UUID(endpoint["id"])
            listed = await history.list_deliveries(rt, endpoint_id=ours)
            by_refund = await history.list_deliveries(rt, refund_id=uuid.UUID(refund_id))
            assert {d.id for d in listed} <= {d.id for d in by_refund}
            attempts = await history.list_attempts(rt, listed[-1].id)
            # Every delivery since first, then one: the other way round, the worker may already be
            # sending the one re-sent (those in flight are left out of "since", so it would count 1).
            resent = await history.resend_since(rt, ours, since, actor=admin, source="admin")
            again = await history.resend(rt, listed[-1].id, actor=admin, source="admin")
            assert again.status == "pending"
            return listed, attempts, resent
        finally:
            await rt.close()

    listed, attempts, resent = asyncio.run(look_and_resend())
    assert [d.event_type for d in listed] == ["refund.succeeded", "refund.created"]  # newest first
    assert [(a.ok, a.status_code) for a in attempts] == [(False, 500), (True, 200)]
    assert attempts[0].excerpt == "ok"  # the receiver's answer, kept
    assert resent == 2
    created = f"msg_{listed[-1].id}"
    wait_until(
        lambda: sum(r.message_id == created for r in hooks.receiver.delivered(path)) >= 2,
        timeout=30,
        what="the re-sent delivery",
    )
    for request in hooks.receiver.delivered(path):
        request.verified(endpoint["secret"])
    audited = db_rows(stack, "SELECT action FROM audit_log WHERE target_id = ?", endpoint["id"])
    assert "admin:webhook_endpoint:resend" in {r[0] for r in audited}


def test_different_refunds_are_sent_side_by_side_each_in_order(hooks: Hooks) -> None:
    stack, path = hooks.stack, "/side-by-side"
    endpoint = hooks.endpoint(path, REFUND_EVENTS)
    hooks.receiver.together(path, 3)  # answered only if three sends are in flight at once
    refunds = [hooks.refund(1_000 + i) for i in range(3)]
    for refund_id in refunds:
        stack.wait_status(refund_id, "succeeded")
    wait_until(
        lambda: _all_succeeded(hooks, endpoint["id"], 6), timeout=60, interval=0.2, what="every delivery"
    )
    received = hooks.receiver.received(path)
    assert [r.answered for r in received[:3]] == [200, 200, 200]  # they met: sent side by side
    assert len({r.json()["data"]["id"] for r in received[:3]}) == 3  # three refunds, one each
    by_refund = _in_order_per_refund(_first_arrivals(received, endpoint["secret"]))
    assert set(by_refund) == set(refunds)
    assert all(len(sequences) >= 2 for sequences in by_refund.values())  # created … succeeded


def test_two_workers_send_each_delivery_once_and_in_order(hooks: Hooks) -> None:
    stack, path = hooks.stack, "/two-workers"
    endpoint = hooks.endpoint(path, REFUND_EVENTS)
    second = Proc("worker-2", ["refundwatch", "worker"], stack.env, stack.workdir / "worker-2.log").start()
    try:
        refunds = [hooks.refund(1_000 + i) for i in range(8)]
        for refund_id in refunds:
            stack.wait_status(refund_id, "succeeded")
        wait_until(
            lambda: _all_succeeded(hooks, endpoint["id"], 16), timeout=60, interval=0.2, what="every delivery"
        )
    finally:
        second.stop()
    received = hooks.receiver.received(path)
    ids = [r.message_id for r in received]
    assert len(ids) == len(set(ids))  # every answer was 200: nothing was sent twice
    assert {int(i.removeprefix("msg_")) for i in ids} == {r[0] for r in hooks.deliveries(endpoint["id"])}
    by_refund = _in_order_per_refund(_first_arrivals(received, endpoint["secret"]))
    assert set(refunds) <= set(by_refund)  # an earlier test's refund may still be changing


def test_a_deleted_endpoints_webhook_ids_and_sequences_are_never_given_out_again(hooks: Hooks) -> None:
    """A receiver deduplicates on ``webhook-id`` and drops what is older than the ``sequence`` it has:
    after the endpoint holding the newest deliveries is deleted and registered again at the same URL,
    the refunds' later events still arrive with new ids and larger sequences (SQLite used to hand the
    deleted rows' ids out again: the cancellations came as msg_1 and msg_2 with sequences 1 and 2)."""
    stack, path = hooks.stack, "/registered-again"
    events = ["refund.created", "refund.pending_approval", "refund.canceled"]
    first = hooks.endpoint(path, events)
    waiting = [hooks.refund(60_000, captured=100_000) for _ in range(2)]  # they wait for approval
    wait_until(lambda: _all_succeeded(hooks, first["id"], 4), timeout=30, what="the first four deliveries")
    before = _first_arrivals(hooks.receiver.received(path), first["secret"])
    assert len(before) == 4
    old_ids = {r.message_id for r in hooks.receiver.received(path)}
    old_top = max(int(i.removeprefix("msg_")) for i in old_ids)
    if stack.backend == "sqlite":  # the case that reused ids: the deleted endpoint's are the newest rows
        assert db_rows(stack, "SELECT MAX(id) FROM webhook_deliveries") == [(old_top,)]
    with hooks.api() as client:
        assert client.delete(f"{PATH}/{first['id']}").status_code == 204
    again = hooks.endpoint(path, events)
    with stack.api() as client:
        for refund_id in waiting:
            assert client.post(f"/api/v1/refunds/{refund_id}/cancel").status_code == 200
    wait_until(lambda: _all_succeeded(hooks, again["id"], 2), timeout=30, what="the cancellations")
    later = hooks.receiver.received(path)[len(hooks.receiver.received(path)) - 2 :]
    assert {r.message_id for r in later}.isdisjoint(old_ids), [r.message_id for r in later]
    assert min(int(r.message_id.removeprefix("msg_")) for r in later) > old_top
    for request in later:
        shown = request.verified(again["secret"])
        assert shown["type"] == "refund.canceled"
        earlier = [p["data"]["sequence"] for p in before if p["data"]["id"] == shown["data"]["id"]]
        assert len(earlier) == 2
        assert shown["data"]["sequence"] > max(earlier)


def test_enabling_an_endpoint_again_sends_its_pending_deliveries_at_once(hooks: Hooks) -> None:
    """Deliveries retried for hours are due hours ahead; an endpoint enabled again sends them now, in
    order, not when their old backoff ends."""
    stack, path, fixed = hooks.stack, "/resumed", "/resumed-fixed"
    hooks.receiver.plan(path, *[500] * 1_000)
    endpoint = hooks.endpoint(path, ["refund.created", "refund.pending_approval"])
    refund_id = hooks.refund(60_000, captured=100_000)  # waits for approval: two deliveries, then none
    wait_until(
        lambda: len(hooks.receiver.received(path)) >= 3, timeout=30, what="the deliveries to be retried"
    )
    target = f"{PATH}/{endpoint['id']}"
    with hooks.api() as client:
        assert client.patch(target, json={"enabled": False}).status_code == 200
    ids = [r[0] for r in hooks.deliveries(endpoint["id"])]
    assert len(ids) == 2
    marks = ",".join("?" * len(ids))
    wait_until(  # the attempt in flight when it was disabled is recorded
        lambda: (
            db_rows(
                stack,
                f"SELECT COUNT(*) FROM webhook_deliveries WHERE lease_until IS NOT NULL AND id IN ({marks})",
                *ids,
            )
            == [(0,)]
        ),
        timeout=30,
        what="no delivery in flight",
    )
    # As the backoff leaves them after failing for half a day: the next attempt hours away.
    later = "datetime('now', '+3 hours')" if stack.backend == "sqlite" else "now() + interval '3 hours'"
    for delivery_id in ids:
        _sql_write(
            stack, f"UPDATE webhook_deliveries SET next_attempt_at = {later} WHERE id = ?", delivery_id
        )
    with hooks.api() as client:
        assert client.patch(target, json={"url": hooks.receiver.url(fixed)}).status_code == 200
        assert client.patch(target, json={"enabled": True}).status_code == 200
    arrived = wait_until(
        lambda: len(got := hooks.receiver.delivered(fixed)) >= 2 and got,
        timeout=20,
        what="the pending deliveries, at once",
    )
    payloads = [r.verified(endpoint["secret"]) for r in arrived]
    assert [p["type"] for p in payloads] == ["refund.created", "refund.pending_approval"]
    assert {p["data"]["id"] for p in payloads} == {refund_id}


def test_finished_deliveries_are_pruned_after_the_retention_and_pending_ones_never(hooks: Hooks) -> None:
    """Last in the module: the prune, run as if a month had passed, empties every finished delivery."""
    stack = hooks.stack
    done = hooks.endpoint("/kept-a-month", ["refund.created"])
    owed = hooks.endpoint("/owed", ["refund.created"])
    hooks.receiver.plan("/owed", *[500] * 50)
    hooks.refund()
    wait_until(lambda: [r[3] for r in hooks.deliveries(done["id"])] == ["succeeded"], timeout=30, what="sent")
    wait_until(lambda: hooks.receiver.received("/owed"), timeout=30, what="a failed attempt")

    def counts() -> tuple[int, int, int]:
        (row,) = db_rows(
            stack,
            "SELECT SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status <> 'pending' THEN 1 ELSE 0 END), "
            "(SELECT COUNT(*) FROM webhook_attempts) FROM webhook_deliveries",
        )
        return int(row[0] or 0), int(row[1] or 0), int(row[2])

    pending, finished, attempts = counts()
    assert pending >= 1
    assert finished >= 1
    month_later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)

    async def prune() -> int:
        settings = Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url)
        rt = await Runtime.build(settings).open(redis=False, http=False)
        try:
            return await retention.prune(rt, month_later)
        finally:
            await rt.close()

    with hooks.api() as client:  # the owed endpoint stops trying meanwhile: its delivery stays owed
        assert client.patch(f"{PATH}/{owed['id']}", json={"enabled": False}).status_code == 200
    # Earlier tests' deliveries may still be finishing: with the worker stopped, the counts hold still.
    stack.stop_worker()
    try:
        pending, finished, attempts = counts()
        assert asyncio.run(prune()) == finished
        after = counts()
    finally:
        stack.start_worker()
    assert after[0] == pending  # owed: never pruned
    assert after[1] == 0
    remaining = db_rows(
        stack,
        "SELECT COUNT(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id",
    )
    assert after[2] == int(remaining[0][0])  # no attempt left without its delivery
    assert after[2] < attempts
