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


def test_the_demo_imports_paypals_settlement_report_too(stack: Stack, tmp_path: Path) -> None:
    """PayPal's STL report (a file, ``("paypal", "file")``) is imported the same way: the demo's
    ``paypal-us`` gets its reconciliation from it."""
    reference = stack.payment(5_000, processor="paypal")
    done = [stack.refund(reference, amount) for amount in (700, 800)]
    for response in done:
        assert response.status_code == 201, response.text
        stack.wait_status(response.json()["id"], "succeeded")
    said: list[str] = []

    async def run() -> str:
        rt = Runtime.build(Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url))
        try:
            async with httpx2.AsyncClient(timeout=30) as client:
                imports = SettlementImports(
                    rt, client, stack.sim_url, {"paypal-test": "paypal"}, tmp_path / "settlement", said.append
                )
                return await imports.import_one("paypal-test")
        finally:
            await rt.close()

    line = asyncio.run(run())
    assert said == [line], said
    assert line.startswith("settlement: paypal-test: "), line
    assert line.endswith(" 0 breaks found"), line
    assert ", 2 matched," in line, line


def test_the_demo_imports_checkouts_settlement_report_too(stack: Stack, tmp_path: Path) -> None:
    """Checkout.com's Financial actions report (a file, ``("checkout", "file")``) is imported the same
    way: the demo's ``checkout-eu`` gets its reconciliation from it."""
    reference = stack.payment(5_000, processor="checkout")
    done = [stack.refund(reference, amount) for amount in (700, 800)]
    for response in done:
        assert response.status_code == 201, response.text
        stack.wait_status(response.json()["id"], "succeeded")
    said: list[str] = []

    async def run() -> tuple[str, str]:
        rt = Runtime.build(Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url))
        try:
            async with httpx2.AsyncClient(timeout=30) as client:
                processors = {"checkout-test": "checkout"}
                imports = SettlementImports(
                    rt, client, stack.sim_url, processors, tmp_path / "settlement", said.append
                )
                return await imports.import_one("checkout-test"), await imports.import_one("checkout-test")
        finally:
            await rt.close()

    first, again = asyncio.run(run())
    assert said == [first, again], said
    assert first.startswith("settlement: checkout-test: "), first
    assert first.endswith(" 0 breaks found"), first
    assert ", 2 matched," in first, first
    assert again.endswith(" 0 breaks found"), again
