"""The live dashboard in a real browser (Debian's Chromium through Playwright), signed in at the real
provider, under the strict Content-Security-Policy: numbers computed from refunds the worker executed,
live updates over SSE without a reload (from this web process or another one), the polling fallback
when the stream is down, keyboard reach and shareable URLs, and a refund page's live timeline."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chromium import needs_chromium, wait_in_page
from stack import Stack, db_rows, second_web, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
VIEWPORT = {"width": 1366, "height": 900}
pytestmark = [
    needs_chromium,
    pytest.mark.parametrize("stack", ["postgresql"], indirect=True),
]
DURATION = r"(\d+(\.\d)? (ms|s|min|h|d))"


class Tab:
    """One browser context (its own cookies) on one web process, keeping every console error, uncaught
    exception and Content-Security-Policy violation, and every main-frame navigation."""

    def __init__(
        self, browser: Any, stack: Stack, base_url: str | None = None, timezone: str | None = None
    ) -> None:
        self.stack = stack
        self.base_url = base_url or stack.web_url
        zone = {"timezone_id": timezone} if timezone else {}
        self.context = browser.new_context(base_url=self.base_url, viewport=VIEWPORT, **zone)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.navigations: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on(
            "framenavigated",
            lambda f: self.navigations.append(f.url) if f == self.page.main_frame else None,
        )

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url") or ""
        if where.endswith("/favicon.ico"):
            return  # Chromium asks every origin for one; neither the app nor the provider has one
        self.errors.append(f"{message.text} ({where})" if where else message.text)

    def sign_in(self, username: str = "alice-viewer", path: str = "/") -> None:
        assert self.stack.idp is not None
        self.page.goto(path)
        self.page.wait_for_url(re.compile(re.escape(self.stack.idp.url) + ".*"))
        self.page.fill("#username", username)
        self.page.fill("#password", "password")
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(re.escape(self.stack.web_url) + ".*"))

    def wait_live(self, timeout: float = 10) -> None:
        expect(self.page.locator("#live-state")).to_have_text("Live", timeout=timeout * 1000)

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e or "Refused to" in e]

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def tab(
    browser: Any, stack: Stack, base_url: str | None = None, timezone: str | None = None
) -> Iterator[Tab]:
    opened = Tab(browser, stack, base_url, timezone)
    try:
        yield opened
    finally:
        opened.close()


def outcomes_in_db(stack: Stack) -> dict[str, int]:
    rows = db_rows(
        stack,
        "SELECT status, COUNT(*) FROM refunds WHERE status IN ('succeeded', 'failed', 'reversed') "
        "GROUP BY status",
    )
    counts = {"succeeded": 0, "failed": 0, "reversed": 0}
    counts.update({status: int(n) for status, n in rows})
    return counts


def record_feed_statuses(page: Any, refund_id: str) -> None:
    """Keep, in the page, every status the feed shows for ``refund_id`` (as it is swapped in)."""
    page.evaluate(
        """(id) => {
            window.__seen = [];
            const panel = document.getElementById("panel-feed");
            const record = () => {
                const status = panel.querySelector(`a[href="/refunds/${id}"] .status`);
                const text = status && status.textContent.trim();
                if (text && window.__seen[window.__seen.length - 1] !== text) { window.__seen.push(text); }
            };
            const options = {childList: true, subtree: true, characterData: true};
            new MutationObserver(record).observe(panel, options);
            record();
        }""",
        refund_id,
    )


def follow_refund_live(stack: Stack, page: Any) -> str:
    """On an open, live dashboard: a slow refund appears in the feed and reaches its final state
    without the page reloading. Returns the refund id."""
    page.evaluate("window.__marker = 1")
    loads_before = page.evaluate("performance.getEntriesByType('navigation').length")
    stack.faults(latency_ms=500)  # slow enough that queued/submitting show before the end
    try:
        reference = stack.payment(2_000)
        created = stack.refund(reference, 700)
        assert created.status_code == 201, created.text
        refund_id: str = created.json()["id"]
        record_feed_statuses(page, refund_id)
        status = page.locator(f'#panel-feed a[href="/refunds/{refund_id}"] .status')
        expect(status).to_have_count(1, timeout=10_000)
        expect(status).to_have_text("succeeded", timeout=20_000)
    finally:
        stack.faults()
    assert stack.get(refund_id)["status"] == "succeeded"
    seen = page.evaluate("window.__seen")
    assert seen[-1] == "succeeded", seen
    assert seen[0] in ("queued", "submitting"), f"the feed showed it in progress first: {seen}"
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == loads_before
    return refund_id


# ------------------------------------------------------------------------------------------ tests


def test_panels_show_numbers_computed_from_executed_refunds(browser: Any, stack: Stack) -> None:
    created = [stack.refund(stack.payment(5_000), 1_000).json()["id"] for _ in range(3)]
    refused = stack.refund(stack.payment(5_000, simulator_amount=500), 1_000).json()["id"]
    for refund_id in created:
        stack.wait_status(refund_id, "succeeded")
    stack.wait_status(refused, "failed")
    counts = outcomes_in_db(stack)
    assert counts["succeeded"] >= 3
    assert counts["failed"] >= 1
    finished = sum(counts.values())
    rate = f"{counts['succeeded'] / finished * 100:.1f}%"
    sub = f"{counts['succeeded']} succeeded · {counts['failed']} failed · {counts['reversed']} reversed"

    with tab(browser, stack) as t:
        t.sign_in("alice-viewer")
        page = t.page
        # The worker folds the outcomes into the rollups within about a second; a health check runs
        # every second on this connection.
        wait_until(
            lambda: sub in page.request.get("/dashboard/panels/success").text(),
            timeout=15,
            what="the rollups count every outcome",
        )
        wait_until(
            lambda: "state-up" in page.request.get("/dashboard/panels/uptime").text(),
            timeout=15,
            what="a health check ran",
        )
        page.goto("/")
        t.wait_live()

        success = page.locator("#panel-success")
        expect(success.locator(".big .value")).to_have_text(rate)
        expect(success.locator("p.sub")).to_have_text(sub)
        row = success.locator("table.mini tbody tr", has_text="stripe-test")
        expect(row.locator("td").first).to_have_text(rate)
        expect(row.locator("td").nth(1)).to_have_text(str(finished))

        timing = page.locator("#panel-timing")
        final_row = timing.locator("table.quantiles tbody tr", has_text="Request → final")
        expect(final_row.locator("th")).to_contain_text(f"({finished})")
        for cell in final_row.locator("td").all():  # p50, p95, p99, each a number with a unit
            assert re.fullmatch(DURATION, cell.inner_text().strip()), cell.inner_text()
        accepted_p50 = timing.locator("table.quantiles tbody tr", has_text="Request → accepted").locator("td")
        assert re.fullmatch(DURATION, accepted_p50.first.inner_text().strip())
        expect(timing.locator("svg[role=img]")).to_have_count(1)

        gateway = page.locator("#panel-uptime article.gateway")
        expect(gateway).to_have_count(1)
        badge = (gateway.locator(".state-badge").text_content() or "").strip()  # CSS shows it upper-case
        assert badge in ("up", "degraded", "down"), badge
        assert f"state-{badge}" in (gateway.get_attribute("class") or "")
        expect(gateway.locator("strong")).to_have_text("stripe-test")
        uptimes = gateway.locator("dl.uptimes div")
        expect(uptimes).to_have_count(1)  # minutes of checks: one figure since the first, not three
        assert re.fullmatch(r"since \d\d:\d\d", uptimes.locator("dt").inner_text().strip())  # local clock
        day = uptimes.locator("dd")
        assert re.fullmatch(r"\d{1,3}\.\d\d%", day.inner_text().strip()), day.inner_text()
        expect(gateway.locator("p.sub")).to_contain_text("Last check")

        assert "amount_exceeds_refundable" in page.locator("#panel-failures").inner_text()
        for refund_id in [*created, refused]:
            expect(page.locator(f'#panel-feed a[href="/refunds/{refund_id}"]')).to_have_count(1)
        assert not t.errors, t.errors  # no console errors, no CSP violations


def test_a_new_refund_reaches_its_final_state_in_the_feed_without_a_reload(
    browser: Any, stack: Stack
) -> None:
    with tab(browser, stack, timezone="Asia/Tokyo") as t:
        t.sign_in("alice-viewer")
        t.wait_live()
        navigations = len(t.navigations)
        before = t.page.locator("#last-updated").get_attribute("datetime")
        follow_refund_live(stack, t.page)
        assert len(t.navigations) == navigations, t.navigations
        after = t.page.locator("#last-updated").get_attribute("datetime")
        assert after != before, "the updated time did not move"
        # Pushed panels too show the viewer's clock (Tokyo: UTC+9), UTC on hover.
        expect(t.page.locator("#panel-feed time[data-local]")).to_have_count(0)
        shown = t.page.locator("#panel-feed time[data-localised]").first
        created = re.search(
            r"created \d{4}-\d\d-\d\d (\d\d):(\d\d:\d\d) UTC", shown.get_attribute("title") or ""
        )
        assert created, shown.get_attribute("title")
        assert shown.inner_text() == f"{(int(created.group(1)) + 9) % 24:02d}:{created.group(2)}"
        updated = t.page.locator("#last-updated")
        assert (updated.get_attribute("title") or "").endswith(" UTC")
        hour = int((updated.get_attribute("title") or "")[11:13])
        assert updated.inner_text()[:2] == f"{(hour + 9) % 24:02d}"
        expect(t.page.locator("#live-state")).to_have_text("Live")
        assert not t.errors, t.errors


def test_live_updates_reach_a_browser_on_another_web_process(browser: Any, stack: Stack) -> None:
    with second_web(stack) as other, tab(browser, stack) as first:
        # The provider only knows the first process's redirect URI; the session lives in Redis, which
        # every process shares, so its cookie signs the browser in on the second one as well.
        first.sign_in("alice-viewer")
        session = next(c for c in first.context.cookies() if c["name"] == "rw_session")
        with tab(browser, stack, base_url=other) as t:
            t.context.add_cookies([{"name": "rw_session", "value": session["value"], "url": other}])
            response = t.page.goto("/")
            assert response is not None
            assert response.status == 200
            assert t.page.url.startswith(other)
            t.wait_live()
            navigations = len(t.navigations)
            follow_refund_live(stack, t.page)  # created through the API on the first process
            assert len(t.navigations) == navigations, t.navigations
            assert t.page.url.startswith(other)
            assert not t.errors, t.errors


def test_when_the_stream_is_down_the_page_polls(browser: Any, stack: Stack) -> None:
    with tab(browser, stack) as t:
        streams: list[str] = []

        def refuse(route: Any) -> None:
            streams.append(route.request.url)
            route.abort()

        t.page.route("**/dashboard/stream**", refuse)
        t.sign_in("alice-viewer")
        expect(t.page.locator("#live-state")).to_have_text("Reconnecting… refreshing every 10 s")
        assert "is-down" in (t.page.locator("#live-status").get_attribute("class") or "")
        assert streams, "the page tried to open the stream"
        t.page.evaluate("window.__marker = 1")
        before = t.page.locator("#last-updated").get_attribute("datetime")
        started = time.monotonic()
        refund_id = stack.refund(stack.payment(2_000), 500).json()["id"]
        stack.wait_status(refund_id, "succeeded")
        status = t.page.locator(f'#panel-feed a[href="/refunds/{refund_id}"] .status')
        expect(status).to_have_text("succeeded", timeout=15_000)  # the poll runs every 10 s
        assert t.page.locator("#last-updated").get_attribute("datetime") != before  # a polled swap stamps it
        elapsed = time.monotonic() - started
        assert t.page.evaluate("window.__marker") == 1, "the page was reloaded"
        assert elapsed < 15, elapsed
        # Only the stream is refused: that is the only error there is.
        # (htmx logs each sseError's Event object as "[object Event]").
        unexpected = [e for e in t.errors if "ERR_FAILED" not in e and not e.startswith("[object Event]")]
        assert not unexpected, t.errors
        assert not t.csp_violations(), t.errors


def test_range_links_and_connection_filter_work_from_the_keyboard(browser: Any, stack: Stack) -> None:
    with tab(browser, stack) as t:
        t.sign_in("alice-viewer")
        page = t.page
        t.wait_live()
        page.locator("body").focus()
        reached: list[str] = []
        for _ in range(30):
            page.keyboard.press("Tab")
            reached.append(
                page.evaluate(
                    """() => { const e = document.activeElement;
                        return e.id ? '#' + e.id : e.tagName.toLowerCase() + ':' + e.textContent.trim(); }"""
                )
            )
            if "#connection-pick" in reached:
                break
        for key in ("15m", "1h", "24h", "7d", "30d"):
            assert f"a:{key}" in reached, reached
        assert "#connection-pick" in reached, reached
        assert reached.index("a:15m") < reached.index("a:30d") < reached.index("#connection-pick")

        # A range link, followed with Enter, puts the range in the URL (htmx-boosted, so no reload).
        page.locator(".ranges a", has_text="24h").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/\?range=24h$"))
        expect(page.locator(".ranges a[aria-current]")).to_have_text("24h")
        expect(page.locator("#panel-success .window")).to_have_text("last 24 hours")
        t.wait_live()
        assert "range=24h" in (page.locator("#dashboard").get_attribute("sse-connect") or "")

        # The connection select: keyboard choice, Tab to the button, Enter.
        page.locator("#connection-pick").focus()
        page.keyboard.press("ArrowDown")
        expect(page.locator("#connection-pick")).to_have_value("stripe-test")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "Show"
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/\?range=24h&connection=stripe-test$"))
        expect(page.locator("h1")).to_have_text("Refunds · stripe-test")
        shared = page.url
        assert not t.errors, t.errors

    # The view is shareable: the same URL in a fresh browser opens the same view.
    with tab(browser, stack) as fresh:
        fresh.sign_in("ada-admin", shared.removeprefix(stack.web_url))
        page = fresh.page
        assert page.url == shared
        expect(page.locator(".ranges a[aria-current]")).to_have_text("24h")
        expect(page.locator("#connection-pick")).to_have_value("stripe-test")
        fresh.wait_live()
        assert not fresh.errors, fresh.errors


def test_a_refund_page_timeline_updates_live(browser: Any, stack: Stack) -> None:
    with tab(browser, stack) as t:
        t.sign_in("alice-viewer")
        # The processor answers "pending" and settles 4 s later: time to open the page in between.
        stack.faults(pending_rate=1.0, settle_ms=4000)
        try:
            refund_id = stack.refund(stack.payment(3_000), 900).json()["id"]
            stack.wait_status(refund_id, "processing")
            t.page.goto(f"/refunds/{refund_id}")
            body = t.page.locator("#timeline-body")
            live = t.page.locator("[sse-connect]", has=body)
            expect(live).to_have_count(1)
            # It names the timeline it shows, so a (re)connect sends it again only if it changed.
            assert re.fullmatch(
                rf"/dashboard/stream\?refund={refund_id}&shown=[0-9a-f]{{16}}",
                live.get_attribute("sse-connect") or "",
            )
            current = body.locator(".facts .status")  # the summary is part of the live fragment
            expect(current).to_have_attribute("title", "processing")  # the label reads, the word is kept
            t.wait_live()
            t.page.evaluate("window.__marker = 1")
            expect(current).to_have_attribute("title", "succeeded", timeout=15_000)
            expect(current).to_have_text("Refunded")
        finally:
            stack.faults()
        assert t.page.evaluate("window.__marker") == 1, "the page was reloaded"
        steps = body.locator("ol.timeline > li")
        assert steps.count() >= 4, steps.all_inner_texts()  # requested … processing → succeeded
        expect(steps.last.locator(".status").last).to_have_attribute("title", "succeeded")
        expect(body).to_contain_text("POST /v1/refunds")  # the processor exchange
        assert not t.errors, t.errors


@pytest.mark.parametrize("answer", ["navigates", "fails"])
def test_a_live_update_waits_for_a_click_made_in_its_panel(browser: Any, stack: Stack, answer: str) -> None:
    """htmx forgets the request of an element it removes. An update pushed into the feed panel between
    a click on one of its links and the click's answer swapped the link out, and the navigation never
    came (the refund actions' re-read had the same race). The update is held while the click is out;
    if the click ends without leaving the page, the panel reads itself afresh."""
    first = stack.refund(stack.payment(4_000), 400).json()["id"]
    stack.wait_status(first, "succeeded")
    with tab(browser, stack) as t:
        t.sign_in("alice-viewer")
        t.wait_live()
        page = t.page
        link = f'#panel-feed a[href="/refunds/{first}"]'
        page.wait_for_selector(link)
        page.evaluate(
            "window.__feedPushes = 0; document.body.addEventListener('htmx:sseBeforeMessage',"
            " e => { if (e.target.id === 'panel-feed') window.__feedPushes++ })"
        )
        held: list[Any] = []
        page.route(f"**/refunds/{first}", lambda route: held.append(route))  # noqa: PLW0108
        try:
            page.click(link)
            wait_in_page(page, lambda: bool(held), timeout=10, what="the click's request")
            second = stack.refund(stack.payment(5_000), 500).json()["id"]  # the feed is pushed an update
            wait_in_page(
                page, lambda: page.evaluate("window.__feedPushes") > 0, timeout=15, what="a feed update"
            )
            expect(page.locator(link)).to_have_count(1)  # held: the clicked link is still there
            if answer == "navigates":
                held[0].continue_()
                page.wait_for_url(re.compile(rf".*/refunds/{first}$"), wait_until="commit", timeout=10_000)
                expect(page.locator("#timeline-body")).to_be_visible()
            else:
                held[0].abort()  # the click went nowhere: the panel catches up by itself
                expect(page.locator(f'#panel-feed a[href="/refunds/{second}"]')).to_have_count(
                    1, timeout=10_000
                )
                assert page.url.rstrip("/") == t.base_url.rstrip("/"), page.url
        finally:
            page.unroute_all(behavior="ignoreErrors")
        # htmx logs the aborted request itself (the browser's failed load, htmx's sendError).
        expected = ("htmx:afterRequest", "htmx:sendError")
        errors = [
            e for e in t.errors if answer != "fails" or not (e.startswith(expected) or "ERR_FAILED" in e)
        ]
        assert not errors, errors
