"""Debian's Chromium for the browser tests: where it is, and skipping only where CI does not run."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# CI installs chromium (.ci/run), so there a missing browser fails instead of skipping.
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it)",
)


def click_to(page: Any, selector: str, url: re.Pattern[str], *, what: str) -> None:
    """Click ``selector`` and wait until the page's URL matches ``url`` (committed, not loaded: the
    checks after it wait for what they need).

    On a loaded machine CI has twice seen a click that sent nothing: it landed while the element was
    being redrawn. A click that sent no request is made again, as a person would. A click that did send
    one is never repeated (it may be a POST), and if it still goes nowhere the error names every
    request and answer seen since, so the cause shows in CI's output."""
    seen: list[str] = []
    sent: list[str] = []  # what the click itself sent: a navigation, or htmx's boosted request

    def on_request(request: Any) -> None:
        seen.append(f"-> {request.method} {request.url} ({request.resource_type})")
        if request.is_navigation_request() or request.headers.get("hx-boosted"):
            sent.append(request.url)

    def on_response(response: Any) -> None:
        seen.append(f"<- {response.status} {response.url}")

    def on_failed(request: Any) -> None:
        seen.append(f"!! {request.url} {request.failure}")

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    try:
        for _ in range(3):
            page.click(selector)
            try:
                page.wait_for_url(url, wait_until="commit", timeout=10_000)
                return
            except Exception:  # Playwright's TimeoutError; the checks below decide
                if url.match(page.url):
                    return
            if sent:  # the click went out: wait for its answer, never send it twice
                with contextlib.suppress(Exception):
                    page.wait_for_url(url, wait_until="commit", timeout=50_000)
                break
        if not url.match(page.url):
            raise AssertionError(f"{what}: still on {page.url} after the click; traffic: {seen}")
    finally:
        page.remove_listener("request", on_request)
        page.remove_listener("response", on_response)
        page.remove_listener("requestfailed", on_failed)


def wait_in_page(page: Any, condition: Any, *, timeout: float, what: str) -> Any:
    """``wait_until`` for conditions fed by Playwright callbacks (routes, events, dialogs).

    The sync API runs those callbacks only while a Playwright call is in progress, so a plain
    ``time.sleep`` poll never sees them; this one waits inside the page instead."""
    for _ in range(int(timeout / 0.05) + 1):
        value = condition()
        if value:
            return value
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# A live page is settled once its stream is open and the re-read that opening starts has come back.
_LIVE_AND_SETTLED = (
    "document.querySelector('#live-state')?.textContent === 'Live'"
    " && !document.querySelector('.htmx-request')"
)


def wait_live_and_settled(page: Any) -> None:
    wait_in_page(page, lambda: page.evaluate(_LIVE_AND_SETTLED), timeout=10, what="the live page settled")
