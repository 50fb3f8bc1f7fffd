"""Gateway health checks, run by the worker: each connection's lightweight authenticated call."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from refundwatch.connections.services import ConnectionInfo
from refundwatch.dashboard.rollups import record_health
from refundwatch.dashboard.signals import HEALTH, signals
from refundwatch.db.models import HealthCheck
from refundwatch.gateways.registry import get_gateway, supported_processors
from refundwatch.outgoing import outbox
from refundwatch.outgoing.events import GATEWAY_DOWN, GATEWAY_UP
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


async def _gateway_changes(
    session: AsyncSession, due: list[ConnectionInfo], results: list[HealthCheck]
) -> dict[str, list[tuple[UUID, dict[str, Any]]]]:
    """``gateway.down`` / ``gateway.up`` for each connection whose check turned out otherwise than
    its previous one (a first check ever is no change)."""
    changes: dict[str, list[tuple[UUID, dict[str, Any]]]] = {GATEWAY_DOWN: [], GATEWAY_UP: []}
    for conn, check in zip(due, results, strict=True):
        before = await session.scalar(
            select(HealthCheck.ok)
            .where(HealthCheck.connection_id == conn.id)
            .order_by(HealthCheck.at.desc())
            .limit(1)
        )
        if before is None or before == check.ok:
            continue
        data = {
            "connection": conn.name,
            "processor": conn.processor,
            "state": "up" if check.ok else "down",
            "checked_at": check.at.isoformat(),
            "latency_ms": check.latency_ms,
            "error": check.error,
        }
        changes[GATEWAY_UP if check.ok else GATEWAY_DOWN].append((conn.id, data))
    return changes


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
        changes = await _gateway_changes(session, due, results)
        session.add_all(results)
        await record_health(await session.connection(), results)  # same transaction as the checks
        for event_type, found in changes.items():  # outgoing webhooks, same transaction too
            await outbox.other_changes(session, event_type, found)
        await session.commit()
    signals.notice(HEALTH)
    return len(results)
