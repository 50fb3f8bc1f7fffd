"""`refundwatch demo` end to end: it comes up, refunds succeed through the API (PayPal's too, pending
eCheck refunds settling by certificate-verified webhooks, and Checkout.com's, accepted and then settled
by signed webhooks), Ctrl-C stops everything and leaves nothing behind (no process, no file)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest

from _services import ensure_redis, flush_redis_db, free_port, one_demo_at_a_time

pytestmark = pytest.mark.slow

BANNER_TIMEOUT = 120.0
SUCCESS_TIMEOUT = 30.0
# A quarter of PayPal's demo refunds answer PENDING and settle 8 s later: a minute sees several.
PAYPAL_TIMEOUT = 60.0
# Checkout.com's demo refunds settle 4 s after being accepted; the PayPal check has already waited.
CHECKOUT_TIMEOUT = 60.0


@pytest.fixture
def alone() -> Iterator[None]:
    """No other demo of this machine's tests starts meanwhile (they would race for its ports)."""
    with one_demo_at_a_time():
        yield


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_in(directory: Path) -> list[str]:
    """Processes working in `directory` or below it."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).is_relative_to(directory):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command}")
        except OSError:
            continue
    return found


def _wait_for_banner(proc: subprocess.Popen[bytes], out: Path) -> str:
    deadline = time.monotonic() + BANNER_TIMEOUT
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "Press Ctrl-C to stop" in text:
            return text
        if proc.poll() is not None:
            pytest.fail(f"demo exited with {proc.returncode} before its banner:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"no banner within {BANNER_TIMEOUT:g} s:\n{out.read_text(errors='replace')}")


def _redis_for_demo() -> tuple[str, bool]:
    """A Redis URL for the demo, and whether the demo is expected to start its own.

    With redis-server installed, the URL points at a port where nothing answers: the demo starts a
    private server (that path gets tested too), and its worker cannot take jobs of other test runs
    from a shared queue. Without it, the shared test database, flushed before and after.
    """
    if shutil.which("redis-server"):
        return f"redis://127.0.0.1:{free_port()}/0", True
    url = ensure_redis()
    flush_redis_db(url)
    return url, False


def _sign_in_as_demo_user(banner: str, port: int) -> None:
    """The banner's demo login works against the demo's own provider and lands on the dashboard."""
    login = re.search(r"Sign in as\s+(ivan-initiator) / (\S+)", banner)
    assert login is not None, banner
    with httpx2.Client(timeout=10, follow_redirects=True) as browser:
        form_page = browser.get(f"http://127.0.0.1:{port}/")
        action = re.search(r'<form id="login" method="post" action="([^"]+)"', form_page.text)
        assert action is not None, form_page.text[:500]
        dashboard = browser.post(
            httpx2.URL(str(form_page.url)).join(action.group(1)),
            data={"username": login.group(1), "password": login.group(2)},
        )
        assert dashboard.status_code == 200, dashboard.text[:500]
        assert str(dashboard.url) == f"http://127.0.0.1:{port}/"
        assert "ivan-initiator" in dashboard.text


def _receiver_shows_verified_events(
    client: httpx2.Client, receiver_port: int, headers: dict[str, str], port: int
) -> None:
    """The receiver is the endpoint for every event (the demo key may manage endpoints), and the
    refunds' events reach it with signatures that verify."""
    hooks = client.get(f"http://127.0.0.1:{port}/api/v1/webhook-endpoints", headers=headers)
    assert hooks.status_code == 200, hooks.text
    (endpoint,) = hooks.json()["data"]
    assert endpoint["url"] == f"http://127.0.0.1:{receiver_port}/hooks"
    assert len(endpoint["events"]) > 10
    receiver = f"http://127.0.0.1:{receiver_port}"
    deadline = time.monotonic() + SUCCESS_TIMEOUT
    events: list[dict[str, object]] = []
    while not any(e["type"] == "refund.succeeded" for e in events) and time.monotonic() < deadline:
        events = client.get(f"{receiver}/events.json").json()["events"]
        time.sleep(0.3)
    assert any(e["type"] == "refund.succeeded" for e in events), events
    assert all(e["verified"] for e in events), events
    assert "refund.succeeded" in client.get(receiver).text


def _settled_after_pending(refund: dict[str, Any]) -> bool:
    """A PayPal refund that answered PENDING (an eCheck) and then succeeded by PayPal's webhook."""
    events = cast(list[dict[str, str]], refund["events"])
    pending = [e for e in events if e["status"] == "processing" and "PENDING (ECHECK)" in e["detail"]]
    settled = [e for e in events if e["status"] == "succeeded" and "PAYMENT.CAPTURE.REFUNDED" in e["detail"]]
    return refund["status"] == "succeeded" and bool(pending) and bool(settled)


def _paypal_refunds_settle_by_verified_webhooks(
    client: httpx2.Client, url: str, headers: dict[str, str], simulator_port: int
) -> None:
    """The demo's PayPal connection has live traffic: refunds succeed, a PENDING eCheck refund settles
    later through PAYMENT.CAPTURE.REFUNDED, and every PayPal webhook the simulator signed with its
    certificate was accepted (certificate mode: no delivery refused as invalid_signature)."""
    params = {"connection": "paypal-us", "limit": 200}
    refunds: list[dict[str, Any]] = []
    deadline = time.monotonic() + PAYPAL_TIMEOUT
    while time.monotonic() < deadline:
        answer = client.get(url, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        refunds = answer.json()["data"]
        if any(_settled_after_pending(r) for r in refunds):
            break
        time.sleep(1.0)
    succeeded = [r for r in refunds if r["status"] == "succeeded"]
    assert succeeded, f"no PayPal refund succeeded within {PAYPAL_TIMEOUT:g} s: {refunds}"
    assert all(r["gateway_refund_id"] and len(r["payment_reference"]) == 17 for r in succeeded)
    assert any(_settled_after_pending(r) for r in refunds), [
        [(e["status"], e["detail"]) for e in r["events"]] for r in refunds
    ]
    deliveries = client.get(
        f"http://127.0.0.1:{simulator_port}/_control/webhooks", params={"processor": "paypal"}
    ).json()
    attempts = [a for d in deliveries for a in d["attempt_log"] if a["status_code"] is not None]
    assert attempts, deliveries
    # A signature refused is 401 invalid_signature (400 for a body refundwatch cannot read).
    refused = [a for a in attempts if a["status_code"] in (400, 401)]
    assert refused == [], refused
    delivered = {d["type"] for d in deliveries if d["state"] == "delivered"}
    assert {"PAYMENT.REFUND.PENDING", "PAYMENT.CAPTURE.REFUNDED"} <= delivered, delivered


def _settled_by_checkout_webhook(refund: dict[str, Any]) -> bool:
    """A Checkout.com refund only accepted at first (processing) that succeeded by payment_refunded."""
    events = cast(list[dict[str, str]], refund["events"])
    accepted = [e for e in events if e["status"] == "processing"]
    settled = [e for e in events if e["status"] == "succeeded" and "payment_refunded" in e["detail"]]
    return refund["status"] == "succeeded" and bool(accepted) and bool(settled)


def _checkout_refunds_settle_by_signed_webhooks(
    client: httpx2.Client, url: str, headers: dict[str, str], simulator_port: int
) -> None:
    """The demo's Checkout.com connection has live traffic: its refunds are only accepted (202,
    processing) and reach succeeded through payment_refunded webhooks signed with Cko-Signature, none
    of which refundwatch refused (no invalid_signature)."""
    params = {"connection": "checkout-eu", "limit": 200}
    refunds: list[dict[str, Any]] = []
    deadline = time.monotonic() + CHECKOUT_TIMEOUT
    while time.monotonic() < deadline:
        answer = client.get(url, params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        refunds = answer.json()["data"]
        if any(_settled_by_checkout_webhook(r) for r in refunds):
            break
        time.sleep(1.0)
    settled = [r for r in refunds if _settled_by_checkout_webhook(r)]
    assert settled, [(r["status"], [(e["status"], e["detail"]) for e in r["events"]]) for r in refunds]
    for refund in settled:
        assert refund["gateway_refund_id"].startswith("act_"), refund
        assert refund["payment_reference"].startswith("pay_demo"), refund
        assert len(refund["payment_reference"]) == 30, refund  # pay_ and 26 characters
    deliveries = client.get(
        f"http://127.0.0.1:{simulator_port}/_control/webhooks", params={"processor": "checkout"}
    ).json()
    attempts = [a for d in deliveries for a in d["attempt_log"] if a["status_code"] is not None]
    assert attempts, deliveries
    refused = [a for a in attempts if a["status_code"] in (400, 401)]  # 401: invalid_signature
    assert refused == [], refused
    delivered = {d["type"] for d in deliveries if d["state"] == "delivered"}
    assert "payment_refunded" in delivered, delivered


@pytest.mark.usefixtures("alone")
def test_demo_serves_refunds_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    redis_url, private = _redis_for_demo()
    port = free_port()
    env = {**os.environ, "REFUNDWATCH_REDIS_URL": redis_url}
    for name in ("REFUNDWATCH_BASE_URL", "REFUNDWATCH_DATABASE_URL", "REFUNDWATCH_AUDIT_ANCHOR"):
        env.pop(name, None)  # the demo's own: in its directory, removed when it stops
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refundwatch", "demo", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        banner = _wait_for_banner(proc, out)
        key = re.search(r"API key\s+(rw_\S+)", banner)
        simulator = re.search(r"Simulator\s+http://127\.0\.0\.1:(\d+)", banner)
        receiver = re.search(r"Webhooks\s+http://127\.0\.0\.1:(\d+)/", banner)
        mail = re.search(r"Alert mail\s+http://127\.0\.0\.1:(\d+)/", banner)
        assert mail is not None, banner
        assert key is not None, banner
        assert simulator is not None, banner
        assert receiver is not None, banner
        assert "webhooks:write" in banner
        assert f"http://127.0.0.1:{port}/" in banner
        own = re.search(r"Logs\s+(var/demo-[\w-]+)/log/  \(.*\bweb\.log\b", banner)
        assert own is not None, banner
        workspace = tmp_path / own.group(1)
        assert ("(private, stopped with the demo)" in banner) is private, banner
        assert (
            f"sqlite+aiosqlite:///{own.group(1)}/refundwatch.db (the demo's own, removed when it stops)"
            in banner
        )
        for name in ("web", "worker", "simulator", "idp", "receiver", "mail"):
            assert (workspace / "log" / f"{name}.log").is_file()
        # The simulator's PayPal test CA, which refundwatch trusts for PayPal's webhook certificates.
        assert (workspace / "paypal-certs" / "ca.pem").is_file()
        assert (workspace / "connections.toml").is_file()
        assert (workspace / "refundwatch.db").is_file()

        headers = {"Authorization": f"Bearer {key.group(1)}"}
        url = f"http://127.0.0.1:{port}/api/v1/refunds"
        succeeded: list[dict[str, object]] = []
        deadline = time.monotonic() + SUCCESS_TIMEOUT
        with httpx2.Client(timeout=10) as client:
            while not succeeded and time.monotonic() < deadline:
                answer = client.get(
                    url, params={"status": "succeeded", "connection": "stripe-eu"}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                succeeded = answer.json()["data"]
                if not succeeded:
                    time.sleep(0.5)
            assert succeeded, f"no refund succeeded within {SUCCESS_TIMEOUT:g} s"
            refund = client.get(f"{url}/{succeeded[0]['id']}", headers=headers).json()
            assert refund["status"] == "succeeded"
            assert refund["gateway_refund_id"]
            assert refund["payment_reference"].startswith("pi_demo_")
            _receiver_shows_verified_events(client, int(receiver.group(1)), headers, port)
            _paypal_refunds_settle_by_verified_webhooks(client, url, headers, int(simulator.group(1)))
            _checkout_refunds_settle_by_signed_webhooks(client, url, headers, int(simulator.group(1)))
            caught = client.get(f"http://127.0.0.1:{mail.group(1)}/mail.json")  # alerts land here
            assert caught.status_code == 200, caught.text
        assert proc.poll() is None, out.read_text(errors="replace")
        _sign_in_as_demo_user(banner, port)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, out.read_text(errors="replace")
        assert not _port_in_use(port), "the web server is still listening"
        assert not _port_in_use(int(simulator.group(1))), "the simulator is still listening"
        assert not _port_in_use(int(receiver.group(1))), "the webhook receiver is still listening"
        assert not _port_in_use(int(mail.group(1))), "the mail catcher is still listening"
        # Every child (the private redis-server too) ran in tmp_path or below it.
        assert _processes_in(tmp_path.resolve()) == []
        # Nothing left behind: its database, logs, connections file and anchors went with var/.
        assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.out"]
        assert f"removed the demo's files ({own.group(1)})" in out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not private:
            flush_redis_db(redis_url)  # leave no demo jobs for whoever uses the test database next
