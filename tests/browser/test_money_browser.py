"""In Chromium: the new-refund form in major units (EUR, JPY, KWD), the approver's whole flow, times in
the viewer's own zone, and a refund page whose actions follow its status live."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_staff_browser import Page

from chromium import needs_chromium
from stack import Stack, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    needs_chromium,
    pytest.mark.parametrize("stack", ["postgresql"], indirect=True),
]


class ZonedPage(Page):
    """A tab whose clock is in Tokyo, to see times move into the viewer's zone."""

    def __init__(self, browser: object, stack: Stack) -> None:
        super().__init__(browser, stack)
        self.context.close()
        self.context = browser.new_context(base_url=stack.web_url, timezone_id="Asia/Tokyo")  # type: ignore[attr-defined]
        self.page = self.context.new_page()
        self.page.on("console", self._console)


def _submit(page: object, amount: str) -> None:
    page.fill("input[name=amount]", amount)  # type: ignore[attr-defined]
    page.click("#new-refund button[type=submit]")  # type: ignore[attr-defined]


def test_the_form_in_major_units_for_jpy_and_kwd(browser: object, stack: Stack) -> None:
    yen = stack.payment(5_000, "JPY")
    dinar = stack.payment(9_000, "KWD")
    tab = ZonedPage(browser, stack)
    try:
        tab.sign_in("ivan-initiator", f"/refunds/new?q={yen}")
        page = tab.page
        assert "5,000 JPY" in page.inner_text("section.payment")
        _submit(page, "12.5")
        page.wait_for_selector("#form-error")
        assert "JPY has no decimals" in page.inner_text("#form-error")
        _submit(page, "1,200")
        page.wait_for_url(re.compile(r".*/refunds/[0-9a-f-]{36}$"))
        yen_id = page.url.rsplit("/", 1)[1]
        assert "1,200 JPY" in page.inner_text("main")
        # Short id from the random end, the whole id on hover; times in the viewer's zone, UTC on hover.
        chip = page.locator("h1 code.id")
        assert chip.get_attribute("title") == yen_id
        assert chip.inner_text() == "…" + yen_id.replace("-", "")[-8:]
        page.wait_for_selector("time[data-localised]")
        created = page.locator("time[data-localised]").first
        assert "Asia/Tokyo" in created.inner_text()
        assert (created.get_attribute("title") or "").endswith("UTC")

        page.goto(f"/refunds/new?q={dinar}")
        assert "9.000 KWD" in page.inner_text("section.payment")
        _submit(page, "1.2505")
        page.wait_for_selector("#form-error")
        assert "KWD has at most 3 decimals" in page.inner_text("#form-error")
        _submit(page, "1.250")
        page.wait_for_url(re.compile(r".*/refunds/[0-9a-f-]{36}$"))
        dinar_id = page.url.rsplit("/", 1)[1]
        assert "1.250 KWD" in page.inner_text("main")
        assert not [p for p in tab.problems if "Content Security Policy" in p], tab.problems
    finally:
        tab.close()
    assert stack.get(yen_id)["amount"] == 1_200
    assert stack.get(dinar_id)["amount"] == 1_250


def test_the_approvers_flow_end_to_end(browser: object, stack: Stack, tmp_path: Path) -> None:
    reference = stack.payment(200_000, order_id="ord-5150")
    to_approve = stack.refund(reference, 60_000, reason="requested_by_customer").json()
    to_reject = stack.refund(stack.payment(90_000), 70_000).json()
    assert to_approve["status"] == to_reject["status"] == "pending_approval"
    tab = Page(browser, stack)
    try:
        tab.sign_in("amy-approver", "/approvals")
        page = tab.page
        card = page.locator(f"article[data-refund='{to_approve['id']}']")
        text = card.inner_text()
        assert "600.00 EUR" in text
        assert "Customer asked" in text
        assert "ord-5150" in text
        assert "2,000.00 EUR" in text  # what was captured
        assert "user:" not in text
        assert "api_key:" not in text
        assert re.search(r"\d[\d,]*\.\d\d EUR", page.inner_text("#waiting-totals"))
        page.screenshot(path=str(tmp_path / "approvals.png"), full_page=True)
        # The queue sorts and filters through its form.
        page.select_option("#approval-filters select[name=sort]", "amount")
        page.click("#approval-filters button[type=submit]")
        page.wait_for_url(re.compile(r".*sort=amount.*"))
        order = [a.get_attribute("data-refund") for a in page.locator("article.waiting").all()]
        assert order.index(to_reject["id"]) < order.index(to_approve["id"])  # 700.00 before 600.00

        # Reject needs a reason: the browser will not send the form without one.
        reject = page.locator(f"article[data-refund='{to_reject['id']}'] form.reject")
        reject.locator("button").click()
        assert page.url.endswith("/approvals?sort=amount&currency=&connection=")
        reject.locator("input[name=reason]").fill("no return received")
        reject.locator("button").click()
        page.wait_for_url(re.compile(rf".*/refunds/{to_reject['id']}$"))
        page.wait_for_selector("#timeline-body .status-rejected")
        assert "Rejected" in page.inner_text("#timeline-body")

        # Approve asks first, repeating the amount; saying no leaves it waiting.
        page.goto("/approvals")
        approve = f"article[data-refund='{to_approve['id']}'] form.approve button"
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.click(approve)
        wait_until(lambda: bool(asked), timeout=10, what="the confirmation")
        assert "600.00 EUR" in asked[0]
        assert stack.get(to_approve["id"])["status"] == "pending_approval"
        page.once("dialog", lambda d: d.accept())
        page.click(approve)
        page.wait_for_url(re.compile(rf".*/refunds/{to_approve['id']}$"))
        wait_until(lambda: stack.get(to_approve["id"])["status"] == "succeeded", timeout=30, what="executed")
        # Live: once it succeeded, the page offers no Cancel (nor anything else), without a reload.
        page.wait_for_selector("#timeline-body .status-succeeded")
        page.wait_for_function("!document.querySelector('#refund-actions form.action-cancel')")
        page.screenshot(path=str(tmp_path / "refund.png"), full_page=True)
        assert page.locator("#refund-actions form").count() == 0
        assert not [p for p in tab.problems if "Content Security Policy" in p], tab.problems
    finally:
        tab.close()


def test_actions_change_live_when_someone_else_decides(browser: object, stack: Stack) -> None:
    created = stack.refund(stack.payment(100_000), 60_000).json()
    tab = Page(browser, stack)
    try:
        tab.sign_in("amy-approver", f"/refunds/{created['id']}")
        page = tab.page
        page.wait_for_selector("#refund-actions form.action-approve")
        page.wait_for_function("document.getElementById('live-state').textContent === 'Live'")
        bob = stack.sign_in("bob-approver")
        try:
            page_html = bob.get(f"/refunds/{created['id']}").text
            token = re.search(r'name="_csrf_token" value="([^"]+)"', page_html)
            assert token
            answer = bob.post(
                f"/refunds/{created['id']}/reject",
                data={"reason": "duplicate", "_csrf_token": token.group(1)},
            )
            assert answer.status_code == 303
        finally:
            bob.close()
        # Amy's page drops Approve and Reject by itself: the decision was made elsewhere.
        page.wait_for_selector("#refund-actions form.action-approve", state="detached", timeout=15_000)
        assert page.locator("#refund-actions form").count() == 0
        assert "Rejected" in page.inner_text("#timeline-body")
    finally:
        tab.close()
