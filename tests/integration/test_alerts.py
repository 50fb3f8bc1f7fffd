"""Alerts to people (issue 15 §2) on both databases: every rule opens an alert and resolves it, each
is sent once through real Apprise targets — a local SMTP server (``mailto://``) and a local HTTP
receiver (``json://``) — with a recovery message when it resolves, however many evaluations run at
once; failed sends are retried a bounded number of times; the dashboard and the admin history show
them, and no target's token ever reaches a page or a log.

The worker here sends messages but checks no rules (REFUNDWATCH_ALERT_INTERVAL_SECONDS=0), so each
test evaluates the rules itself, in-process, at the moment it chooses (``now``): thresholds are
crossed by moving the clock, never by waiting. The last test turns the worker's schedule on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import apprise
import pytest
from aiosmtpd.controller import Controller
from test_money_truth import FINAL, new_refund, webhook
from test_staff_pages import csrf

from _services import free_port
from refundwatch.alerts import raise_alert, resolve_alert, rules, sending
from refundwatch.audit.actions import Actor
from refundwatch.config import Settings
from refundwatch.reconciliation.resolving import resolve as resolve_break
from refundwatch.runtime import Runtime
from stack import Proc, Stack, db_rows, wait_http, wait_until
from stripe_reports import imported, line, report

pytestmark = pytest.mark.slow

TOKEN = "sekret-hook-token-42"  # in the JSON target's URL, as a webhook token would be
T = TypeVar("T")


# --- the receivers ---------------------------------------------------------------------------------
@dataclass
class Receivers:
    smtp_port: int
    http_port: int
    mails: list[EmailMessage] = field(default_factory=list)
    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    flaky_failing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def urls(self) -> str:
        return ",".join(
            (
                f"mailto://127.0.0.1:{self.smtp_port}?mode=insecure&from=alerts@refundwatch.test"
                f"&to=ops@refundwatch.test",
                f"json://hook:{TOKEN}@127.0.0.1:{self.http_port}/alerts",
                f"json://127.0.0.1:{self.http_port}/flaky",
            )
        )

    def subjects(self, marker: str) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.mails if marker in str(m["Subject"])]

    def titles(self, path: str, marker: str) -> list[str]:
        with self.lock:
            return [p["title"] for p in self.posts.get(path, []) if marker in p["title"]]

    def everywhere(self, marker: str, word: str) -> bool:
        """The message with ``marker`` whose title has ``word`` reached all three targets."""
        return all(
            any(word in t for t in found)
            for found in (
                self.subjects(marker),
                self.titles("/alerts", marker),
                self.titles("/flaky", marker),
            )
        )


class _Mailbox:
    def __init__(self, receivers: Receivers) -> None:
        self.receivers = receivers

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.receivers.lock:
            self.receivers.mails.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
        return "250 OK"


def _http_handler(receivers: Receivers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/flaky" and receivers.flaky_failing:
                self.send_response(500)
                self.end_headers()
                return
            with receivers.lock:
                receivers.posts.setdefault(self.path, []).append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    found = Receivers(free_port(), free_port())
    mail = Controller(_Mailbox(found), hostname="127.0.0.1", port=found.smtp_port)
    mail.start()
    server = ThreadingHTTPServer(("127.0.0.1", found.http_port), _http_handler(found))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        mail.stop()


def restart(stack: Stack, **env: str) -> None:
    """Web and worker again, with ``env``: both raise alerts, so both know the targets."""
    stack.env.update(env)
    stack.stop_worker()
    web = stack.procs["web"]
    web.stop()
    port = stack.web_url.rsplit(":", 1)[1]
    new = Proc("web", ["refundwatch", "serve", "--port", port], stack.env, stack.workdir / "web.log")
    stack.procs["web"] = new.start()
    wait_http(f"{stack.web_url}/healthz", new)
    stack.start_worker()
    stack.wait_worker_ready()


@pytest.fixture(scope="module")
def alerting(stack: Stack, receivers: Receivers) -> Stack:
    restart(
        stack,
        REFUNDWATCH_ALERT_URLS=receivers.urls,
        REFUNDWATCH_ALERT_INTERVAL_SECONDS="0",
        REFUNDWATCH_ALERT_SEND_ATTEMPTS="3",
        REFUNDWATCH_ALERT_SEND_TIMEOUT_SECONDS="10",
    )
    return stack


# --- in-process evaluation and sending ---------------------------------------------------------------
def settings(stack: Stack, **extra: Any) -> Settings:
    return Settings(
        mode="test",
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        alert_urls=stack.env["REFUNDWATCH_ALERT_URLS"],
        secret_key=stack.env.get("REFUNDWATCH_SECRET_KEY", ""),
        alert_send_attempts=3,
        **extra,
    )


def inproc(stack: Stack, work: Callable[[Runtime], Awaitable[T]], **extra: Any) -> T:
    async def run() -> T:
        rt = await Runtime.build(settings(stack, **extra)).open(http=False)
        try:
            return await work(rt)
        finally:
            await rt.close()

    return asyncio.run(run())


def evaluate(stack: Stack, *, minutes: float = 0, **extra: Any) -> rules.Outcome:
    """The rules, checked ``minutes`` from now."""
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    return inproc(stack, lambda rt: rules.evaluate(rt, now), **extra)


def alerts(stack: Stack, key: str) -> list[tuple[Any, ...]]:
    """(id, state, summary) of every alert with this open key, oldest first."""
    kind, _, name = key.partition(":")
    return db_rows(
        stack, "SELECT id, state, summary FROM alerts WHERE kind = ? AND key = ? ORDER BY id", kind, name
    )


def messages(stack: Stack, alert_id: int) -> list[tuple[Any, ...]]:
    return db_rows(
        stack,
        "SELECT event, target_label, status, attempts FROM alert_deliveries WHERE alert_id = ? ORDER BY id",
        alert_id,
    )


def all_sent(stack: Stack, alert_id: int) -> bool:
    return all(status == "sent" for _, _, status, _ in messages(stack, alert_id))


def earlier_messages_sent(stack: Stack) -> None:
    """Wait until every message queued so far went out, so a test counts only the messages it caused."""
    wait_until(
        lambda: (
            db_rows(stack, "SELECT COUNT(*) FROM alert_deliveries WHERE status IN ('queued', 'sending')")
            == [(0,)]
        ),
        timeout=60,
        what="earlier messages sent",
    )


# --- the tests -------------------------------------------------------------------------------------
def test_stuck_refunds_alert_once_by_email_and_json_and_recover(
    alerting: Stack, receivers: Receivers
) -> None:
    stack = alerting
    # Above the approval threshold: it waits for a second person, and stops moving.
    refund_id = new_refund(stack, stack.payment(60_000), 60_000)
    assert stack.get(refund_id)["status"] == "pending_approval"
    assert "stuck:pending_approval" not in evaluate(stack).opened  # fresh: not stuck yet

    outcome = evaluate(stack, minutes=20)
    assert "stuck:pending_approval" in outcome.opened, outcome
    ((alert_id, state, summary),) = alerts(stack, "stuck:pending_approval")
    assert state == "open"
    assert "refunds stuck in pending_approval" in summary
    assert "stuck after 15" in summary
    marker = "refunds stuck in pending_approval"
    wait_until(lambda: receivers.everywhere(marker, "WARNING"), timeout=30, what="the alert at every target")

    again = evaluate(stack, minutes=25)  # still stuck: the same alert, nobody told again
    assert "stuck:pending_approval" not in again.opened
    assert len(alerts(stack, "stuck:pending_approval")) == 1
    assert [m[0] for m in messages(stack, alert_id)] == ["opened"] * 3

    with stack.api() as client:
        assert client.post(f"/api/v1/refunds/{refund_id}/cancel").status_code == 200
    assert "stuck:pending_approval" in evaluate(stack, minutes=25).resolved
    wait_until(lambda: receivers.everywhere(marker, "RESOLVED"), timeout=30, what="the recovery everywhere")
    assert [r[1] for r in alerts(stack, "stuck:pending_approval")] == ["resolved"]
    assert sorted(m[0] for m in messages(stack, alert_id)) == ["opened"] * 3 + ["resolved"] * 3
    wait_until(lambda: all_sent(stack, alert_id), timeout=30, what="every message sent")
    assert len(receivers.subjects(marker)) == 2  # one alert, one recovery
    audited = db_rows(
        stack, "SELECT action FROM audit_log WHERE target_type = 'alert' AND target_id = ?", str(alert_id)
    )
    assert sorted(a for (a,) in audited) == ["system:alert:opened", "system:alert:resolved"]


def test_two_evaluations_at_once_open_and_send_exactly_once(alerting: Stack, receivers: Receivers) -> None:
    stack = alerting
    marker = "refunds stuck in pending_approval"
    before = (len(receivers.subjects(marker)), len(receivers.titles("/alerts", marker)))
    refund_id = new_refund(stack, stack.payment(70_000), 70_000)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)

    async def both(rt: Runtime) -> list[rules.Outcome]:
        other = Runtime.build(rt.settings)  # its own database pool: a second worker
        other.redis = rt.redis
        try:
            return list(await asyncio.gather(rules.evaluate(rt, now), rules.evaluate(other, now)))
        finally:
            other.redis = None
            await other.close()

    outcomes = inproc(stack, both)
    assert sum("stuck:pending_approval" in o.opened for o in outcomes) == 1, outcomes
    ((alert_id, _, _),) = [a for a in alerts(stack, "stuck:pending_approval") if a[1] == "open"]
    assert len(messages(stack, alert_id)) == 3

    async def send_twice(rt: Runtime) -> list[int]:  # beside the worker's own sender
        return list(await asyncio.gather(sending.deliver_due(rt), sending.deliver_due(rt)))

    inproc(stack, send_twice)
    wait_until(lambda: all_sent(stack, alert_id), timeout=30, what="every message sent")
    assert [m[3] for m in messages(stack, alert_id)] == [1, 1, 1]  # each claimed once
    after = (len(receivers.subjects(marker)), len(receivers.titles("/alerts", marker)))
    assert after == (before[0] + 1, before[1] + 1)
    with stack.api() as client:
        assert client.post(f"/api/v1/refunds/{refund_id}/cancel").status_code == 200
    assert "stuck:pending_approval" in evaluate(stack, minutes=30).resolved


def test_a_failed_send_is_retried_a_bounded_number_of_times(alerting: Stack, receivers: Receivers) -> None:
    stack = alerting
    marker = f"endpoint ep_{uuid.uuid4().hex[:8]}"
    receivers.flaky_failing = True
    try:
        assert inproc(stack, lambda rt: raise_alert(rt, "webhook_endpoint", marker, f"{marker} was disabled"))
        ((alert_id, _, _),) = alerts(stack, f"webhook_endpoint:{marker}")

        wait_until(
            lambda: [m[2:] for m in messages(stack, alert_id) if m[1] == "3 (JSON)"] == [("queued", 1)],
            timeout=30,
            what="the first try failed",
        )
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        inproc(stack, lambda rt: sending.deliver_due(rt, now=later))  # the second try, an hour on
        inproc(stack, lambda rt: sending.deliver_due(rt, now=later + dt.timedelta(hours=1)))  # the third
        statuses = {m[1]: (m[2], m[3]) for m in messages(stack, alert_id)}
        assert statuses["3 (JSON)"] == ("failed", 3), statuses
        assert (statuses["1 (E-Mail)"], statuses["2 (JSON)"]) == (("sent", 1), ("sent", 1)), statuses
        error = db_rows(
            stack, "SELECT error FROM alert_deliveries WHERE alert_id = ? AND status = 'failed'", alert_id
        )
        assert error == [("the target did not accept it (failure)",)]
    finally:
        receivers.flaky_failing = False
    # A message that keeps failing does not hold back the next one: the recovery goes out.
    assert inproc(
        stack, lambda rt: resolve_alert(rt, "webhook_endpoint", marker, "the endpoint was enabled again")
    )
    wait_until(lambda: receivers.everywhere(marker, "RESOLVED"), timeout=30, what="the recovery everywhere")
    assert receivers.titles("/flaky", marker) == [f"[refundwatch] RESOLVED: {marker} was disabled"]


def test_a_disabled_webhook_endpoint_alert_is_shown_deduplicated_and_resolved(
    alerting: Stack, receivers: Receivers
) -> None:
    """The function the outgoing-webhook deliveries call when they disable an endpoint."""
    stack = alerting
    marker = f"endpoint ep_{uuid.uuid4().hex[:8]}"
    summary = f"webhook {marker} disabled after failing for 3 days"

    async def raise_twice(rt: Runtime) -> list[bool]:
        return list(
            await asyncio.gather(*(raise_alert(rt, "webhook_endpoint", marker, summary) for _ in range(2)))
        )

    assert sorted(inproc(stack, raise_twice)) == [False, True]
    ((alert_id, state, _),) = alerts(stack, f"webhook_endpoint:{marker}")
    assert state == "open"
    wait_until(lambda: all_sent(stack, alert_id), timeout=30, what="the alert sent")
    assert len(receivers.subjects(marker)) == 1

    with contextlib.closing(stack.sign_in("alice-viewer")) as viewer:
        panel = viewer.get("/dashboard/panels/alerts")
        assert panel.status_code == 200
        assert summary in panel.text
        assert 'data-kind="webhook_endpoint"' in panel.text
        assert viewer.get("/admin/alerts").status_code == 403
        assert summary in viewer.get("/").text
    with contextlib.closing(stack.sign_in("ada-admin")) as admin:
        page = admin.get("/admin/alerts", params={"state": "open"})
        assert page.status_code == 200, page.text[:300]
        assert summary in page.text
        assert "target 2 (JSON): sent" in page.text
        assert TOKEN not in page.text
        refused = admin.post(
            f"/admin/alerts/{alert_id}/resolve", data={"reason": "done", "_csrf_token": csrf(page.text)}
        )
        assert (refused.status_code, refused.json()["code"]) == (409, "resolved_by_rule"), refused.text
        assert admin.get("/admin/alerts", params={"state": "nope"}).status_code == 422

    assert inproc(stack, lambda rt: resolve_alert(rt, "webhook_endpoint", marker, "enabled again"))
    assert not inproc(stack, lambda rt: resolve_alert(rt, "webhook_endpoint", marker, "enabled again"))
    wait_until(lambda: receivers.everywhere(marker, "RESOLVED"), timeout=30, what="the recovery everywhere")
    with contextlib.closing(stack.sign_in("alice-viewer")) as viewer:
        assert summary not in viewer.get("/dashboard/panels/alerts").text
    # The key may open again later: a new alert, a new message.
    assert inproc(stack, lambda rt: raise_alert(rt, "webhook_endpoint", marker, summary))
    assert [a[1] for a in alerts(stack, f"webhook_endpoint:{marker}")] == ["resolved", "open"]
    inproc(stack, lambda rt: resolve_alert(rt, "webhook_endpoint", marker, "enabled again"))


def test_a_report_contradicting_a_released_refund_alerts_as_it_is_applied(
    alerting: Stack, receivers: Receivers
) -> None:
    """No rule has run: the alert is written with the contradiction itself and sent after commit."""
    stack = alerting
    # Stripe itself fails it (its answer, its webhook and its read-back agree): a forged "failed"
    # webhook could be contradicted by a periodic sync that read "pending" at that moment.
    stack.faults(pending_rate=1.0, fail_later_rate=1.0, settle_ms=500)
    try:
        reference = stack.payment(10_000, simulator_amount=30_000)
        refund_id = new_refund(stack, reference, 6_000)
        refund = stack.wait_status(refund_id, *FINAL)
        assert refund["status"] == "failed", refund
    finally:
        stack.faults()
    webhook(stack, refund, event_type="refund.updated", status="succeeded")
    assert stack.get(refund_id)["status"] == "manual_review"
    ((_alert_id, state, summary),) = alerts(stack, f"money_truth:{refund_id}")
    assert state == "open"
    assert "the processor reports this refund succeeded" in summary
    wait_until(lambda: receivers.everywhere(refund_id, "CRITICAL"), timeout=30, what="the money alert sent")
    assert not evaluate(stack).opened  # the rule finds it open already

    with stack.api() as client:  # a person retries it: the processor is asked before any re-send
        assert client.post(f"/api/v1/refunds/{refund_id}/retry").status_code == 200
    stack.wait_status(refund_id, "failed")  # its own read-back: failed, so nothing is sent again
    assert f"money_truth:{refund_id}" in evaluate(stack).resolved
    wait_until(lambda: receivers.everywhere(refund_id, "RESOLVED"), timeout=30, what="the recovery sent")
    assert [a[1] for a in alerts(stack, f"money_truth:{refund_id}")] == ["resolved"]


def test_a_possible_double_refund_stays_open_until_an_admin_resolves_it(
    alerting: Stack, receivers: Receivers
) -> None:
    """re_1 failed, the retry re_2 succeeded; then Stripe says re_1 succeeded too. No rule can tell
    when that is settled: a person looks, and resolves it with a reason."""
    stack = alerting
    stack.faults(pending_rate=1.0, fail_later_rate=1.0, settle_ms=500)
    try:
        refund_id = new_refund(stack, stack.payment(10_000), 10_000)
        first = stack.wait_status(refund_id, *FINAL)
    finally:
        stack.faults()
    assert first["status"] == "failed", first
    with stack.api() as client:
        assert client.post(f"/api/v1/refunds/{refund_id}/retry").status_code == 200
    assert stack.wait_status(refund_id, *FINAL)["status"] == "succeeded"
    assert "another attempt" in webhook(stack, first, event_type="refund.updated", status="succeeded")
    ((alert_id, state, summary),) = alerts(stack, f"double_refund:{refund_id}")
    assert state == "open"
    assert "the processor may have refunded twice" in summary
    wait_until(lambda: receivers.everywhere(refund_id, "CRITICAL"), timeout=30, what="the alert sent")
    assert f"double_refund:{refund_id}" not in evaluate(stack).resolved

    with contextlib.closing(stack.sign_in("ada-admin")) as admin:
        page = admin.get("/admin/alerts", params={"state": "open"})
        assert f'action="/admin/alerts/{alert_id}/resolve"' in page.text
        done = admin.post(
            f"/admin/alerts/{alert_id}/resolve",
            data={"reason": "only re_2 reached the customer", "_csrf_token": csrf(page.text)},
        )
        assert done.status_code == 303, done.text[:300]
    ((_, state, _),) = alerts(stack, f"double_refund:{refund_id}")
    assert state == "resolved"
    wait_until(lambda: receivers.everywhere(refund_id, "RESOLVED"), timeout=30, what="the recovery sent")
    resolution = db_rows(stack, "SELECT resolution FROM alerts WHERE id = ?", alert_id)[0][0]
    assert "ada" in resolution
    assert resolution.endswith("only re_2 reached the customer")


def test_a_low_success_rate_alerts_and_resolves_when_the_window_passes(alerting: Stack) -> None:
    stack = alerting
    failed = [new_refund(stack, stack.payment(5_000, simulator_amount=500), 1_000) for _ in range(3)]
    for refund_id in failed:
        stack.wait_status(refund_id, "failed")
    wait_until(
        lambda: db_rows(stack, "SELECT SUM(n) FROM refund_stats WHERE res = 'm' AND outcome = 'failed'")[0][
            0
        ],
        timeout=30,
        what="the failures counted",
    )
    assert "success_rate:stripe-test" not in evaluate(stack, alert_success_min_refunds=1000).opened
    outcome = evaluate(stack, alert_success_min_refunds=3)
    assert "success_rate:stripe-test" in outcome.opened, outcome
    ((_, _, summary),) = alerts(stack, "success_rate:stripe-test")
    assert "refunds succeeded over the last 15 minutes (below 95.0%)" in summary
    # Half an hour later the window holds no outcome: nothing says the processor still fails.
    assert "success_rate:stripe-test" in evaluate(stack, minutes=30, alert_success_min_refunds=3).resolved


def test_reconciliation_breaks_older_than_the_limit_alert(alerting: Stack) -> None:
    stack = alerting
    foreign = line(gross="-12.34", net="-12.34", source_id=f"re_foreign{uuid.uuid4().hex[:8]}")
    imported(stack, report(stack, [foreign]))
    assert "breaks:stripe-test" not in evaluate(stack).opened  # new: within the limit
    outcome = evaluate(stack, minutes=3 * 24 * 60 + 5)
    assert "breaks:stripe-test" in outcome.opened, outcome
    ((_, _, summary),) = alerts(stack, "breaks:stripe-test")
    assert "reconciliation breaks on stripe-test open for more than 3 days" in summary
    assert "breaks:stripe-test" not in evaluate(stack, minutes=3 * 24 * 60 + 10).opened

    with stack.api() as client:
        found = client.get("/api/v1/reconciliation/breaks", params={"status": "open"}).json()["data"]

    async def resolve_all(rt: Runtime) -> None:
        person = Actor("user", "tests")
        for item in found:
            await resolve_break(
                rt, uuid.UUID(item["id"]), resolution="accepted", reason="known", actor=person
            )

    inproc(stack, resolve_all)
    assert "breaks:stripe-test" in evaluate(stack, minutes=3 * 24 * 60 + 10).resolved


def test_a_degraded_gateway_alerts_only_after_its_hold(alerting: Stack) -> None:
    stack = alerting
    stack.faults(latency_ms=60)
    try:
        slow = {"dashboard_slow_check_ms": 20, "alert_degraded_minutes": 10}
        wait_until(
            lambda: "gateway:stripe-test" in evaluate(stack, **slow).pending, timeout=30, what="a slow check"
        )
        ((_, state, summary),) = alerts(stack, "gateway:stripe-test")
        assert state == "pending"
        assert "degraded" in summary
        assert "gateway:stripe-test" in evaluate(stack, minutes=11, **slow).opened
    finally:
        stack.faults()
    wait_until(
        lambda: "gateway:stripe-test" in evaluate(stack, minutes=11, dashboard_slow_check_ms=2000).resolved,
        timeout=30,
        what="a fast check again",
    )


def test_a_recovery_names_what_was_announced_not_what_the_condition_became(
    alerting: Stack, receivers: Receivers
) -> None:
    """Down and degraded share one alert per connection: a gateway down, then only degraded, then well
    again recovers as "down" (what people were told), saying what it last looked like."""
    stack = alerting
    slow = {"dashboard_slow_check_ms": 20}
    earlier_messages_sent(stack)  # an earlier test's degraded alert and recovery
    with receivers.lock:
        posts_before = len(receivers.posts.get("/alerts", []))
    mails_before = {word: len(receivers.subjects(f"stripe-test is {word}")) for word in ("down", "degraded")}

    def summary_now() -> str:
        return str(next(a for a in alerts(stack, "gateway:stripe-test") if a[0] == alert_id)[2])

    fast = {"dashboard_slow_check_ms": 2000}

    def live() -> list[tuple[Any, ...]]:
        return [a for a in alerts(stack, "gateway:stripe-test") if a[1] in ("pending", "open")]

    # None live to begin with (an earlier test's clock may have left a pending one dated ahead).
    wait_until(lambda: evaluate(stack, **fast) is not None and not live(), timeout=30, what="none live")
    stack.faults(outage=True)
    try:
        # Degraded first while the live calls of the last minute still got through, then down.
        wait_until(lambda: "gateway:stripe-test" in evaluate(stack, **fast).opened, timeout=90, what="down")
        ((alert_id, _, summary),) = [a for a in alerts(stack, "gateway:stripe-test") if a[1] == "open"]
        assert "stripe-test is down" in summary
        stack.faults(latency_ms=60)  # it answers again, slowly: degraded
        wait_until(
            lambda: evaluate(stack, **slow) is not None and "is degraded" in summary_now(),
            timeout=30,
            what="the alert restated as degraded",
        )
        # The opening message, were it sent (or retried) now, still goes out as it was told: critical.
        told = inproc(stack, lambda rt: sending._messages(rt, {alert_id}))
        assert told[alert_id, "opened"].title.startswith("[refundwatch] CRITICAL: stripe-test is down")
        assert told[alert_id, "opened"].notify_type == apprise.NotifyType.FAILURE
    finally:
        stack.faults()
    wait_until(
        lambda: "gateway:stripe-test" in evaluate(stack, **fast).resolved,
        timeout=30,
        what="a fast check again",
    )
    wait_until(lambda: all_sent(stack, alert_id), timeout=30, what="every message sent")
    with receivers.lock:
        titles = [(p["title"], p["message"]) for p in receivers.posts["/alerts"][posts_before:]]
    (opened,) = [t for t, _ in titles if "CRITICAL" in t]
    assert opened.startswith("[refundwatch] CRITICAL: stripe-test is down"), titles
    ((resolved, message),) = [(t, m) for t, m in titles if "RESOLVED" in t]
    assert resolved.startswith("[refundwatch] RESOLVED: stripe-test is down"), titles
    assert "Last seen before it cleared: stripe-test is degraded" in message, message
    assert len(receivers.subjects("stripe-test is degraded")) == mails_before["degraded"]  # never told
    assert len(receivers.subjects("stripe-test is down")) == mails_before["down"] + 2  # alert, recovery


def test_a_degraded_gateway_that_goes_down_is_told_again_as_an_escalation(
    alerting: Stack, receivers: Receivers
) -> None:
    """Degraded (a warning) and down (critical) are one alert per connection, and a change of its
    condition sent nothing: a gateway that was degraded and then went down paged nobody. A rise in
    severity is now told (ESCALATED), and the recovery names the escalated condition."""
    stack = alerting
    earlier_messages_sent(stack)
    with receivers.lock:
        posts_before = len(receivers.posts.get("/alerts", []))
    fast = {"dashboard_slow_check_ms": 2000}
    slow = {"dashboard_slow_check_ms": 20, "alert_degraded_minutes": 0}
    wait_until(
        lambda: (
            evaluate(stack, **fast) is not None
            and not [a for a in alerts(stack, "gateway:stripe-test") if a[1] in ("pending", "open")]
        ),
        timeout=30,
        what="none live",
    )
    stack.faults(latency_ms=60)
    try:
        wait_until(
            lambda: "gateway:stripe-test" in evaluate(stack, **slow).opened, timeout=30, what="degraded"
        )
        ((alert_id, _, summary),) = [a for a in alerts(stack, "gateway:stripe-test") if a[1] == "open"]
        assert "is degraded" in summary
        stack.faults(outage=True)
        wait_until(
            lambda: "gateway:stripe-test" in evaluate(stack, **slow).escalated, timeout=90, what="down"
        )
        assert evaluate(stack, **slow).escalated == []  # told once
    finally:
        stack.faults()
    wait_until(
        lambda: "gateway:stripe-test" in evaluate(stack, **fast).resolved, timeout=60, what="well again"
    )
    wait_until(lambda: all_sent(stack, alert_id), timeout=30, what="every message sent")
    assert [event for event, *_ in messages(stack, alert_id)].count("escalated") >= 1
    with receivers.lock:
        titles = [p["title"] for p in receivers.posts["/alerts"][posts_before:]]
    assert [t for t in titles if t.startswith("[refundwatch] WARNING: stripe-test is degraded")], titles
    assert [t for t in titles if t.startswith("[refundwatch] ESCALATED to CRITICAL: stripe-test is down")], (
        titles
    )
    assert [t for t in titles if t.startswith("[refundwatch] RESOLVED: stripe-test is down")], titles
    assert len([t for t in titles if "ESCALATED" in t]) == 1, titles


def test_the_worker_checks_the_rules_and_tells_of_a_gateway_down_and_back(
    alerting: Stack, receivers: Receivers
) -> None:
    stack = alerting
    restart(stack, REFUNDWATCH_ALERT_INTERVAL_SECONDS="1")
    told_before = len(receivers.subjects("stripe-test is down"))  # an earlier test's down and back
    earlier = {a[0] for a in alerts(stack, "gateway:stripe-test")}  # and its alerts
    stack.faults(outage=True)
    try:
        wait_until(
            lambda: len(receivers.subjects("stripe-test is down")) > told_before, timeout=60, what="down"
        )
    finally:
        stack.faults()
    wait_until(
        lambda: len(receivers.subjects("stripe-test is down")) >= told_before + 2, timeout=60, what="back up"
    )
    down = [a for a in alerts(stack, "gateway:stripe-test") if a[0] not in earlier and "down" in a[2]]
    assert [a[1] for a in down] == ["resolved"]
    assert len(receivers.subjects("stripe-test is down")) == told_before + 2
    for proc in stack.procs.values():
        assert TOKEN not in proc.tail(10_000_000), proc.name
