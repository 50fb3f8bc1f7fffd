"""Error pages for browsers (403, 404, 500 in the house layout) while the API and webhooks keep their
JSON errors (CONTRACT §4, §5), whatever the caller's Accept header says."""

from __future__ import annotations

import contextlib
import re
import uuid

import httpx2
import pytest

from stack import Stack, db_rows

pytestmark = pytest.mark.slow
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def signed_in(stack: Stack, user: str) -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in(user))


def assert_house_page(response: httpx2.Response, status: int, title: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert '<link rel="stylesheet" href="/static/css/app.css">' in response.text  # the base layout
    assert f'<h1 id="error-title">{title}</h1>' in response.text
    assert "Traceback" not in response.text


def test_a_browser_gets_a_404_page(stack: Stack) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        unknown_path = alice.get("/no-such-page", headers=BROWSER)
        unknown_refund = alice.get(f"/refunds/{uuid.uuid4()}", headers=BROWSER)
    assert_house_page(unknown_path, 404, "Not found")
    assert_house_page(unknown_refund, 404, "Not found")
    assert "alice-viewer" in unknown_refund.text  # signed in: the page keeps the header with the person
    anonymous = httpx2.get(f"{stack.web_url}/no-such-page", headers=BROWSER)
    assert_house_page(anonymous, 404, "Not found")


def test_a_browser_gets_403_pages_with_the_reason(stack: Stack) -> None:
    created = stack.refund(stack.payment(10_000), 1_000).json()
    with signed_in(stack, "alice-viewer") as alice:
        page = alice.get("/refunds/new", headers=BROWSER)
        no_csrf = alice.post(f"/refunds/{created['id']}/cancel", headers=BROWSER)
    assert page.status_code == 403
    assert "Not allowed" in page.text
    assert_house_page(no_csrf, 403, "Not allowed")
    assert "CSRF" in no_csrf.text


def test_the_api_and_webhooks_keep_json_errors_for_any_accept(stack: Stack) -> None:
    with stack.api() as api:
        missing = api.get(f"/api/v1/refunds/{uuid.uuid4()}", headers=BROWSER)
        no_route = api.get("/api/v1/nothing-here", headers=BROWSER)
    assert missing.status_code == 404
    assert missing.json()["code"] == "refund_not_found"
    assert no_route.status_code == 404
    assert no_route.json()["code"] == "not_found"
    unauthenticated = httpx2.get(f"{stack.web_url}/api/v1/refunds", headers=BROWSER)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"]
    webhook = httpx2.post(f"{stack.web_url}/webhooks/no-such-connection", headers=BROWSER, content=b"{}")
    assert webhook.headers["content-type"].startswith("application/json")
    assert webhook.json()["code"]


def test_a_browser_gets_a_500_page_and_the_api_its_json(stack: Stack) -> None:
    """A real failure: the table the gateways page reads is renamed away for a moment."""
    rename = "ALTER TABLE {} RENAME TO {}"
    db_rows(stack, rename.format("health_checks", "health_checks_away"))
    try:
        with signed_in(stack, "ada-admin") as ada:
            page = ada.get("/gateways", headers=BROWSER)
            fragment = ada.get("/gateways")  # no HTML asked for: the JSON error as before
    finally:
        db_rows(stack, rename.format("health_checks_away", "health_checks"))
    assert_house_page(page, 500, "Something went wrong")
    assert "health_checks" not in page.text  # nothing about the cause reaches the page
    assert fragment.status_code == 500
    assert fragment.json()["code"] == "internal_error"


def header_of(response: httpx2.Response) -> str:
    return response.text[response.text.index("<header") : response.text.index("</header>")]


def test_error_pages_keep_the_signed_in_persons_header_and_menu(stack: Stack) -> None:
    """An unknown path never reaches a route (nor its guard, nor the CSRF middleware): the page still
    names the person, offers their role's menu, and its sign-out form works."""
    with signed_in(stack, "ada-admin") as ada:
        ada.get("/refunds")  # as a browser would have: the CSRF cookie
        lost = ada.get("/no-such-page", headers=BROWSER)
        assert_house_page(lost, 404, "Not found")
        header = header_of(lost)
        assert "Ada Admin" in header
        for link in ('href="/refunds"', 'href="/approvals"', 'href="/gateways"', 'href="/audit"'):
            assert link in header, link
        token = re.search(r'name="_csrf_token" value="([^"]+)"', header)
        assert token
        assert token.group(1) == ada.cookies.get("rw_csrf")
        assert ada.get("/refunds").status_code == 200  # reading it did not end or change the session
        bye = ada.post("/auth/logout", data={"_csrf_token": token.group(1)}, headers=BROWSER)
        assert bye.status_code == 303
        assert ada.get("/refunds").status_code == 303  # signed out: back to sign-in
    with signed_in(stack, "alice-viewer") as alice:
        forbidden = alice.get("/audit", headers=BROWSER)  # a viewer's menu: no administration
        assert forbidden.status_code == 403
        assert "Alice Viewer" in header_of(forbidden)
        assert 'href="/audit"' not in header_of(forbidden)
    anonymous = httpx2.get(f"{stack.web_url}/no-such-page", headers=BROWSER)
    assert "<nav" not in header_of(anonymous)
    stale = httpx2.get(f"{stack.web_url}/no-such-page", headers=BROWSER, cookies={"rw_session": "x" * 40})
    assert_house_page(stale, 404, "Not found")
    assert "<nav" not in header_of(stale)
    with stack.api() as api:  # the API's errors stay JSON
        assert api.get("/api/v1/nothing-here", headers=BROWSER).json()["code"] == "not_found"
