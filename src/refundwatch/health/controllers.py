"""Liveness, readiness and Prometheus metrics (CONTRACT §5)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

from litestar import HttpMethod, MediaType, Request, Response, get, route
from sqlalchemy import text

from refundwatch.config import Settings, get_settings
from refundwatch.health.metrics import CONTENT_TYPE, scrape
from refundwatch.web.state import runtime_of

log = logging.getLogger("refundwatch.web")


# GET and HEAD (RFC 9110 9.1: every general-purpose server supports both): monitors that probe with
# HEAD (UptimeRobot's default, for one) got 405 and reported a healthy service down.
@route(
    "/healthz",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    media_type=MediaType.TEXT,
    include_in_schema=False,
)
async def healthz() -> str:
    return "ok"


@route("/readyz", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
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
async def metrics(request: Request[Any, Any, Any]) -> Response[Any]:
    """Prometheus text format, from the rollups and Redis (health.metrics): a few small queries per
    scrape, the same answer from every process. It shows the money in flight per currency, so with
    REFUNDWATCH_METRICS_TOKEN set only a scraper that sends that bearer token gets it."""
    refusal = metrics_refusal(request.headers.get("authorization"), get_settings().metrics_token)
    if refusal is not None:
        return refusal
    body = await scrape(runtime_of(request))
    return Response(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def metrics_refusal(authorization: str | None, token: str) -> Response[dict[str, str]] | None:
    """None when the request may read /metrics; otherwise the 401 to answer. The token is compared
    in constant time (as digests, so not even its length shows)."""
    if not token:
        return None
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(_digest(given.strip()), _digest(token)):
        return None
    code, message = (
        ("invalid_token", "the metrics token is wrong")
        if given.strip()
        else ("unauthenticated", "send Authorization: Bearer <REFUNDWATCH_METRICS_TOKEN>")
    )
    return Response(
        {"code": code, "message": message},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="metrics"', "Cache-Control": "no-store"},
    )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def warn_if_metrics_open(settings: Settings) -> None:
    """Start-up says when /metrics is open to anyone who can reach it."""
    if not settings.metrics_token:
        log.warning(
            "REFUNDWATCH_METRICS_TOKEN is not set: GET /metrics is open to anyone who can reach it "
            "(it shows money in flight per currency); set it and give Prometheus the same token"
        )
