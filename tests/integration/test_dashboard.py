"""The live dashboard against the real stack: panels computed from refunds the worker executed, the
rollups exact, filters in the URL, and live updates over SSE — including from another web process."""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from processors import PROCESSORS, kit
from refundwatch.dashboard.controllers import SESSION_RECHECK_SECONDS
from refundwatch.web.templating import digest
from stack import Stack, db_rows, second_web, wait_until

PANELS = ("success", "timing", "uptime", "feed", "wip", "outflow", "failures")


@contextlib.contextmanager
def signed_in(stack: Stack, user: str = "alice-viewer") -> Iterator[httpx2.Client]:
    client = stack.sign_in(user)
    try:
        yield client
    finally:
        client.close()


def panel(client: httpx2.Client, name: str, **params: str) -> str:
    response = client.get(f"/dashboard/panels/{name}", params=params)
    assert response.status_code == 200, response.text[:300]
    return response.text


@pytest.fixture(scope="module")
def outcomes(stack: Stack) -> dict[str, list[str]]:
    """Three refunds that succeed and one the processor refuses (it knows a smaller payment)."""
    ids: dict[str, list[str]] = {"succeeded": [], "failed": []}
    for _ in range(3):
        response = stack.refund(stack.payment(5_000), 1_000)
        ids["succeeded"].append(response.json()["id"])
    refused = stack.refund(stack.payment(5_000, simulator_amount=500), 1_000)
    ids["failed"].append(refused.json()["id"])
    for status, refund_ids in ids.items():
        for refund_id in refund_ids:
            stack.wait_status(refund_id, status)
    return ids


def stats(stack: Stack, res: str = "m") -> dict[str, int]:
    rows = db_rows(stack, f"SELECT outcome, SUM(n) FROM refund_stats WHERE res = '{res}' GROUP BY outcome")
    return {outcome: int(n) for outcome, n in rows}


def test_rollups_count_every_outcome_exactly_once(stack: Stack, outcomes: dict[str, list[str]]) -> None:
    expected = {
        status: db_rows(stack, f"SELECT COUNT(*) FROM refunds WHERE status = '{status}'")[0][0]
        for status in ("succeeded", "failed")
    }
    wait_until(
        lambda: (
            stats(stack).get("succeeded") == expected["succeeded"]
            and stats(stack).get("failed") == expected["failed"]
        ),
        timeout=15,
        what="the worker folds the outbox into the rollups",
    )
    assert stats(stack, "h") == stats(stack, "m") == stats(stack, "d"), "every resolution counts the same"
    wait_until(
        lambda: db_rows(stack, "SELECT COUNT(*) FROM rollup_outbox")[0][0] == 0,
        timeout=10,
        what="outbox drained",
    )
    histogram = db_rows(
        stack,
        "SELECT SUM(" + " + ".join(f"f{i:02d}" for i in range(16)) + ") FROM refund_stats "
        "WHERE res = 'm' AND outcome IN ('succeeded', 'failed', 'reversed')",
    )[0][0]
    assert histogram == expected["succeeded"] + expected["failed"], "every outcome has its time"


def test_the_dashboard_shows_numbers_computed_from_executed_refunds(
    stack: Stack, outcomes: dict[str, list[str]]
) -> None:
    with signed_in(stack) as client:
        wait_until(lambda: {"succeeded", "failed"} <= set(stats(stack)), timeout=15, what="rollups folded")
        succeeded = int(stats(stack)["succeeded"])
        failed = int(stats(stack)["failed"])
        rate = f"{succeeded / (succeeded + failed) * 100:.1f}%"
        page = client.get("/")
        assert page.status_code == 200
        html = page.text
        for name in PANELS:
            assert f'id="panel-{name}"' in html
        assert rate in html, f"success rate {rate} on the page"
        assert f"{succeeded} succeeded · {failed} failed" in html
        for range_key in ("15m", "1h", "24h", "7d", "30d"):  # minute, hour and stitched day rows agree
            assert f"{succeeded} succeeded · {failed} failed" in panel(client, "success", range=range_key)
        assert "stripe-test" in html
        # processing time: percentiles with units, and a chart with a text alternative
        timing = panel(client, "timing")
        assert re.search(r"Request → final.*?\d+ ms", timing, re.S), timing
        assert "<desc" in timing
        assert 'role="img"' in timing
        # failures link to the matching refunds
        failures = panel(client, "failures")
        assert "amount_exceeds_refundable" in failures
        assert "/refunds?status=failed&amp;status=reversed&amp;error=amount_exceeds_refundable" in failures
        # the feed lists the newest refunds with their status
        feed = panel(client, "feed")
        for refund_id in outcomes["succeeded"]:
            assert refund_id in feed


def test_gateway_uptime_from_health_checks(stack: Stack) -> None:
    with signed_in(stack) as client:
        wait_until(lambda: "state-up" in panel(client, "uptime"), timeout=15, what="a health check ran")
        html = panel(client, "uptime")
        # A stack minutes old: one figure, "since" its first check, not the same one for 24 h, 7 d and 30 d.
        # (in UTC as sent; the viewer's browser shows it in their own zone, the UTC time on hover)
        since = (
            r'<dt>since <time datetime="[^"]+" title="fewer than 24h [^"]+ UTC" data-local="hm">'
            r"\d\d:\d\d UTC</time></dt><dd>\d+\.\d\d%</dd>"
        )
        assert len(re.findall(since, html)) == 1, html
        assert not re.search(r"<dt>(24h|7d|30d)</dt>", html), html
        assert "Last check" in html
        # The latency line is drawn from three points on, and says why it is missing before that.
        assert "<polyline" in html or re.search(r"No line yet: .*; a line needs (at least )?3\.", html)


def test_filters_live_in_the_url_and_apply_to_every_panel(
    stack: Stack, outcomes: dict[str, list[str]]
) -> None:
    with signed_in(stack) as client:
        page = client.get("/", params={"range": "24h", "connection": "stripe-test"})
        assert page.status_code == 200
        assert 'aria-current="true" title="Last 24 hours">24h' in page.text
        assert "/dashboard/stream?range=24h&amp;connection=stripe-test" in page.text
        assert "/dashboard/panels/feed?range=24h&amp;connection=stripe-test" in page.text
        # a stale shared link still opens, with the defaults
        stale = client.get("/", params={"range": "1y", "connection": "gone"})
        assert stale.status_code == 200
        assert "/dashboard/stream?range=1h" in stale.text
        for name in PANELS:
            for range_key in ("15m", "1h", "24h", "7d", "30d"):
                panel(client, name, range=range_key, connection="stripe-test")
        assert client.get("/dashboard/panels/nope").status_code == 404


def test_the_dashboard_needs_sign_in(stack: Stack) -> None:
    with httpx2.Client(base_url=stack.web_url) as anonymous:
        for path in ("/", "/dashboard/panels/success", "/dashboard/stream"):
            response = anonymous.get(path)
            assert response.status_code in (302, 303), (path, response.status_code)
            assert "/auth/login" in response.headers["location"]


class SseReader:
    """Reads a live SSE stream in a thread, keeping every event (name, data, arrival time)."""

    def __init__(self, client: httpx2.Client, url: str) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(client, url), daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _run(self, client: httpx2.Client, url: str) -> None:
        with contextlib.suppress(httpx2.TransportError):  # the server going away ends the reading
            self._read(client, url)

    def _read(self, client: httpx2.Client, url: str) -> None:
        with client.stream("GET", url, timeout=httpx2.Timeout(60, read=None)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            self.opened.set()
            name, data = "message", []
            for line in response.iter_lines():
                if self._stop:
                    return
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line == "" and data:
                    self.events.append((name, "\n".join(data), time.monotonic()))
                    name, data = "message", []

    def seen(self, event: str, needle: str) -> bool:
        return any(name == event and needle in data for name, data, _ in self.events)

    def stop(self) -> None:
        self._stop = True


def test_a_stream_ends_after_sign_out_even_while_events_keep_coming(stack: Stack) -> None:
    """The stream re-checked its session only when nothing had come for a keep-alive interval (15 s):
    with refunds changing more often than that, a browser signed out (or whose session ended) kept
    receiving the live dashboard for as long as the traffic lasted. The check is due every
    SESSION_RECHECK_SECONDS (60) whatever the stream carries. Backend-independent: one run is enough."""
    if stack.backend != "sqlite":
        pytest.skip("the stream's session check does not depend on the database (it takes a minute)")
    recheck = SESSION_RECHECK_SECONDS
    reference = stack.payment(1_000_000)
    with signed_in(stack) as client:
        reader = SseReader(client, f"{stack.web_url}/dashboard/stream?range=15m")
        session_id = client.cookies.get("rw_session", domain="127.0.0.1")
        with httpx2.Client(base_url=stack.web_url, cookies={"rw_session": session_id}) as same_browser:
            page = same_browser.get("/auth/logout")
            token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
            assert token, page.text[:300]
            out = same_browser.post("/auth/logout", data={"_csrf_token": token.group(1)})
            assert out.status_code == 303
        signed_out = time.monotonic()
        try:
            while time.monotonic() - signed_out < recheck + 20 and reader._thread.is_alive():
                stack.refund(reference, 100)  # an event at least every couple of seconds
                time.sleep(1.5)
            assert not reader._thread.is_alive(), "the stream still runs after the session ended"
            late = [at for _, _, at in reader.events if at - signed_out > recheck + 10]
            assert late == []
        finally:
            reader.stop()


def test_a_busy_stream_keeps_its_view_watched(stack: Stack) -> None:
    """The stream renewed its view's watch (45 s) only on keep-alives, i.e. after 15 s without an
    event: with refunds changing every second the watch lapsed after 45 s, the broadcaster stopped
    drawing that view, and the live feed froze for 15 s, every minute. Backend-independent."""
    if stack.backend != "sqlite":
        pytest.skip("the stream's watch does not depend on the database (it takes over a minute)")
    reference = stack.payment(1_000_000)
    with signed_in(stack) as client:
        reader = SseReader(client, f"{stack.web_url}/dashboard/stream?range=15m")
        started = time.monotonic()
        try:
            while time.monotonic() - started < 70:
                stack.refund(reference, 100)
                time.sleep(1.0)
        finally:
            reader.stop()
    feed = [at for name, _, at in reader.events if name == "feed"]
    assert len(feed) > 10
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(feed) if b - a > 10]
    assert gaps == [], f"the live feed stood still for {gaps} s while refunds kept changing"


@pytest.mark.parametrize("where", ["same process", "another web process"])
def test_live_feed_over_sse_follows_a_refund_to_its_final_state(stack: Stack, where: str) -> None:
    """The browser's web process need not be the one that handled the change (or rendered it)."""
    with signed_in(stack) as client, contextlib.ExitStack() as cleanup:
        base = stack.web_url
        if where == "another web process":
            base = cleanup.enter_context(second_web(stack))
            client.base_url = httpx2.URL(base)  # the session cookie is valid on every process
        reader = SseReader(client, f"{base}/dashboard/stream?range=15m")
        cleanup.callback(reader.stop)
        stack.faults(latency_ms=300)  # slow enough that queued/submitting show before the end
        try:
            refund_id = stack.refund(stack.payment(2_000), 700).json()["id"]
            stack.wait_status(refund_id, "succeeded")
        finally:
            stack.faults()
        wait_until(lambda: reader.seen("feed", refund_id), timeout=10, what="the new refund in the feed")
        wait_until(
            lambda: any(
                name == "feed"
                and refund_id in data
                and re.search(rf"{refund_id}.*?status-succeeded", data, re.S)
                for name, data, _ in reader.events
            ),
            timeout=10,
            what="the feed shows it succeeded",
        )
        wait_until(
            lambda: reader.seen("wip", "Work in progress"), timeout=20, what="work in progress redrawn"
        )


def test_a_refund_page_timeline_updates_live(stack: Stack) -> None:
    """The stream starts with the timeline as it is (so nothing changed before the subscription is
    missed), then redraws it as the refund moves: the refund is created while no worker runs, so the
    move comes after the subscription whatever the machine's load."""
    stack.stop_worker()
    try:
        refund_id = stack.refund(stack.payment(2_000), 300).json()["id"]
        with signed_in(stack) as client:
            reader = SseReader(client, f"{stack.web_url}/dashboard/stream?refund={refund_id}")
            try:
                wait_until(lambda: reader.seen("timeline", refund_id), timeout=10, what="the timeline now")
                stack.start_worker()
                stack.wait_status(refund_id, "succeeded")
                # The processor's webhook can settle the refund before the worker records its own
                # exchange (as an ignored report): each is its own redraw, so wait for one with both.
                wait_until(
                    lambda: any(
                        name == "timeline" and "status-succeeded" in data and "POST /v1/refunds" in data
                        for name, data, _ in reader.events
                    ),
                    timeout=10,
                    what="timeline redrawn live",
                )
            finally:
                reader.stop()
    finally:
        if not stack.procs["worker"].alive:
            stack.start_worker()
    timelines = [data for name, data, _ in reader.events if name == "timeline"]
    assert "status-succeeded" not in timelines[0], "the first is the timeline as it was on connecting"
    assert "POST /v1/refunds" in timelines[-1], "the processor exchange is on the timeline"
    assert "Audit entries" in timelines[-1]


def test_a_refund_page_names_the_timeline_it_shows_so_a_reconnect_resends_only_a_changed_one(
    stack: Stack,
) -> None:
    refund_id = stack.refund(stack.payment(2_000), 300).json()["id"]
    stack.wait_status(refund_id, "succeeded")
    with signed_in(stack) as client:
        # The processor's webhook may still add to the timeline after the answer made it succeeded: a page
        # counts only when the timeline read the same just before and just after it.
        deadline = time.monotonic() + 15
        while True:
            before = client.get(f"/refunds/{refund_id}/timeline").text
            page = client.get(f"/refunds/{refund_id}").text
            timeline = client.get(f"/refunds/{refund_id}/timeline").text
            if before == timeline or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        shown = re.search(r'sse-connect="/dashboard/stream\?refund=[0-9a-f-]+&amp;shown=([0-9a-f]+)"', page)
        assert shown is not None, page
    # The stream compares its timeline with this digest: the same render, so nothing is sent again.
    assert shown.group(1) == digest(timeline)


@pytest.mark.parametrize("processor", PROCESSORS)
def test_an_outage_shows_as_down_and_refunds_wait_for_the_processor_instead_of_failing(
    stack: Stack, processor: str
) -> None:
    """The done-means scenario: the uptime panel shows the outage within seconds; refunds in flight are
    held back (the worker's circuit breaker) rather than spending their attempts, and complete after."""
    connection = kit(processor).connection

    def uptime() -> str:
        return panel(client, "uptime", connection=connection)

    with signed_in(stack) as client:
        # Created while no worker runs, so their first attempts fail together and open the circuit:
        # created one by one on a loaded machine, the first could spend all its attempts alone.
        stack.stop_worker()
        stack.faults(processor, outage=True)
        try:
            ids = [
                stack.refund(stack.payment(3_000, processor=processor), 500).json()["id"] for _ in range(6)
            ]
            stack.start_worker()
            wait_until(lambda: "state-down" in uptime(), timeout=10, what="uptime shows down")
            time.sleep(6)  # four attempts (the stack's limit) of at most 1 s backoff would be over by now
            statuses = {stack.get(refund_id)["status"] for refund_id in ids}
            assert statuses <= {"queued", "submitting"}, statuses
        finally:
            stack.faults(processor)
            if not stack.procs["worker"].alive:
                stack.start_worker()
        for refund_id in ids:
            stack.wait_status(refund_id, "succeeded", timeout=40)
        wait_until(lambda: "state-down" not in uptime(), timeout=15, what="back up")
    for refund_id in ids:
        executed = [
            row
            for row in stack.ledger()
            if row["idempotency_key"].startswith(f"rw_{refund_id.replace('-', '')}")
        ]
        assert len(executed) == 1, executed


def test_bursts_are_coalesced_into_at_most_one_redraw_per_interval(stack: Stack) -> None:
    """Forty refunds at once must not mean forty redraws per panel: at most one per ~250 ms (the feed:
    ~100 ms), whatever the number of changes."""
    with signed_in(stack) as client:
        reader = SseReader(client, f"{stack.web_url}/dashboard/stream?range=15m")
        try:
            references = [stack.payment(2_000) for _ in range(40)]
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(lambda ref: stack.refund(ref, 100).json()["id"], references))
            for refund_id in ids:
                stack.wait_status(refund_id, "succeeded")
            wait_until(lambda: reader.seen("feed", ids[-1]), timeout=10, what="the last refund in the feed")
            elapsed = time.monotonic() - started
        finally:
            reader.stop()
    events = [(name, at) for name, _data, at in reader.events if at >= started]
    for name, interval in (("wip", 0.25), ("feed", 0.1)):
        count = sum(1 for event, _at in events if event == name)
        # one redraw per interval at most, plus the leading one and the slow-timer redraws
        assert 1 <= count <= elapsed / interval + 3, (name, count, elapsed)
    changes = 40 * 3  # queued, submitting, succeeded for each
    assert sum(1 for event, _at in events if event == "feed") < changes / 2, "coalesced, not one per change"
