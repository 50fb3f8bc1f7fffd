"""Liveness, readiness and Prometheus metrics (CONTRACT §5)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import MediaType, Request, Response, get
from sqlalchemy import text

from refundwatch.health.metrics import CONTENT_TYPE, scrape
from refundwatch.web.state import runtime_of


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


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format, from the rollups and Redis (health.metrics): a few small queries per
    scrape, the same answer from every process. Unauthenticated: counts and connection names only."""
    body = await scrape(runtime_of(request))
    return Response(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
