"""Outgoing webhooks in Chromium, under the strict CSP: an admin registers an endpoint and sees its
secret once, re-sends everything since a time typed in their own zone, and a refund's page shows its
deliveries arriving."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from test_staff_browser import Page

from chromium import needs_chromium
from stack import Stack
from webhook_receiver import Receiver

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [needs_chromium, pytest.mark.parametrize("stack", ["postgresql"], indirect=True)]


@pytest.fixture(scope="module")
def receiver(stack: Stack) -> Iterator[Receiver]:
    stack.restart_with({"REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"})
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


def test_admin_registers_an_endpoint_and_a_refund_shows_its_deliveries(
    browser: Any, stack: Stack, receiver: Receiver
) -> None:
    tab = Page(browser, stack, timezone="Pacific/Auckland")
    try:
        tab.sign_in("ada-admin", "/refunds")
        page = tab.page
        page.click("nav >> text=Webhooks")
        page.wait_for_url(re.compile(r".*/admin/webhooks$"))
        page.fill("#new-url", receiver.url("/browser"))
        page.check("input[name='event:refund.created']")
        page.check("input[name='event:refund.succeeded']")
        page.fill("#new-description", "from the browser")
        page.click("#new-endpoint button[type=submit]")
        secret = page.locator("#new-secret")
        expect(secret).to_have_text(re.compile(r"^whsec_\S+$"))
        shown = secret.inner_text()
        expect(page.locator("#endpoints")).to_contain_text(receiver.url("/browser"))
        page.reload()  # the answer pushed /admin/webhooks: a reload shows the list, not the secret again
        assert page.url.endswith("/admin/webhooks")
        expect(page.locator("#new-secret")).to_have_count(0)
        assert shown not in page.content()

        receiver.plan("/browser", 503, 503)  # the first two sends fail: retried after about 5 s, then 15 s
        refund_id: str = stack.refund(stack.payment(9_000), 900).json()["id"]
        stack.wait_status(refund_id, "succeeded")
        page.goto(f"/refunds/{refund_id}")
        deliveries = page.locator("#refund-deliveries")
        expect(deliveries).to_contain_text("refund.created")
        expect(deliveries).to_contain_text("refund.succeeded", timeout=15_000)  # re-read as it moves
        assert page.locator("#refund-deliveries .status-pending").count() >= 1
        # Sending is not a change of the refund, so the live timeline does not announce it: while a
        # delivery is pending the section re-reads itself (every 3 s while one is due), no reload.
        try:
            expect(page.locator("#refund-deliveries .status-pending")).to_have_count(0, timeout=45_000)
        except AssertionError as err:
            got = [(r.path, r.answered) for r in receiver.received("/browser")]
            raise AssertionError(f"{deliveries.inner_text()}; the receiver got {got}") from err
        expect(deliveries).to_contain_text("Delivered")

        page.click("#refund-deliveries a:has-text('127.0.0.1')")  # to the endpoint, for an admin
        page.wait_for_url(re.compile(r".*/admin/webhooks/[0-9a-f-]{36}$"))
        expect(page.locator("h1")).to_have_text(
            receiver.url("/browser")
        )  # its page, not swapped into the refund's
        expect(page.locator("#deliveries")).to_contain_text("refund.succeeded")
        # The field shows the viewer's zone and sends UTC: an hour back still takes in both deliveries.
        field = page.locator("input[name=since]")
        expect(field).to_have_attribute("data-local-input", "")
        page.click("#resend-since button[type=submit]")
        expect(page.locator("#form-notice")).to_have_text("2 deliveries will be sent again.")
        verified = [r.verified(shown) for r in receiver.delivered("/browser")]
        assert {p["type"] for p in verified} == {"refund.created", "refund.succeeded"}
        assert not [p for p in tab.problems if "Content Security Policy" in p or "Refused" in p], tab.problems
    finally:
        tab.close()
