"""Liveness, readiness and Prometheus metrics (CONTRACT §5)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import MediaType, Request, Response, get
from sqlalchemy import func, select, text

from refundwatch.db.models import Refund
from refundwatch.web.state import runtime_of
from refundwatch.webhooks.services import REJECTED_COUNTER


@get("/healthz", media_type=MediaType.TEXT, include_in_schema=False)
async def healthz() -> str:
    return "ok"


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    rt = runtime_of(request)
    checks: dict[str, str] = {}

    async def database() -> None:
        async with rt.db.read_session() as session:
            await session.execute(text("SELECT 1"))

    async def redis() -> None:
        await rt.require_redis().ping()

    for name, probe in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports, it does not raise
            checks[name] = f"down: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    return Response(checks, status_code=200 if ready else 503)


@get("/metrics", media_type="text/plain; version=0.0.4", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> str:
    rt = runtime_of(request)
    lines = [
        "# HELP refundwatch_refunds Refunds by connection and status.",
        "# TYPE refundwatch_refunds gauge",
    ]
    async with rt.db.read_session() as session:
        rows = (
            await session.execute(
                select(Refund.connection_id, Refund.status, func.count()).group_by(
                    Refund.connection_id, Refund.status
                )
            )
        ).all()
    for connection_id, status, count in rows:
        info = await rt.connections.by_id(connection_id)
        name = info.name if info else "unknown"
        lines.append(f'refundwatch_refunds{{connection="{name}",status="{status}"}} {count}')
    lines += [
        "# HELP refundwatch_webhooks_rejected_total Webhook deliveries rejected (bad signature).",
        "# TYPE refundwatch_webhooks_rejected_total counter",
    ]
    try:
        rejected = await rt.require_redis().hgetall(REJECTED_COUNTER)  # type: ignore[misc]
    except Exception:  # noqa: BLE001
        rejected = {}
    for name, count in sorted(rejected.items()):
        lines.append(f'refundwatch_webhooks_rejected_total{{connection="{name.decode()}"}} {int(count)}')
    return "\n".join(lines) + "\n"
