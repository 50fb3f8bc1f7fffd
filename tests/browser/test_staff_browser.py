"""A real browser (Debian's Chromium through Playwright) signs in at the real provider and does each role's
work on the staff screens, with the strict Content-Security-Policy in force."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chromium import click_to, needs_chromium, wait_in_page, wait_live_and_settled
from stack import Stack, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    needs_chromium,
    pytest.mark.parametrize("stack", ["postgresql"], indirect=True),
]


class Page:
    """One browser context (its own cookies) with every console error and CSP violation kept."""

    def __init__(self, browser: object, stack: Stack, timezone: str | None = None) -> None:
        zone = {"timezone_id": timezone} if timezone else {}
        self.context = browser.new_context(base_url=stack.web_url, **zone)  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.stack = stack

    def _console(self, message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            self.problems.append(message.text)  # type: ignore[attr-defined]

    def sign_in(self, username: str, path: str = "/") -> None:
        self.page.goto(path)
        assert self.stack.idp is not None
        self.page.wait_for_url(re.compile(re.escape(self.stack.idp.url) + ".*"))
        self.page.fill("#username", username)
        self.page.fill("#password", "password")
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(re.escape(self.stack.web_url) + ".*"))

    def close(self) -> None:
        self.context.close()


def test_initiator_signs_in_creates_a_refund_and_signs_out(
    browser: object, stack: Stack, tmp_path: Path
) -> None:
    reference = stack.payment(20_000)
    tab = Page(browser, stack)
    try:
        tab.sign_in("ivan-initiator", f"/refunds/new?q={reference}")
        page = tab.page
        assert page.url.endswith(f"/refunds/new?q={reference}")
        assert "Ivan Initiator" in page.inner_text("header")  # the name from the ID token
        assert page.locator("text=Still refundable").count() == 1
        # An inline error first (over what is refundable), then a good refund; both through htmx.
        page.fill("input[name=amount]", "300.00")  # major units: more than the 200.00 EUR left
        page.click("#new-refund button[type=submit]")
        page.wait_for_selector("#form-error")
        assert "exceeds" in page.inner_text("#form-error")
        page.fill("input[name=amount]", "15")
        page.fill("textarea[name=note]", "customer returned one item")
        page.click("#new-refund button[type=submit]")
        page.wait_for_url(re.compile(r".*/refunds/[0-9a-f-]{36}$"))
        refund_id = page.url.rsplit("/", 1)[1]
        assert "customer returned one item" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "refund.png"), full_page=True)
        wait_until(lambda: stack.get(refund_id)["status"] == "succeeded", timeout=30, what="executed")
        # The role decides what is offered: an initiator has no approvals queue.
        assert page.locator("nav >> text=Approvals").count() == 0
        assert stack.idp is not None
        idp = re.compile(re.escape(stack.idp.url) + ".*")
        click_to(page, "header button:has-text('Sign out')", idp, what="Sign out")
        page.click("button:has-text('Yes, sign me out')")
        page.wait_for_url(re.compile(r".*/auth/signed-out$"))
        page.goto("/refunds")
        page.wait_for_url(idp)  # signed out: back to the provider
        assert not [p for p in tab.problems if "Content Security Policy" in p or "Refused" in p], tab.problems
    finally:
        tab.close()


def test_approver_approves_what_another_person_started(browser: object, stack: Stack) -> None:
    reference = stack.payment(100_000)
    created = stack.refund(reference, 60_000).json()  # at or above the threshold: waits for a person
    assert created["status"] == "pending_approval"
    tab = Page(browser, stack)
    try:
        tab.sign_in("amy-approver", "/approvals")
        page = tab.page
        assert page.locator(f"article[data-refund='{created['id']}']").count() == 1
        dialogs: list[str] = []
        page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.click(f"form[action='/refunds/{created['id']}/approve'] button")
        page.wait_for_url(re.compile(rf".*/refunds/{created['id']}$"))
        assert dialogs
        assert "600.00 EUR" in dialogs[0]
        wait_until(lambda: stack.get(created["id"])["status"] == "succeeded", timeout=30, what="executed")
        assert not [p for p in tab.problems if "Content Security Policy" in p], tab.problems
    finally:
        tab.close()


def test_viewer_sees_refunds_but_no_actions_and_outsider_gets_no_access(
    browser: object, stack: Stack
) -> None:
    created = stack.refund(stack.payment(5_000), 1_000).json()
    viewer = Page(browser, stack)
    try:
        viewer.sign_in("alice-viewer", f"/refunds/{created['id']}")
        assert "Timeline" in viewer.page.inner_text("main")
        assert viewer.page.locator("form.action").count() == 0
        assert viewer.page.goto("/refunds/new").status == 403  # type: ignore[union-attr]
    finally:
        viewer.close()
    outsider = Page(browser, stack)
    try:
        outsider.sign_in("oscar-outsider")
        assert "No access" in outsider.page.inner_text("main")
    finally:
        outsider.close()


# The refund page's live re-read of its actions, started as its poll starts it.
REDRAW = "htmx.trigger(document.querySelector('[hx-get$=\"/actions\"]'), 'rw-poll')"


def test_a_click_on_the_actions_wins_over_their_live_redraw(browser: object, stack: Stack) -> None:
    """The refund page re-reads its actions on every timeline change. A re-read whose answer came
    after a click on "New refund of this payment" was sent, and before the click's own answer,
    swapped the clicked link out and the click's navigation was lost (seen in CI). The click now
    aborts a re-read in flight, and no re-read starts while the click's request is out."""
    reference = stack.payment(20_000)
    response = stack.refund(reference, 1_000)
    assert response.status_code == 201, response.text
    refund_id = response.json()["id"]
    stack.wait_status(refund_id, "succeeded")
    tab = Page(browser, stack)
    held: dict[str, list[object]] = {"actions": [], "new": []}
    try:
        tab.sign_in("ivan-initiator", f"/refunds/{refund_id}")
        page = tab.page
        # The stream's opening re-read (or one for a late webhook) still in flight would make the
        # redraw below a dropped request (hx-sync this:abort), and nothing would be held.
        wait_live_and_settled(page)
        page.route(f"**/refunds/{refund_id}/actions", lambda route: held["actions"].append(route))  # noqa: PLW0108 - Playwright wants a Python function
        page.route("**/refunds/new?*", lambda route: held["new"].append(route))  # noqa: PLW0108
        page.evaluate(REDRAW)
        wait_in_page(page, lambda: bool(held["actions"]), timeout=10, what="the actions' re-read sent")
        failed: list[str] = []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.click("a.new-refund")
        wait_in_page(page, lambda: bool(held["new"]), timeout=10, what="the click's request sent")
        for route in held["actions"]:  # the re-read answers now, between the click and its answer
            route.continue_()  # type: ignore[attr-defined]
        page.evaluate(REDRAW)
        page.wait_for_timeout(300)
        assert len(held["actions"]) == 1  # no re-read started while the click was out
        held["new"][0].continue_()  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r".*/refunds/new\?q="), wait_until="commit", timeout=10_000)
        assert any(url.endswith("/actions") for url in failed), failed  # the re-read was aborted
    finally:
        page.unroute_all(behavior="ignoreErrors")
        tab.close()


def test_a_reason_being_typed_survives_the_actions_live_redraw(browser: object, stack: Stack) -> None:
    """The refund page re-reads its actions on every timeline change and when its stream
    (re)connects. A re-read replaced the reject form, so a reason being typed was lost, and the click
    that followed sent nothing (its required reason was empty; seen in CI). The actions wait while a
    field of theirs has the focus. Once the field is left, the actions are redrawn (holding them for
    as long as the text stayed left them stale), and the typed reason goes back into the new form."""
    refund_id = stack.refund(stack.payment(150_000), 123_456).json()["id"]  # waits for approval
    tab = Page(browser, stack)
    try:
        tab.sign_in("amy-approver", f"/refunds/{refund_id}")
        page = tab.page
        wait_live_and_settled(page)
        reason = page.locator("#refund-actions form.action-reject input[name=reason]")
        reason.fill("no return received")
        reads: list[str] = []
        page.on(
            "request", lambda request: reads.append(request.url) if request.url.endswith("/actions") else None
        )
        page.evaluate("document.querySelector('#refund-actions').dataset.drawn = 'before'")
        page.evaluate(REDRAW)  # typing: the field has the focus
        page.wait_for_timeout(500)
        assert reads == [], reads
        page.evaluate("document.activeElement.blur()")  # left: the held redraw comes
        wait_in_page(
            page,
            lambda: reads and page.evaluate("!document.querySelector('#refund-actions').dataset.drawn"),
            timeout=10,
            what="the actions redrawn once the field was left",
        )
        playwright_api.expect(reason).to_have_value("no return received")
        # A browser that does not focus the button it clicks (Safari) blurs the field at the press: a
        # redraw held meanwhile must wait for the press to end, or it takes the button and the click.
        button = "#refund-actions form.action-reject button"
        reason.focus()
        page.evaluate(REDRAW)  # held: the field has the focus
        seen = len(reads)
        press = "new PointerEvent('pointerdown', {bubbles: true})"
        page.evaluate(f"document.querySelector('{button}').dispatchEvent({press})")
        page.evaluate("document.activeElement.blur()")
        page.wait_for_timeout(500)
        assert len(reads) == seen, reads
        page.locator(button).click()
        stack.wait_status(refund_id, "rejected")
    finally:
        tab.close()
