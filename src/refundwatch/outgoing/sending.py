"""One HTTP attempt at an endpoint: to the checked address, within the timeout, reading at most a few
kilobytes of the answer, never following a redirect. Whatever happens comes back as an
:class:`Attempt`; nothing here raises or touches the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx2

from refundwatch.lib.egress import AllowList, EndpointNotAllowed, resolve_target
from refundwatch.lib.http import timeout_for
from refundwatch.logs import REDACTED, scrub

EXCERPT_CHARS = 500
READ_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    latency_ms: int
    status_code: int | None = None
    error: str | None = None  # no answer: timeout, connect_error, address_not_allowed…
    excerpt: str | None = None


def excerpt_of(raw: bytes, secrets: Sequence[str]) -> str | None:
    """The answer's first characters, without secrets (the endpoint's own included)."""
    if not raw:
        return None
    text = raw[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    for secret in secrets:
        text = text.replace(secret, REDACTED).replace(secret.removeprefix("whsec_"), REDACTED)
    return scrub(text)


def _error_name(exc: httpx2.HTTPError) -> str:
    if isinstance(exc, httpx2.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx2.ConnectError):
        return "connect_error"
    return type(exc).__name__.lower()[:60]


async def post(
    client: httpx2.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow: AllowList,
    allow_http: bool,
    timeout_seconds: float,
    secrets: Sequence[str] = (),
) -> Attempt:
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        target = await resolve_target(url, allow, allow_http=allow_http)
    except EndpointNotAllowed as exc:
        return Attempt(False, elapsed(), error="address_not_allowed", excerpt=exc.message[:EXCERPT_CHARS])
    extra_headers, extensions = target.request_extras()
    raw = b""
    try:
        # One deadline for the whole exchange: httpx's timeouts are per read, and a receiver that
        # trickles its answer would otherwise hold the slot for ever.
        async with asyncio.timeout(timeout_seconds):
            async with client.stream(
                "POST",
                target.connect_url(),
                content=body,
                headers={**headers, **extra_headers},
                timeout=timeout_for(timeout_seconds),
                extensions=extensions,
                follow_redirects=False,
            ) as response:
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) >= READ_LIMIT:
                        break
                status = response.status_code
    except TimeoutError:
        return Attempt(False, elapsed(), error="timeout")
    except httpx2.HTTPError as exc:
        return Attempt(False, elapsed(), error=_error_name(exc))
    ok = 200 <= status < 300
    return Attempt(ok, elapsed(), status_code=status, excerpt=excerpt_of(raw, secrets))
