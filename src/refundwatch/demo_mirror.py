"""In the demo, every payment refundwatch registers (API, staff screens, CSV) is made known to the
gateway simulator too, so a refund of it can execute there: a real processor knows its own payments.

The demo traffic registers its own payments with the simulator (``pi_demo_…``, ``DEMO…``, ``pay_demo…``);
this mirror picks up the others by polling the payments table every second. Payment ids are UUIDv7, so
"created in the last few seconds" is a primary-key range; the seconds of overlap catch payments committed
out of id order, and the simulator's registration is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from uuid import UUID

import httpx2
from sqlalchemy import and_, not_, select

from refundwatch.db.models import Payment
from refundwatch.runtime import Runtime

log = logging.getLogger("refundwatch.demo")
LOOKBACK_MS = 10_000
TRAFFIC_PREFIXES = ("pi_demo_", "DEMO", "pay_demo")  # demo_traffic registers these itself


def _uuid7_floor(ms: int) -> UUID:
    """The smallest UUIDv7 of that millisecond: ids from then on sort at or above it."""
    return UUID(int=ms << 80)


class SimulatorMirror:
    def __init__(
        self, rt: Runtime, client: httpx2.AsyncClient, simulator_url: str, report: Callable[[str], None]
    ) -> None:
        self.rt, self.client, self.simulator_url, self.report = rt, client, simulator_url, report
        self.since_ms = int(time.time() * 1000) - LOOKBACK_MS
        self.seen: dict[UUID, int] = {}  # payment id -> when registered (ms), pruned after the lookback

    async def run(self, interval: float = 1.0) -> None:
        while True:
            try:
                await self.sync()
            except (httpx2.HTTPError, OSError) as exc:
                log.warning("demo: could not tell the simulator about new payments: %s", exc)
            await asyncio.sleep(interval)

    async def sync(self) -> int:
        """Register the payments created since the last poll; returns how many were new."""
        now_ms = int(time.time() * 1000)
        floor = _uuid7_floor(min(self.since_ms, now_ms - LOOKBACK_MS))
        not_traffic = and_(*(not_(Payment.payment_reference.startswith(p)) for p in TRAFFIC_PREFIXES))
        async with self.rt.db.read_session() as session:
            rows = (
                await session.execute(
                    select(
                        Payment.id,
                        Payment.connection_id,
                        Payment.payment_reference,
                        Payment.amount,
                        Payment.currency,
                    )
                    .where(Payment.id >= floor, not_traffic)
                    .order_by(Payment.id)
                    .limit(500)
                )
            ).all()
        added = 0
        for row in rows:
            if row.id in self.seen:
                continue
            conn = await self.rt.connections.by_id(row.connection_id)
            if conn is None:
                continue
            body = {
                "processor": conn.processor,
                "payment_reference": row.payment_reference,
                "amount": row.amount,
                "currency": row.currency,
            }
            answer = await self.client.post(f"{self.simulator_url}/_control/payments", json=body)
            self.seen[row.id] = now_ms
            if answer.status_code in (200, 201):
                added += 1
                self.report(f"  payment {row.payment_reference} ({conn.name}) is now known to the simulator")
            else:
                self.report(
                    f"  the simulator refused payment {row.payment_reference} ({answer.status_code}): "
                    f"{answer.text[:200]}"
                )
        self.since_ms = now_ms - LOOKBACK_MS
        self.seen = {k: v for k, v in self.seen.items() if v >= now_ms - 2 * LOOKBACK_MS}
        return added
