"""Regenerate the screenshots in docs/screenshots/ from a busy demo, in a real Chromium.

    .venv/bin/python scripts/screenshots.py                    # starts its own demo, 16 min of traffic
    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8000 --warmup 0   # a running demo

Writes, at a 1366x900 viewport (full page):

- ``dashboard-light.png`` and ``dashboard-dark.png``: the dashboard (``/?range=15m`` by default), signed
  in as ``alice-viewer`` through the demo's OpenID provider, once the live stream is open;
- ``refund-timeline.png``: among the newest refunds, the page of one whose timeline tells the whole
  story (requested through the API, sent by the worker, left pending by the processor, settled by its
  webhook), with its processor exchange opened.

Without ``--url`` it runs ``refundwatch demo --port <port>`` in a temporary directory (its own SQLite
database and, because it is pointed at a Redis that does not answer, its own private redis-server, so it
never shares queues or live channels with another demo), waits ``--warmup`` seconds of traffic (16 min: the
15-minute sparklines are full), takes the pictures and stops the demo. Needs Playwright and Chromium
(``/usr/bin/chromium`` by default, ``--chromium`` otherwise). Look at the images before committing them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1366, "height": 900}
PASSWORD = "password"  # noqa: S105 - the demo provider's published password


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo(port: int) -> Iterator[str]:
    """A ``refundwatch demo`` of our own; yields its web URL once it prints its banner."""
    workdir = Path(tempfile.mkdtemp(prefix="refundwatch-screenshots-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFUNDWATCH_", "IDP_"))}
    env["REFUNDWATCH_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nobody there: a private one
    binary = Path(sys.executable).with_name("refundwatch")
    log = (workdir / "demo.out").open("wb")
    proc = subprocess.Popen(
        [str(binary), "demo", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while "refundwatch demo is running" not in (workdir / "demo.out").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the demo did not start:\n{(workdir / 'demo.out').read_text()}")
            time.sleep(0.5)
        print(f"demo running on http://127.0.0.1:{port} (files in {workdir})", flush=True)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)  # the demo stops everything it started
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    shutil.rmtree(workdir, ignore_errors=True)  # kept (with the demo's logs) when something failed


def sign_in(page: Page, url: str, user: str, path: str) -> None:
    page.goto(url + path)
    if page.locator("#username").count() == 0:
        page.wait_for_selector("#username")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(url) + ".*"))


def settle(page: Page) -> None:
    """Live stream open, and a moment for the first pushed panels to land."""
    expect(page.locator("#live-state")).to_have_text("Live", timeout=15_000)
    page.wait_for_timeout(2_500)


def mid_minute() -> None:
    """The sparklines' last point is the current, unfinished minute: with only a few seconds of
    outcomes it swings wildly, so shoot the dashboard once the minute is half over."""
    second = time.time() % 60
    if second < 30:
        time.sleep(30 - second)


def timeline_score(page: Page, refund_id: str) -> int:
    """Higher for a refund whose timeline tells a whole story: accepted by the API, sent by the worker,
    left pending by the processor and settled by its webhook, now succeeded."""
    html = page.request.get(f"/refunds/{refund_id}/timeline").text()
    now = html.split("</p>", 1)[0]  # the "Now <status> · attempts …" line
    score = html.count('<li class="source-') + 2 * html.count('class="exchange"')
    score += 10 if "status-succeeded" in now else 0
    score += 5 if "status-processing" in html else 0
    score += 3 if "source-webhook" in html else 0
    # A retried refund keeps the first attempt's error on its page even once it succeeded (reported as
    # a bug); not what the documentation picture should show.
    score -= 20 if "retrying in" in html else 0
    return score


def shoot(url: str, out: Path, chromium: str, range_key: str, user: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for scheme in ("light", "dark"):
                context = browser.new_context(base_url=url, viewport=VIEWPORT, color_scheme=scheme)
                page = context.new_page()
                sign_in(page, url, user, f"/?range={range_key}")
                mid_minute()
                settle(page)
                target = out / f"dashboard-{scheme}.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"wrote {target}", flush=True)
                if scheme == "light":
                    candidates: list[str] = []
                    for href in page.locator("#panel-feed a[href^='/refunds/']").evaluate_all(
                        "links => links.map(a => a.getAttribute('href'))"
                    ):
                        if re.fullmatch(r"/refunds/[0-9a-f-]{36}", href):
                            candidates.append(href.rsplit("/", 1)[1])
                    page.goto("/refunds")
                    for href in page.locator("main a[href^='/refunds/']").evaluate_all(
                        "links => links.map(a => a.getAttribute('href'))"
                    ):
                        if re.fullmatch(r"/refunds/[0-9a-f-]{36}", href):
                            candidates.append(href.rsplit("/", 1)[1])
                    scored: list[tuple[int, str]] = sorted(
                        ((timeline_score(page, c), c) for c in dict.fromkeys(candidates)), reverse=True
                    )
                    if not scored:
                        raise SystemExit("no refund to show: is the demo's traffic running?")
                    page.goto(f"/refunds/{scored[0][1]}")
                    settle(page)
                    first = page.locator("#timeline-body details.exchange").first
                    if first.count():
                        first.locator("summary").click()  # one processor exchange, opened
                    target = out / "refund-timeline.png"
                    page.screenshot(path=str(target), full_page=True)
                    print(f"wrote {target} (refund {scored[0][1]})", flush=True)
                context.close()
        finally:
            browser.close()


CLIP = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": 2_400}
STAFF_PAGES = {
    "refunds.png": "/refunds",
    "approvals.png": "/approvals",
    "audit.png": "/audit",
    "api-keys.png": "/admin/api-keys",
    "gateways.png": "/gateways",
}


def shoot_staff(url: str, out: Path, chromium: str, user: str = "ada-admin") -> None:
    """The staff and admin screens, light scheme, each once its live stream (if any) is open."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=url, viewport=VIEWPORT, color_scheme="light")
            page = context.new_page()
            sign_in(page, url, user, "/refunds")
            for name, path in STAFF_PAGES.items():
                page.goto(path)
                page.wait_for_timeout(1_500)
                # Long lists (the audit log, the refunds) are cut after their first screens.
                page.screenshot(path=str(out / name), full_page=True, clip=CLIP)
                print(f"wrote {out / name}", flush=True)
            connection = page.locator("main a[href^='/admin/connections/']").first
            if connection.count():
                connection.click()
                page.wait_for_timeout(1_000)
                page.screenshot(path=str(out / "connection.png"), full_page=True)
                print(f"wrote {out / 'connection.png'}", flush=True)
            page.goto("/refunds")
            links = page.locator("main a[href^='/refunds/']").evaluate_all(
                "links => links.map(a => a.getAttribute('href'))"
            )
            form = "/refunds/new"
            for href in [h for h in links if re.fullmatch(r"/refunds/[0-9a-f-]{36}", h)][:10]:
                page.goto(href)  # a refund whose payment still has money left: the form with its figures
                new_refund = page.locator("a.new-refund").first
                if new_refund.count():
                    form = new_refund.get_attribute("href") or form
                    break
            page.goto(form)
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(out / "refund-new.png"), full_page=True)
            print(f"wrote {out / 'refund-new.png'}", flush=True)
            context.close()
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", help="a running demo's web URL (default: start one)")
    parser.add_argument("--port", type=int, default=0, help="port for the demo this script starts")
    parser.add_argument(
        "--warmup", type=float, default=960, help="seconds of traffic first (the 15m charts fill up)"
    )
    parser.add_argument("--range", dest="range_key", default="15m", help="dashboard time range")
    parser.add_argument("--user", default="alice-viewer", help="who signs in (password: password)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)

    def run(url: str) -> None:
        if args.warmup > 0:
            print(f"letting the traffic run for {args.warmup:g} s", flush=True)
            time.sleep(args.warmup)
        shoot(url.rstrip("/"), args.out, args.chromium, args.range_key, args.user)
        shoot_staff(url.rstrip("/"), args.out, args.chromium)

    if args.url:
        run(args.url)
    else:
        with demo(args.port or free_port()) as url:
            run(url)


if __name__ == "__main__":
    main()
