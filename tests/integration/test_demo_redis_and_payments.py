"""`refundwatch demo` on a Redis it shares: it works in a database of its own and empties it at Ctrl-C,
leaving everyone else's data alone; and a payment registered through the API becomes known to the
simulator, so a refund of it succeeds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import redis

from _services import free_port, one_demo_at_a_time, start_private_redis
from stack import wait_until

pytestmark = pytest.mark.slow


def _banner(proc: subprocess.Popen[bytes], out: Path) -> str:
    def ready() -> str | None:
        text = out.read_text(errors="replace")
        assert proc.poll() is None, f"demo exited with {proc.returncode}:\n{text}"
        return text if "Press Ctrl-C to stop" in text else None

    return str(wait_until(ready, timeout=180, interval=0.2, what="the demo's banner"))


@pytest.fixture
def alone() -> Iterator[None]:
    """No other demo of this machine's tests starts meanwhile (they would race for its ports)."""
    with one_demo_at_a_time():
        yield


@pytest.mark.usefixtures("alone")
def test_demo_uses_its_own_redis_database_and_knows_api_payments(tmp_path: Path) -> None:
    shared = start_private_redis().rsplit("/", 1)[0] + "/0"  # a Redis "someone else" uses: db 0
    others = redis.Redis.from_url(shared)
    others.set("someone:else", "keep me")
    port = free_port()
    env = {
        **os.environ,
        "REFUNDWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        "REFUNDWATCH_REDIS_URL": shared,
    }
    env.pop("REFUNDWATCH_BASE_URL", None)
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "refundwatch", "demo", "--port", str(port), "--no-traffic"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        banner = _banner(proc, out)
        used = re.search(r"Redis\s+(redis://\S+/(\d+)) \(the demo's own database", banner)
        assert used is not None, banner
        assert used.group(2) != "0"
        assert redis.Redis.from_url(used.group(1)).dbsize() > 0  # jobs, sessions, live updates
        assert "/_control/payments" in re.search(r"Payments .*", banner).group(0)  # type: ignore[union-attr]
        key = re.search(r"API key\s+(rw_\S+)", banner).group(1)  # type: ignore[union-attr]
        sim = re.search(r"Simulator\s+(http://\S+)", banner).group(1)  # type: ignore[union-attr]

        reference = f"pi_mine_{uuid.uuid4().hex[:12]}"
        web = f"http://127.0.0.1:{port}"
        with httpx2.Client(base_url=web, timeout=10, headers={"Authorization": f"Bearer {key}"}) as api:
            created = api.post(
                "/api/v1/payments",
                json={"connection": "stripe-eu", "payment_reference": reference, "amount": 5_000,
                      "currency": "EUR", "captured_at": "2026-12-01T10:00:00Z"},
            )  # fmt: skip
            assert created.status_code == 201, created.text

            def known() -> bool:
                payments = httpx2.get(f"{sim}/_control/payments", params={"processor": "stripe"}).json()
                return any(p["payment_reference"] == reference for p in payments)

            wait_until(known, timeout=15, what="the simulator knows the payment")
            refund = api.post(
                "/api/v1/refunds",
                headers={"Idempotency-Key": uuid.uuid4().hex},
                json={"payment_reference": reference, "amount": 1_500, "currency": "EUR", "reason": "return"},
            )
            assert refund.status_code == 201, refund.text

            def status() -> str | None:
                value = api.get(f"/api/v1/refunds/{refund.json()['id']}").json()["status"]
                return value if value in ("succeeded", "failed", "manual_review") else None

            assert wait_until(status, timeout=60, what="the refund finished") == "succeeded"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, out.read_text(errors="replace")
        for db in range(1, 16):
            assert redis.Redis.from_url(shared.rsplit("/", 1)[0] + f"/{db}").dbsize() == 0, db
        assert others.keys("*") == [b"someone:else"]
        # The database it was given is the caller's: kept; everything else the demo wrote is gone.
        assert "demo.db (yours, kept)" in banner
        assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.db", "demo.out"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        others.close()
