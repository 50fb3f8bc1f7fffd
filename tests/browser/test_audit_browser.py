"""The audit screen in Chromium: an admin filters, follows a row's links, exports CSV and JSON Lines, and
the page fits the window with long values cut (whole value on hover), under the strict CSP."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from chromium import needs_chromium
from stack import Stack, db_rows

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = [needs_chromium, pytest.mark.parametrize("stack", ["postgresql"], indirect=True)]


@contextmanager
def admin_tab(
    browser: Any, stack: Stack, width: int = 1280, timezone: str | None = None
) -> Iterator[tuple[Any, list[str]]]:
    zone = {"timezone_id": timezone} if timezone else {}
    context = browser.new_context(base_url=stack.web_url, viewport={"width": width, "height": 900}, **zone)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto("/audit")
        assert stack.idp is not None
        page.wait_for_url(re.compile(re.escape(stack.idp.url) + ".*"))
        page.fill("#username", "ada-admin")
        page.fill("#password", "password")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(re.escape(stack.web_url) + "/audit$"))
        yield page, problems
    finally:
        context.close()


@pytest.fixture(scope="module")
def refund_id(stack: Stack) -> str:
    created: str = stack.refund(stack.payment(8_000), 2_000).json()["id"]
    stack.wait_status(created, "succeeded")
    return created


def shown_actions(page: Any) -> set[str]:
    return {
        cell.strip() for cell in page.locator("table.audit-log tbody tr td:nth-child(4)").all_inner_texts()
    }


def test_admin_filters_by_action_and_follows_a_rows_target(
    browser: Any, stack: Stack, refund_id: str
) -> None:
    with admin_tab(browser, stack) as (page, problems):
        page.fill("input[name=action]", "api:refund:create")
        page.click("#audit-filters button[type=submit]")
        page.wait_for_url(re.compile(r".*/audit\?.*action=api%3Arefund%3Acreate.*"))
        assert shown_actions(page) == {"api:refund:create"}
        page.click(f'table.audit-log a[href*="target={refund_id}"]')
        page.wait_for_url(re.compile(rf".*target={refund_id}.*"))
        assert shown_actions(page) == {"api:refund:create"}  # narrowed: both filters hold
        page.click("text=Clear")
        page.wait_for_url(re.compile(r".*/audit$"))
        page.fill("input[name=target]", refund_id)
        page.click("#audit-filters button[type=submit]")
        page.wait_for_selector("table.audit-log tbody tr")
        details = page.inner_text("table.audit-log tbody")
        assert "→" in details
        assert "\\u2192" not in details
        expected = db_rows(stack, "SELECT count(*) FROM audit_log WHERE target_id = ?", refund_id)[0][0]
        expect(page.locator("table.audit-log tbody tr")).to_have_count(expected)
        # A time range that ends before anything was written finds nothing.
        page.fill("input[name=until]", "2020-01-01T00:00:00")
        page.click("#audit-filters button[type=submit]")
        expect(page.locator("table.audit-log tbody")).to_contain_text("No entries match these filters")
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_exports_download_the_filtered_entries_in_utc(browser: Any, stack: Stack, refund_id: str) -> None:
    expected = [
        row[0]
        for row in db_rows(stack, "SELECT id FROM audit_log WHERE target_id = ? ORDER BY id DESC", refund_id)
    ]
    with admin_tab(browser, stack) as (page, _problems):
        page.goto(f"/audit?target={refund_id}")
        with page.expect_download() as got_csv:
            page.click("#audit-export a:has-text('CSV')")
        download = got_csv.value
        assert re.fullmatch(r"audit-\d{8}T\d{6}Z\.csv", download.suggested_filename)
        rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))  # noqa: SIM115
        assert [int(r["id"]) for r in rows] == expected
        assert all(r["at"].endswith("Z") for r in rows)
        with page.expect_download() as got_jsonl:
            page.click("#audit-export a:has-text('JSON Lines')")
        lines = [json.loads(line) for line in open(got_jsonl.value.path(), encoding="utf-8")]  # noqa: SIM115
        assert [line["id"] for line in lines] == expected
        assert all(line["at"].endswith("Z") for line in lines)


@pytest.mark.parametrize("width", [1280, 800])
def test_the_log_fits_the_window_and_long_values_show_whole_on_hover(
    browser: Any, stack: Stack, refund_id: str, width: int
) -> None:
    with admin_tab(browser, stack, width) as (page, _problems):
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
        target = page.locator(f'table.audit-log a.cut[title*="{refund_id}"]').first
        expect(target).to_be_visible()
        assert refund_id in (target.get_attribute("title") or "")
        expect(page.locator("#chain-verified")).to_be_visible()


def test_times_show_in_the_viewers_zone_with_utc_on_hover(browser: Any, stack: Stack, refund_id: str) -> None:
    with admin_tab(browser, stack, timezone="Asia/Tokyo") as (page, problems):
        page.goto(f"/audit?target={refund_id}")
        cell = page.locator("table.audit-log tbody tr td:nth-child(2) time").first
        expect(cell).to_have_attribute("data-localised", "")
        shown, hover = cell.inner_text(), cell.get_attribute("title") or ""
        assert shown.endswith(" Asia/Tokyo"), shown
        assert hover.endswith(" UTC"), hover
        utc = dt.datetime.strptime(hover, "%Y-%m-%d %H:%M:%S UTC")
        assert shown == (utc + dt.timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S Asia/Tokyo")  # no DST
        # After a boosted (htmx) navigation too: the next filter's rows are localised as well.
        page.fill("input[name=action]", "api:refund:create")
        page.click("#audit-filters button[type=submit]")
        page.wait_for_url(re.compile(r".*action=api%3Arefund%3Acreate.*"))
        expect(page.locator("table.audit-log tbody time[data-local]")).to_have_count(0)
        assert page.locator("table.audit-log tbody time[data-localised]").count() >= 1
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_the_time_range_is_typed_in_the_viewers_zone_and_sent_in_utc(
    browser: Any, stack: Stack, refund_id: str
) -> None:
    """Tokyo is UTC+9: a time read as UTC would land nine hours off, and find the opposite entries."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour_ago = (now - dt.timedelta(hours=1)).replace(second=30)  # whole minutes would show without :00
    typed = (hour_ago + dt.timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S")  # what a Tokyo clock said
    utc = hour_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    with admin_tab(browser, stack, timezone="Asia/Tokyo") as (page, problems):
        page.goto(f"/audit?target={refund_id}")
        expect(page.locator("#audit-filters legend", has_text="When")).to_have_text(
            "When (your time zone: Asia/Tokyo)"
        )
        page.fill("input[name=since]", typed)
        page.click("#audit-filters button[type=submit]")
        page.wait_for_url(re.compile(rf".*since={re.escape(utc.replace(':', '%3A'))}.*"))  # UTC in the URL
        expect(page.locator("table.audit-log tbody tr[id^=entry-]").first).to_be_visible()  # written since
        expect(page.locator("input[name=since]")).to_have_value(typed)  # shown back in Tokyo time
        assert f"since={utc.replace(':', '%3A')}" in (
            page.locator("#audit-export a:has-text('CSV')").get_attribute("href") or ""
        )
        page.fill("input[name=since]", "")
        page.fill("input[name=until]", typed)
        page.click("#audit-filters button[type=submit]")
        page.wait_for_url(re.compile(rf".*until={re.escape(utc.replace(':', '%3A'))}.*"))
        expect(page.locator("table.audit-log tbody")).to_contain_text("No entries match these filters")
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def test_the_refunds_created_range_is_typed_in_the_viewers_zone_and_sent_in_utc(
    browser: Any, stack: Stack, refund_id: str
) -> None:
    """The same on /refunds: typed to the minute on a Tokyo clock, sent as that UTC minute; a bare
    date in a URL (a whole UTC day) shows as its first minute in Tokyo time."""
    reference = stack.get(refund_id)["payment_reference"]
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    typed = (hour_ago + dt.timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M")
    utc = hour_ago.strftime("%Y-%m-%dT%H:%MZ").replace(":", "%3A")
    rows = "table.refunds tbody tr"
    with admin_tab(browser, stack, timezone="Asia/Tokyo") as (page, problems):
        page.goto(f"/refunds?q={reference}")
        expect(page.locator("#refund-filters legend", has_text="Created")).to_have_text(
            "Created (your time zone: Asia/Tokyo)"
        )
        page.fill("input[name=from]", typed)
        page.click("#refund-filters button[type=submit]")
        page.wait_for_url(re.compile(rf".*from={re.escape(utc)}.*"))
        expect(page.locator(rows, has_text=reference)).to_have_count(1)  # created after it
        expect(page.locator("input[name=from]")).to_have_value(typed)
        page.fill("input[name=from]", "")
        page.fill("input[name=to]", typed)
        page.click("#refund-filters button[type=submit]")
        page.wait_for_url(re.compile(rf".*to={re.escape(utc)}.*"))
        expect(page.locator(rows, has_text=reference)).to_have_count(0)
        day = hour_ago.strftime("%Y-%m-%d")
        page.goto(f"/refunds?q={reference}&from={day}")
        expect(page.locator("input[name=from]")).to_have_value(f"{day}T09:00")  # 00:00 UTC in Tokyo
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
