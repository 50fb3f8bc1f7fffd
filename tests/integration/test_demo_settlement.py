"""The demo's settlement imports (``refundwatch.demo_settlement``) against a real stack: each
connection's report is fetched from the simulator and imported, then only what was booked since."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest

from refundwatch.config import Settings
from refundwatch.demo_settlement import SettlementImports
from refundwatch.runtime import Runtime
from stack import Stack

pytestmark = pytest.mark.slow


def test_the_demo_imports_each_connections_report_and_then_only_what_is_new(
    stack: Stack, tmp_path: Path
) -> None:
    done = [stack.refund(stack.payment(5_000), amount) for amount in (700, 800)]
    for response in done:
        assert response.status_code == 201, response.text
        stack.wait_status(response.json()["id"], "succeeded")
    said: list[str] = []

    async def run() -> tuple[str, str]:
        rt = Runtime.build(Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url))
        try:
            async with httpx2.AsyncClient(timeout=30) as client:
                imports = SettlementImports(
                    rt, client, stack.sim_url, {"stripe-test": "stripe"}, tmp_path / "settlement", said.append
                )
                return await imports.import_one("stripe-test"), await imports.import_one("stripe-test")
        finally:
            await rt.close()

    first, again = asyncio.run(run())
    assert said == [first, again], said
    assert first.startswith("settlement: stripe-test: ")
    assert first.endswith(" 0 breaks found"), first
    assert ", 2 matched," in first, first
    assert again.endswith(" 0 breaks found"), again
    assert not list((tmp_path / "settlement").iterdir())  # imported, then removed: nothing left behind
