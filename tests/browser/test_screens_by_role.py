"""Every staff screen in Chromium for each role, and each role's work there, under the strict CSP:

- each screen for viewer, initiator, approver and admin: opened or refused (with the house header
  and the person's name), the menu the role gets, and the actions a waiting refund offers;
- the approver's decision end to end, from the queue and from the refund's page: approve asks for a
  confirmation that repeats the amount (saying no leaves it waiting), reject needs a reason; the
  queue's cards (amount, reason, order, payment, who asked by name), its totals and its sorting;
- the new-refund form in major units for EUR, JPY and KWD (typed, refused, converted exactly), and
  the refund it makes: its short id, its times in the viewer's zone;
- live actions: the initiator's Cancel goes by itself when an approver decides elsewhere;
- the audit log filtered by a person shown by name (the machine id behind it), by type and search,
  and exported;
- admin work: an API key created with chosen scopes, shown once, revoked; a connection disabled and
  enabled, an option edited, and a secret replaced only once a second admin approves; their times
  in the viewer's zone (a Tokyo tab), UTC on hover.

One stack (PostgreSQL) for the module; cases are parametrised, not copied.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from test_staff_browser import Page

from chromium import click_to, needs_chromium, wait_in_page, wait_live_and_settled
from stack import Stack, db_rows, wait_until

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [needs_chromium, pytest.mark.parametrize("stack", ["postgresql"], indirect=True)]

ROLES = ("viewer", "initiator", "approver", "admin")
USER = {
    "viewer": "alice-viewer",
    "initiator": "ivan-initiator",
    "approver": "amy-approver",
    "admin": "ada-admin",
}
NAME = {
    "viewer": "Alice Viewer",
    "initiator": "Ivan Initiator",
    "approver": "Amy Approver",
    "admin": "Ada Admin",
}
# The menu, and the least role that gets each entry (and may open its screen).
MENU = {
    "Dashboard": "viewer",
    "Refunds": "viewer",
    "Reconciliation": "viewer",
    "New refund": "initiator",
    "Approvals": "approver",
    "Gateways": "admin",
    "Webhooks": "admin",
    "Alerts": "admin",
    "Audit log": "admin",
}
# What a refund waiting for approval offers each role (someone else's refund: four eyes allow it).
ON_WAITING = {
    "viewer": set(),
    "initiator": {"cancel"},
    "approver": {"approve", "reject", "cancel"},
    "admin": {"approve", "reject", "cancel"},
}
ADYEN = "adyen-test"


def at_least(role: str, least: str) -> bool:
    return ROLES.index(role) >= ROLES.index(least)


@dataclass(frozen=True)
class World:
    reference: str  # a payment with money left
    done: str  # a refund that succeeded
    waiting: str  # a refund waiting for approval (an API client's)


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    stack.connect("adyen")
    reference = stack.payment(80_000)
    done = stack.refund(reference, 2_000).json()["id"]
    waiting = stack.refund(stack.payment(100_000), 60_000).json()
    assert waiting["status"] == "pending_approval"
    stack.wait_status(done, "succeeded")
    return World(reference, done, waiting["id"])


@contextmanager
def tab(
    browser: Any, stack: Stack, role_or_user: str, path: str = "/", timezone: str | None = None
) -> Iterator[Any]:
    """A signed-in tab; on leaving, no Content-Security-Policy violation may have been reported."""
    opened = Page(browser, stack, timezone)
    try:
        opened.sign_in(USER.get(role_or_user, role_or_user), path)
        yield opened.page
        assert not [p for p in opened.problems if "Content Security Policy" in p or "Refused" in p], (
            opened.problems
        )
    finally:
        opened.close()


def in_tokyo(time: Any) -> None:
    """A time shown in the viewer's zone (a Tokyo tab: UTC+9, no summer time), with UTC on hover."""
    expect(time).to_have_attribute("data-localised", "")
    # Title and text read together: a live redraw may swap the element between two separate reads.
    title, text = time.evaluate("e => [e.getAttribute('title') || '', e.innerText]")
    hover = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", title)
    assert hover, title
    utc = dt.datetime.strptime(hover.group(1), "%Y-%m-%d %H:%M:%S")
    assert text == (utc + dt.timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S Asia/Tokyo")


def menu_of(page: Any) -> set[str]:
    return {text.strip() for text in page.locator("header nav a").all_inner_texts()}


def actions_of(page: Any) -> set[str]:
    classes = page.locator("#refund-actions form.action").evaluate_all("fs => fs.map(f => f.className)")
    return {c.split("action-", 1)[1] for c in classes}


# ------------------------------------------------------------------------------------------ screens


@pytest.mark.parametrize("role", ROLES)
def test_every_screen_for_each_role(browser: Any, stack: Stack, world: World, role: str) -> None:
    screens = {
        "/": "viewer",
        "/refunds": "viewer",
        f"/refunds/{world.done}": "viewer",
        f"/refunds/{world.waiting}": "viewer",
        f"/refunds/new?q={world.reference}": "initiator",
        "/approvals": "approver",
        "/reconciliation": "viewer",
        "/gateways": "admin",
        "/audit": "admin",
        "/admin/api-keys": "admin",
        "/admin/webhooks": "admin",
        "/admin/alerts": "admin",
        f"/admin/connections/{ADYEN}": "admin",
    }
    with tab(browser, stack, role) as page:
        for path, least in screens.items():
            response = page.goto(path)
            allowed = at_least(role, least)
            assert response.status == (200 if allowed else 403), (path, response.status)
            # Opened or refused, the page keeps the house header: the person by name, their role's menu.
            expect(page.locator("header .who-name")).to_have_text(NAME[role])
            assert menu_of(page) == {item for item, need in MENU.items() if at_least(role, need)}, path
            if not allowed:
                expect(page.locator("main h1")).to_have_text("Not allowed")
        page.goto(f"/refunds/{world.waiting}")
        assert actions_of(page) == ON_WAITING[role]
        page.goto(f"/refunds/{world.done}")
        assert actions_of(page) == set()  # succeeded: nothing to cancel or decide
        expect(page.locator("a.new-refund")).to_have_count(1 if at_least(role, "initiator") else 0)
        if at_least(role, "initiator"):  # a whole page, not swapped into the actions' place
            # The actions' area is redrawn live (sse:timeline, rw-poll): click_to clicks again when a
            # click lands while the link is being swapped, as a person would.
            click_to(page, "a.new-refund", re.compile(r".*/refunds/new\?"), what="New refund")
            expect(page.locator("main h1")).to_have_count(1)
            expect(page.locator("#refund-actions")).to_have_count(0)
        lost = page.goto("/no-such-screen")
        assert lost.status == 404
        expect(page.locator("header .who-name")).to_have_text(NAME[role])


# ------------------------------------------------------------------------------ approver's decision


def _decide_from(page: Any, where: str, refund_id: str) -> tuple[str, str]:
    """(the approve button, the reject form) on the queue or on the refund's own page."""
    if where == "queue":
        page.goto("/approvals")
        card = f"article[data-refund='{refund_id}']"
        return f"{card} form.approve button", f"{card} form.reject"
    page.goto(f"/refunds/{refund_id}")
    wait_live_and_settled(page)  # its actions re-read once the stream opens
    return "#refund-actions form.action-approve button", "#refund-actions form.action-reject"


@pytest.mark.parametrize("where", ["queue", "refund page"])
@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_approver_decides(browser: Any, stack: Stack, where: str, decision: str) -> None:
    refund_id = stack.refund(stack.payment(150_000), 123_456).json()["id"]  # 1,234.56 EUR: waits
    assert stack.get(refund_id)["status"] == "pending_approval"
    with tab(browser, stack, "approver") as page:
        approve, reject = _decide_from(page, where, refund_id)
        if decision == "approve":
            asked: list[str] = []
            page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
            page.click(approve)
            wait_in_page(page, lambda: asked, timeout=10, what="the confirmation")
            assert "1,234.56 EUR" in asked[0]  # the confirmation repeats the amount
            assert stack.get(refund_id)["status"] == "pending_approval"  # "no" leaves it waiting
            page.once("dialog", lambda d: d.accept())
            page.click(approve)
            page.wait_for_url(re.compile(rf".*/refunds/{refund_id}$"))
            stack.wait_status(refund_id, "succeeded")
            page.wait_for_selector("#timeline-body .status-succeeded")
        else:
            page.locator(f"{reject} button").click()  # no reason: the browser does not send it
            assert page.locator(f"{reject} input[name=reason]").evaluate("i => i.validity.valueMissing")
            assert stack.get(refund_id)["status"] == "pending_approval"
            page.locator(f"{reject} input[name=reason]").fill("no return received")
            page.locator(f"{reject} button").click()
            page.wait_for_url(re.compile(rf".*/refunds/{refund_id}$"))
            stack.wait_status(refund_id, "rejected")
            page.wait_for_selector("#timeline-body .status-rejected")
        expect(page.locator("#refund-actions form.action")).to_have_count(0)


def test_the_queue_informs_the_decision_sorts_and_totals(browser: Any, stack: Stack) -> None:
    informs = stack.refund(
        stack.payment(200_000, order_id="ord-5150"), 60_000, reason="requested_by_customer"
    )
    larger = stack.refund(stack.payment(90_000), 70_000).json()["id"]
    with tab(browser, stack, "approver", "/approvals") as page:
        text = page.locator(f"article[data-refund='{informs.json()['id']}']").inner_text()
        assert "600.00 EUR" in text  # major units
        assert "Customer asked" in text  # the reason's label
        assert "ord-5150" in text
        assert "2,000.00 EUR" in text  # what the payment captured
        assert "user:" not in text
        assert "api_key:" not in text  # who asked by name, not by machine key
        assert re.search(r"\d[\d,]*\.\d\d EUR", page.inner_text("#waiting-totals"))
        page.select_option("#approval-filters select[name=sort]", "amount")
        page.click("#approval-filters button[type=submit]")
        page.wait_for_url(re.compile(r".*sort=amount.*"))
        order = [a.get_attribute("data-refund") for a in page.locator("article.waiting").all()]
        assert order.index(larger) < order.index(informs.json()["id"])  # 700.00 before 600.00


# ------------------------------------------------------------------------------- form, major units


@pytest.mark.parametrize(
    ("currency", "captured", "shown", "refused", "why", "typed", "read", "minor"),
    [
        ("EUR", 200_000, "2,000.00 EUR", "600.005", "at most 2 decimals", "600", "600.00 EUR", 60_000),
        ("JPY", 50_000, "50,000 JPY", "12.5", "JPY has no decimals", "1,200", "1,200 JPY", 1_200),
        ("KWD", 9_000, "9.000 KWD", "1.2505", "at most 3 decimals", "1.250", "1.250 KWD", 1_250),
    ],
)
def test_the_new_refund_form_in_major_units(
    browser: Any,
    stack: Stack,
    currency: str,
    captured: int,
    shown: str,
    refused: str,
    why: str,
    typed: str,
    read: str,
    minor: int,
) -> None:
    reference = stack.payment(captured, currency)
    with tab(browser, stack, "initiator", f"/refunds/new?q={reference}", timezone="Asia/Tokyo") as page:
        assert shown in page.inner_text("section.payment")
        limit = page.inner_text("#role-limit")  # the initiator's limit, in this currency
        assert "minor units" not in limit
        assert re.search(rf"up to [\d,.]+ {currency}\.", limit), limit
        page.fill("input[name=amount]", refused)
        page.click("#new-refund button[type=submit]")
        expect(page.locator("#form-error")).to_contain_text(why)
        page.fill("input[name=amount]", typed)
        page.click("#new-refund button[type=submit]")
        page.wait_for_url(re.compile(r".*/refunds/[0-9a-f-]{36}$"))
        refund_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("h1")).to_contain_text(read)
        # Its short id comes from the random end, the whole id on hover; its times in the viewer's zone.
        chip = page.locator("h1 code.id")
        assert chip.get_attribute("title") == refund_id
        assert chip.inner_text() == "…" + refund_id.replace("-", "")[-8:]
        in_tokyo(page.locator("#timeline-body dl time").first)
    assert stack.get(refund_id)["amount"] == minor  # converted exactly; the API stays in minor units


# ----------------------------------------------------------------------------------- live actions


def test_the_initiators_cancel_goes_when_an_approver_decides_elsewhere(browser: Any, stack: Stack) -> None:
    reference = stack.payment(70_000)
    refund_id = stack.refund(reference, 70_000).json()["id"]  # the whole payment, waiting
    with tab(browser, stack, "initiator", f"/refunds/{refund_id}") as page:
        expect(page.locator("#refund-actions form.action-cancel")).to_have_count(1)
        expect(page.locator("#live-state")).to_have_text("Live")
        with tab(browser, stack, "approver", f"/refunds/{refund_id}") as other:
            other.once("dialog", lambda d: d.accept())
            other.click("#refund-actions form.action-approve button")
            other.wait_for_url(re.compile(rf".*/refunds/{refund_id}$"))
        stack.wait_status(refund_id, "succeeded")
        # Without a reload: no Cancel once it went out, and the whole payment is refunded.
        expect(page.locator("#refund-actions form.action")).to_have_count(0, timeout=15_000)
        expect(page.locator("#refund-actions .fully-refunded")).to_have_count(1, timeout=15_000)
        expect(page.locator("#refund-actions a.new-refund")).to_have_count(0)


# ---------------------------------------------------------------------------------------- audit


def test_audit_filtered_by_a_person_shown_by_name_and_exported(browser: Any, stack: Stack) -> None:
    with tab(browser, stack, "approver", "/refunds") as page:  # a sign-in on record for Amy
        page.goto("/refunds")
    with tab(browser, stack, "admin", "/audit") as page:
        page.select_option("#audit-filters select[name=actor_type]", "user")
        page.fill("#audit-filters input[name=q]", "sign_in")
        page.click("#audit-filters button[type=submit]")
        page.wait_for_url(re.compile(r".*actor_type=user.*"))
        amy = page.locator("table.audit-log tbody td:nth-child(3) a", has_text="Amy Approver").first
        expect(amy).to_be_visible()
        machine_id = (amy.get_attribute("title") or "").removeprefix("user: ")
        assert machine_id.startswith("amy-approver@example.test (")  # the id behind the name
        amy.click()  # narrows to her entries, by the machine id
        page.wait_for_url(re.compile(r".*[?&]actor=.*"))
        expect(page.locator("#audit-filters input[name=actor]")).to_have_value(machine_id)
        people = set(page.locator("table.audit-log tbody td:nth-child(3) a").all_inner_texts())
        assert people == {"Amy Approver"}
        with page.expect_download() as got:
            page.click("#audit-export a:has-text('CSV')")
        rows = list(csv.DictReader(io.StringIO(open(got.value.path(), encoding="utf-8").read())))  # noqa: SIM115
        assert rows
        assert {r["actor_id"] for r in rows} == {machine_id}  # exports keep the machine id
        assert all(r["at"].endswith("Z") for r in rows)


# ---------------------------------------------------------------------------------------- admin


def test_an_api_key_is_shown_once_and_revoked(browser: Any, stack: Stack) -> None:
    name = f"returns-{uuid.uuid4().hex[:6]}"
    with tab(browser, stack, "admin", "/admin/api-keys", timezone="Asia/Tokyo") as page:
        page.fill("#key-name", name)
        page.check("input[name='scope:refunds:read']")
        page.click("form:has(#key-name) button[type=submit]")
        secret = page.locator("#new-key").inner_text()
        assert secret.startswith("rw_")
        with stack.api(secret) as api:
            assert api.get("/api/v1/refunds").status_code == 200
            assert api.post("/api/v1/payments", json={}).status_code == 403  # only the scope chosen
        page.goto("/admin/api-keys")
        assert secret not in page.content()  # shown once, never again
        row = page.locator("table tbody tr", has_text=name)
        assert "refunds:read" in row.inner_text()
        row.locator("button:has-text('Revoke')").click()
        page.wait_for_url(re.compile(r".*/admin/api-keys$"))
        revoked = page.locator("table tbody tr", has_text=name)
        expect(revoked.locator("button")).to_have_count(0)
        in_tokyo(revoked.locator("td:nth-child(4) time"))  # created and revoked: the viewer's time
        in_tokyo(revoked.locator("td:nth-child(5) time"))
    # Refused by the API within the key cache's 30 s: tests/integration/test_admin_manage.py waits for it.
    assert db_rows(stack, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = ?", name) == [(True,)]


def _enabled(stack: Stack) -> bool:
    return bool(db_rows(stack, "SELECT enabled FROM connections WHERE name = ?", ADYEN)[0][0])


def _blob(stack: Stack) -> str:
    return str(db_rows(stack, "SELECT credentials_encrypted FROM connections WHERE name = ?", ADYEN)[0][0])


def test_an_admin_manages_a_connection_and_a_new_secret_waits_for_a_second_admin(
    browser: Any, stack: Stack, world: World
) -> None:
    assert stack.idp is not None
    stack.idp.add_user("eve-admin", name="Eve Admin", groups=["refundwatch-admins"])
    row = f"table tbody tr:has(a[href='/admin/connections/{ADYEN}'])"
    with tab(browser, stack, "admin", "/gateways", timezone="Asia/Tokyo") as page:
        checked = "table tbody tr:has(a[href='/admin/connections/stripe-test']) td:nth-child(4) time"
        wait_until(
            lambda: page.goto("/gateways") and page.locator(checked).count(),
            timeout=30,
            interval=0.5,
            what="a health check of stripe-test",
        )
        in_tokyo(page.locator(checked))  # the last health check, in the viewer's time
        page.click(f"{row} button:has-text('Disable')")
        page.wait_for_url(re.compile(r".*/gateways$"))
        expect(page.locator(f"{row} button")).to_have_text("Enable")
        assert not _enabled(stack)
        page.click(f"{row} button:has-text('Enable')")
        expect(page.locator(f"{row} button")).to_have_text("Disable")
        assert _enabled(stack)

        page.click(f"a[href='/admin/connections/{ADYEN}']")
        page.fill("#option-live_prefix", "1797a841fbb37ca7-Acme")
        page.click("button:has-text('Save settings')")
        expect(page.locator("#form-notice")).to_contain_text("live_prefix")
        before = _blob(stack)
        secret = page.locator("#secret-api_key")
        assert secret.get_attribute("type") == "password"  # masked, and never filled in
        assert secret.input_value() == ""
        secret.fill("AQEnew-key-from-the-browser")
        page.click("button:has-text('Ask for approval')")
        expect(page.locator("#form-notice")).to_contain_text("another admin must approve")
        assert "AQEnew-key-from-the-browser" not in page.content()
        pending = page.locator("table tbody tr", has_text="api_key")
        expect(pending).to_contain_text("Ada Admin")  # who asked, by name
        expect(pending).to_contain_text("another admin must decide")  # not the one who asked
        in_tokyo(pending.locator("td:nth-child(3) time"))  # asked at, in the viewer's time
        assert _blob(stack) == before  # nothing applied yet
    with tab(browser, stack, "eve-admin", f"/admin/connections/{ADYEN}") as page:
        page.locator("table tbody tr", has_text="api_key").locator("button:has-text('Approve')").click()
        page.wait_for_url(re.compile(rf".*/admin/connections/{ADYEN}$"))
        expect(page.locator("table tbody")).to_contain_text("None.")
    assert _blob(stack) != before  # applied once a second admin approved
