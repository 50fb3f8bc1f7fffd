"""Rate limits on the API and on sign-in, per client, counted in Redis so every web process shares them.

Two budgets (each a fixed window that starts at a client's first request in it):
* ``api`` — every ``/api/`` call, per API client: the SHA-256 of its ``Authorization`` header, or its
  address when it sends none. A flood of made-up tokens would get a fresh budget per token, so failed
  authentications are also counted per address (``auth-failures``) and, over their own limit, refused
  before any token is looked up.
* ``sign-in`` — ``/auth/login`` and ``/auth/callback``, per address and path.
Nothing else is limited (webhooks, health, metrics, static files, pages).

Each limited request costs one Redis round trip (a Lua script: INCR, set the expiry on a new window,
read the address's failure count); only a 401 adds a second one. Limited responses carry
``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds) and ``RateLimit-Policy``
(draft-ietf-httpapi-ratelimit-headers-07, as Litestar's own limiter sends them); a refused one is a
429 with ``Retry-After`` and ``{"code": "rate_limited", "message": ...}``.

If Redis does not answer, requests pass (logged at most once a minute): the refund API staying up
matters more than its limits, and sessions and jobs need that Redis anyway.

Litestar's ``RateLimitMiddleware`` does not fit: one policy per app, and it reads, then writes a whole
request history per client under a per-process lock (two round trips, lost updates across processes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from redis.exceptions import RedisError

from refundwatch.config import Settings
from refundwatch.lib.scripts import run_script

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from redis.asyncio import Redis

__all__ = ["Policy", "RateLimitMiddleware", "rate_limit_setting"]

log = logging.getLogger("refundwatch.web.ratelimit")

KEY_PREFIX = "refundwatch:ratelimit:"
SIGN_IN_PATHS = frozenset({"/auth/login", "/auth/callback"})
API_PREFIX = "/api/"

# KEYS[1]: the client's counter; KEYS[2] (optional): the address's failed-authentication counter.
# ARGV[1]: window in milliseconds. Returns {count, ms left in the window, failures, ms left for them}.
HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local f, fttl = 0, 0
if #KEYS > 1 then
  f = tonumber(redis.call('GET', KEYS[2]) or '0')
  if f > 0 then fttl = redis.call('PTTL', KEYS[2]) end
end
return {n, ttl, f, fttl}
"""


def rate_limit_setting(settings: Settings, name: str) -> int:
    """A limit per minute from the typed settings (0 switches that limit off)."""
    value: int = getattr(settings, name)
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    limit: int
    window_seconds: int = 60

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def header(self) -> bytes:
        return f"{self.limit};w={self.window_seconds}".encode()

    def headers(self, remaining: int, reset_ms: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(max(0, remaining)).encode()),
            (b"ratelimit-reset", str(_seconds(reset_ms)).encode()),
            (b"ratelimit-policy", self.header),
        ]


def _seconds(ms: int) -> int:
    """Whole seconds, rounded up: a client that waits that long is never early."""
    return max(1, math.ceil(ms / 1000))


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()[:32]


def _redis(scope: Scope) -> Redis | None:
    app = scope.get("litestar_app")
    rt = app.state.get("rt") if app is not None else None
    return getattr(rt, "redis", None)


async def _run(redis: Redis, keys: list[str], window_ms: int) -> list[int]:
    result = await run_script(redis, HIT_SCRIPT, keys, [str(window_ms)])
    return [int(x) for x in result]


async def _send_refusal(send: Send, policy: Policy, reset_ms: int, message: str) -> None:
    retry = _seconds(reset_ms)
    body = json.dumps(
        {"code": "rate_limited", "message": message.format(retry=retry), "retry_after": retry}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
                *policy.headers(0, reset_ms),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RateLimitMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, api: Policy, sign_in: Policy, auth_failures: Policy) -> None:
        self.api = api
        self.sign_in = sign_in
        self.auth_failures = auth_failures
        self._quiet_until = 0.0  # only throttles the "Redis is down" warning

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitMiddleware:
        return cls(
            api=Policy("api", rate_limit_setting(settings, "rate_limit_api_per_minute")),
            sign_in=Policy("sign-in", rate_limit_setting(settings, "rate_limit_sign_in_per_minute")),
            auth_failures=Policy(
                "auth-failures", rate_limit_setting(settings, "rate_limit_auth_failures_per_minute")
            ),
        )

    def _policy_and_keys(self, scope: Scope) -> tuple[Policy, list[str]] | None:
        path: str = scope["path"]
        if path.startswith(API_PREFIX):
            if not self.api.enabled:
                return None
            address = _client_address(scope)
            token = _authorization(scope)
            client = f"k:{_digest(token)}" if token else f"ip:{address}"
            keys = [f"{KEY_PREFIX}api:{client}"]
            if self.auth_failures.enabled:
                keys.append(self._failure_key(address))
            return self.api, keys
        if path in SIGN_IN_PATHS and self.sign_in.enabled:
            return self.sign_in, [f"{KEY_PREFIX}sign-in:{path}:{_client_address(scope)}"]
        return None

    @staticmethod
    def _failure_key(address: str) -> str:
        return f"{KEY_PREFIX}auth-failures:{address}"

    def _redis_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + 60
            log.warning("rate limits not applied, Redis did not answer: %s", exc.__class__.__name__)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        found = self._policy_and_keys(scope)
        redis = _redis(scope) if found is not None else None
        if found is None or redis is None:
            await next_app(scope, receive, send)
            return
        policy, keys = found
        try:
            count, reset_ms, failures, failures_reset_ms = await _run(
                redis, keys, policy.window_seconds * 1000
            )
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            await next_app(scope, receive, send)
            return
        if len(keys) > 1 and failures >= self.auth_failures.limit:
            await _send_refusal(
                send,
                self.auth_failures,
                failures_reset_ms,
                "too many failed authentications from this address; retry in {retry} s",
            )
            return
        if count > policy.limit:
            await _send_refusal(send, policy, reset_ms, "too many requests; retry in {retry} s")
            return
        limit_headers = policy.headers(policy.limit - count, reset_ms)
        failure_key = keys[1] if len(keys) > 1 else None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*(message.get("headers") or []), *limit_headers]
                if failure_key is not None and message["status"] == 401:
                    await self._count_failure(redis, failure_key)
            await send(message)

        await next_app(scope, receive, send_with_headers)

    async def _count_failure(self, redis: Redis, key: str) -> None:
        try:
            await _run(redis, [key], self.auth_failures.window_seconds * 1000)
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
