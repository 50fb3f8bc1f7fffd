"""Gateway health checks, run by the worker: each connection's lightweight authenticated call."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from refundwatch.connections.services import ConnectionInfo
from refundwatch.dashboard.rollups import record_health
from refundwatch.dashboard.signals import HEALTH, signals
from refundwatch.db.models import HealthCheck
from refundwatch.gateways.registry import get_gateway, supported_processors
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
_LOCK = "refundwatch:health:{name}"


async def _check(rt: Runtime, conn: ConnectionInfo) -> HealthCheck:
    gateway = get_gateway(conn.processor)
    try:
        result = await gateway.health_check(rt.require_http(), conn.credentials)
        ok, latency, error = result.ok, result.latency_ms, result.error
    except Exception as exc:  # noqa: BLE001 - a broken adapter must show as down, not stop the checks
        ok, latency, error = False, 0, f"check crashed: {exc.__class__.__name__}"
    return HealthCheck(
        connection_id=conn.id,
        at=dt.datetime.now(dt.UTC),
        ok=ok,
        latency_ms=latency,
        error=(error or None) and gateway.scrub(error)[:500],
    )


async def run_due_checks(rt: Runtime) -> int:
    """Check every enabled connection whose interval has passed; once per interval across all workers."""
    redis = rt.require_redis()
    due: list[ConnectionInfo] = []
    for conn in await rt.connections.all():
        if not conn.enabled or conn.processor not in supported_processors():
            continue
        if await redis.set(
            _LOCK.format(name=conn.name), b"1", nx=True, ex=conn.health_check_interval_seconds
        ):
            due.append(conn)
    if not due:
        return 0
    results = await asyncio.gather(*(_check(rt, c) for c in due))
    if rt.breaker is not None:
        for conn, check in zip(due, results, strict=True):
            if check.ok:  # a failed check alone does not open the circuit; failed refund calls do
                rt.breaker.record(check.connection_id, ok=True, name=conn.name)
    async with rt.db.session() as session:
        session.add_all(results)
        await record_health(await session.connection(), results)  # same transaction as the checks
        await session.commit()
    signals.notice(HEALTH)
    return len(results)
