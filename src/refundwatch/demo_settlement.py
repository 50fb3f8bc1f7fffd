"""In the demo, each connection's settlement report is fetched from the simulator and imported every
few minutes, as a finance team would import a processor's payout reports, so ``/reconciliation`` and
the dashboard's reconciliation panel have real content (the demo traffic's faults leave some breaks).

Each fetch asks for the lines booked since a minute before the last one: lines seen before come again
unchanged and are recognised as the same lines, so the overlap costs nothing and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx2

from refundwatch.audit.actions import Actor
from refundwatch.lib.exceptions import RefundwatchError
from refundwatch.reconciliation.importing import import_report
from refundwatch.reconciliation.matching import match_imported
from refundwatch.runtime import Runtime

log = logging.getLogger("refundwatch.demo")
DEMO_FINANCE = Actor("system", "demo-settlement")
FIRST_AFTER_SECONDS = 60.0  # the seeded refunds have settled by then
EVERY_SECONDS = 180.0
OVERLAP_SECONDS = 60


class SettlementImports:
    def __init__(
        self,
        rt: Runtime,
        client: httpx2.AsyncClient,
        simulator_url: str,
        processors: Mapping[str, str],  # connection name -> processor
        directory: Path,
        report: Callable[[str], None],
    ) -> None:
        self.rt, self.client, self.simulator_url = rt, client, simulator_url
        self.processors, self.directory, self.report = processors, directory, report
        self.since: dict[str, int] = {}
        self.count = 0

    async def run(self) -> None:
        await asyncio.sleep(FIRST_AFTER_SECONDS)
        while True:
            for connection in self.processors:
                try:
                    await self.import_one(connection)
                except (httpx2.HTTPError, OSError, RefundwatchError) as exc:
                    log.warning("demo: settlement import for %s failed: %s", connection, exc)
            await asyncio.sleep(EVERY_SECONDS)

    async def import_one(self, connection: str) -> str:
        processor = self.processors[connection]
        started = int(time.time())
        params: dict[str, str | int] = {"connection": connection}
        if connection in self.since:
            params["since"] = self.since[connection] - OVERLAP_SECONDS
        response = await self.client.get(f"{self.simulator_url}/_control/reports/{processor}", params=params)
        response.raise_for_status()
        self.count += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{connection}-{self.count:04d}.csv"
        path.write_bytes(response.content)
        imported = await import_report(self.rt, connection, path, DEMO_FINANCE)
        summary = await match_imported(self.rt, imported)
        path.unlink(missing_ok=True)  # kept in the database, raw; the demo leaves no files behind
        self.since[connection] = started
        line = (
            f"settlement: {connection}: {imported.lines} lines read, {summary.matched} matched, "
            f"{sum(summary.breaks.values())} breaks found"
        )
        self.report(line)
        return line
