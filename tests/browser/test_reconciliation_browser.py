"""Resolving a reconciliation break in Chromium, under the strict CSP: an approver finds the break on
/reconciliation, opens it, reads its refund and settlement line, and resolves it with a reason; the break
leaves the open list and the audit log has the decision."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chromium import needs_chromium
from stack import Stack, db_rows
from stripe_reports import imported, line, report, succeeded

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [needs_chromium, pytest.mark.parametrize("stack", ["postgresql"], indirect=True)]


def test_an_approver_resolves_a_break_through_the_page(browser: Any, stack: Stack) -> None:
    changed = succeeded(stack, 3_000)
    out = imported(stack, report(stack, [line(changed, gross="-29.50", net="-29.50")]))
    assert "1 breaks found" in out, out
    context = browser.new_context(base_url=stack.web_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto("/reconciliation")
        assert stack.idp is not None
        page.wait_for_url(re.compile(re.escape(stack.idp.url) + ".*"))
        page.fill("#username", "amy-approver")
        page.fill("#password", "password")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(re.escape(stack.web_url) + "/reconciliation$"))
        row = page.locator('tr[data-kind="amount_mismatch"]')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("0.50 EUR")  # unreconciled, in major units
        expect(page.locator('#by-currency [data-currency="EUR"]')).to_have_text("0.50 EUR")
        row.get_by_role("link", name=re.compile("Resolve")).click()
        page.wait_for_url(re.compile(r".*/reconciliation/breaks/[0-9a-f-]{36}$"))
        expect(page.locator("#break-refund")).to_have_attribute("href", f"/refunds/{changed['id']}")
        expect(page.locator("pre.raw-line")).to_contain_text(changed["id"])  # the report's own row
        page.get_by_label("Accepted").check()
        page.get_by_label("Reason (required)").fill("the processor kept 0.50 as a fee; agreed by finance")
        page.get_by_role("button", name="Resolve break").click()
        expect(page.locator("#break-status")).to_have_text("Accepted")
        expect(page.locator(".resolution-reason")).to_have_text(
            "the processor kept 0.50 as a fee; agreed by finance"
        )
        expect(page.locator("#resolve-form")).to_have_count(0)
        page.get_by_role("link", name="← Open breaks").click()
        page.wait_for_url(re.compile(r".*/reconciliation$"))
        expect(page.locator('tr[data-kind="amount_mismatch"]')).to_have_count(0)
        expect(page.get_by_text("No breaks match.")).to_be_visible()
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    finally:
        context.close()
    entries = db_rows(
        stack,
        "SELECT actor_id, details FROM audit_log WHERE action = ?",
        "reconciliation:break:resolve",
    )
    assert len(entries) == 1
    assert "agreed by finance" in entries[0][1]
