"""The one shared HTTP client for processor calls, and a timed request helper for adapters.

httpx2 (httpx's maintained next generation) keeps its pool healthy with many calls in flight, which
httpx 0.28 does not (STYLE.md, library traps). Timeouts are per connection and passed per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx2

USER_AGENT = "refundwatch/0.1"


def make_client(*, max_connections: int = 256, keepalive: int = 32) -> httpx2.AsyncClient:
    # Few idle connections kept: the pool checks every idle connection (a syscall each) whenever it
    # hands one out, so hundreds of idle ones cost more CPU than the occasional new connection in a
    # burst. max_connections still lets a slow processor have many calls in flight.
    return httpx2.AsyncClient(
        limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=keepalive),
        timeout=httpx2.Timeout(30.0, connect=5.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def timeout_for(seconds: float) -> httpx2.Timeout:
    return httpx2.Timeout(seconds, connect=min(5.0, seconds))


@dataclass(frozen=True, slots=True)
class Timed:
    response: httpx2.Response
    latency_ms: int


async def send(
    client: httpx2.AsyncClient,
    method: str,
    url: str,
    *,
    timeout_seconds: float,
    headers: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    json: object = None,
    content: bytes | None = None,
) -> Timed:
    """Send one request and time it. Transport errors propagate as httpx2 exceptions."""
    started = time.perf_counter()
    response = await client.request(
        method,
        url,
        headers=headers,
        data=data,
        json=json,
        content=content,
        timeout=timeout_for(timeout_seconds),
    )
    return Timed(response, int((time.perf_counter() - started) * 1000))
