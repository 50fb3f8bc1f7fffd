"""Every staff page checked with axe-core (pinned in package.json, loaded from node_modules, no CDN) in a
real Chromium, in the light and the dark colour scheme: no serious or critical violation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from chromium import needs_chromium
from stack import Stack, db_rows
from stripe_reports import imported, line, report, succeeded

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [needs_chromium, pytest.mark.parametrize("stack", ["postgresql"], indirect=True)]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
# What an axe run reports, reduced to what a person needs to find and fix each violation.
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
}"""


def pages(stack: Stack) -> list[str]:
    reference = stack.payment(90_000)
    refund = stack.refund(reference, 1_000)
    assert refund.status_code == 201, refund.text
    changed = succeeded(stack, 2_500)  # a break of each side: a different amount, a foreign refund
    imported(
        stack, report(stack, [line(changed, gross="-24.00", net="-24.00"), line(gross="-3.00", net="-3.00")])
    )
    with stack.api() as client:
        found = client.get("/api/v1/reconciliation/breaks", params={"kind": "amount_mismatch"}).json()["data"]
    break_id = found[0]["id"]
    line_id = db_rows(stack, "SELECT line_id FROM reconciliation_breaks WHERE kind = 'amount_mismatch'")[0][0]
    return [
        "/",
        "/refunds",
        f"/refunds/new?q={reference}",
        f"/refunds/{refund.json()['id']}",
        f"/payments/{changed['payment_reference']}",  # with a break on its refund
        "/approvals",
        "/gateways",
        "/audit",
        "/reconciliation",
        f"/reconciliation/breaks/{break_id}",
        f"/reconciliation/lines/{line_id}",
        "/admin/api-keys",
        "/admin/connections/stripe-test",
        "/admin/webhooks",
        "/admin/alerts",
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_or_critical_violations_on_any_page(browser: Any, stack: Stack, scheme: str) -> None:
    assert AXE.is_file(), f"{AXE} is missing: run `make assets` (npm ci)"
    # The pages' Content-Security-Policy allows no injected script; axe is a test's guest.
    context = browser.new_context(base_url=stack.web_url, bypass_csp=True, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto("/")
        assert stack.idp is not None
        page.wait_for_url(re.compile(re.escape(stack.idp.url) + ".*"))
        page.fill("#username", "ada-admin")
        page.fill("#password", "password")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(re.escape(stack.web_url) + ".*"))
        found: dict[str, list[dict[str, Any]]] = {}
        for path in pages(stack):
            response = page.goto(path)
            assert response is not None
            assert response.status == 200, (path, response.status)
            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(RUN_AXE)
            if violations:
                found[path] = violations
        assert not found, "\n".join(f"{path}: {v}" for path, vs in found.items() for v in vs)
        # The witness works: a page with a critical violation (an image without a text) is caught.
        page.set_content('<!doctype html><html lang="en"><title>t</title><img src="x.png"></html>')
        page.add_script_tag(path=str(AXE))
        assert "image-alt" in {v["id"] for v in page.evaluate(RUN_AXE)}
    finally:
        context.close()
