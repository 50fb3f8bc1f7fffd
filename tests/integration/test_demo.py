"""`refundwatch demo` end to end: it comes up, refunds succeed through the API, Ctrl-C stops everything
and leaves nothing behind (no process, no file)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from _services import ensure_redis, flush_redis_db, free_port

pytestmark = pytest.mark.slow

BANNER_TIMEOUT = 120.0
SUCCESS_TIMEOUT = 30.0


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
        assert key is not None, banner
        assert simulator is not None, banner
        assert f"http://127.0.0.1:{port}/" in banner
        own = re.search(r"Logs\s+(var/demo-[\w-]+)/log/  \(.*\bweb\.log\b", banner)
        assert own is not None, banner
        workspace = tmp_path / own.group(1)
        assert ("(private, stopped with the demo)" in banner) is private, banner
        assert (
            f"sqlite+aiosqlite:///{own.group(1)}/refundwatch.db (the demo's own, removed when it stops)"
            in banner
        )
        for name in ("web", "worker", "simulator", "idp"):
            assert (workspace / "log" / f"{name}.log").is_file()
        assert (workspace / "connections.toml").is_file()
        assert (workspace / "refundwatch.db").is_file()

        headers = {"Authorization": f"Bearer {key.group(1)}"}
        url = f"http://127.0.0.1:{port}/api/v1/refunds"
        succeeded: list[dict[str, object]] = []
        deadline = time.monotonic() + SUCCESS_TIMEOUT
        with httpx2.Client(timeout=10) as client:
            while not succeeded and time.monotonic() < deadline:
                answer = client.get(url, params={"status": "succeeded"}, headers=headers)
                assert answer.status_code == 200, answer.text
                succeeded = answer.json()["data"]
                if not succeeded:
                    time.sleep(0.5)
            assert succeeded, f"no refund succeeded within {SUCCESS_TIMEOUT:g} s"
            refund = client.get(f"{url}/{succeeded[0]['id']}", headers=headers).json()
            assert refund["status"] == "succeeded"
            assert refund["gateway_refund_id"]
            assert refund["payment_reference"].startswith("pi_demo_")
        assert proc.poll() is None, out.read_text(errors="replace")
        _sign_in_as_demo_user(banner, port)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, out.read_text(errors="replace")
        assert not _port_in_use(port), "the web server is still listening"
        assert not _port_in_use(int(simulator.group(1))), "the simulator is still listening"
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
