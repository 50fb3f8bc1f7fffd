"""Access tokens for processors that authenticate with OAuth: one cache per process, for every processor.

A worker process runs many refund jobs at once. Each connection keeps one token, shared by all of them:

- **Single flight.** While a token is being fetched, every other caller for the same key waits for that
  one fetch (a shared task), so 200 concurrent jobs make one token call, not 200.
- **Refresh before expiry.** A token is replaced once ``expires_in - margin`` has passed, where the
  margin is ``max(60 s, 10 %)`` of its lifetime (never more than half of it). If the refresh fails while
  the old token has not yet expired, the old token is still used; the failed fetch is counted.
- **Invalidate after a 401.** ``invalidate(key, token)`` drops that token only while it is still the
  current one, so a late 401 from an old token never throws away a fresh one.
- **Secrets stay secret.** Tokens are held as :class:`refundwatch.lib.crypto.Secret` (masked repr), and
  keys are ``<connection>:<hash of base URL, client id and secret>``, so changed credentials get a new
  token and no key shows a credential.

The cache is processor-neutral: callers pass the coroutine that fetches a token (for PayPal,
``gateways.paypal.auth``). Fetch errors propagate to every waiting caller unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from refundwatch.lib.crypto import Secret

__all__ = ["TOKENS", "FetchedToken", "TokenCache", "cache_key"]

MIN_MARGIN_SECONDS = 60.0
MARGIN_FRACTION = 0.10


@dataclass(frozen=True, slots=True)
class FetchedToken:
    """What a token call returned: the token and how many seconds it is valid for."""

    value: Secret
    expires_in: float


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Secret
    refresh_at: float  # on the cache's clock
    expires_at: float


@dataclass(slots=True)
class _Flight:
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[Secret]


@dataclass(slots=True)
class TokenStats:
    fetches: int = 0  # token calls started
    failures: int = 0  # token calls that raised
    invalidations: int = 0  # tokens dropped after a 401
    per_key: dict[str, int] = field(default_factory=dict)


def cache_key(connection_name: str, base_url: str, client_id: str, client_secret: str) -> str:
    """The cache key of a connection's token: its name plus a digest of what decides the token."""
    digest = hashlib.sha256("\0".join((base_url.rstrip("/"), client_id, client_secret)).encode()).hexdigest()
    return f"{connection_name}:{digest[:16]}"


def refresh_margin(expires_in: float) -> float:
    """How long before expiry a token is replaced: max(60 s, 10 %), at most half its lifetime."""
    return min(max(MIN_MARGIN_SECONDS, expires_in * MARGIN_FRACTION), expires_in / 2)


class TokenCache:
    """Tokens by key, fetched once at a time per key (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._flights: dict[str, _Flight] = {}
        self.stats = TokenStats()

    def __repr__(self) -> str:  # never the tokens
        return f"TokenCache(keys={len(self._entries)}, fetches={self.stats.fetches})"

    @property
    def fetches(self) -> int:
        return self.stats.fetches

    def fetches_for(self, key: str) -> int:
        return self.stats.per_key.get(key, 0)

    def current(self, key: str) -> Secret | None:
        """The cached token for ``key`` if it has not expired (no fetch)."""
        entry = self._entries.get(key)
        if entry is None or self._clock() >= entry.expires_at:
            return None
        return entry.value

    async def get(self, key: str, fetch: Callable[[], Awaitable[FetchedToken]]) -> Secret:
        """The token for ``key``: the cached one while fresh, else the result of one shared fetch."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.refresh_at:
            return entry.value
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None or flight.loop is not loop or flight.task.done():
            task = loop.create_task(self._refresh(key, fetch))
            task.add_done_callback(_retrieve)
            flight = _Flight(loop, task)
            self._flights[key] = flight
        # shield: a cancelled caller must not cancel the fetch the others are waiting for.
        return await asyncio.shield(flight.task)

    def invalidate(self, key: str, token: Secret | str) -> bool:
        """Drop ``token`` (after a 401) if it is still the current one for ``key``; True if dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        given = token if isinstance(token, Secret) else Secret(token)
        if entry.value != given:
            return False
        del self._entries[key]
        self.stats.invalidations += 1
        return True

    def clear(self) -> None:
        """Forget every token (tests; a credentials change also gets a new key by itself)."""
        self._entries.clear()
        self._flights.clear()

    async def _refresh(self, key: str, fetch: Callable[[], Awaitable[FetchedToken]]) -> Secret:
        self.stats.fetches += 1
        self.stats.per_key[key] = self.stats.per_key.get(key, 0) + 1
        try:
            fetched = await fetch()
        except BaseException:
            self.stats.failures += 1
            old = self._entries.get(key)
            if old is not None and self._clock() < old.expires_at:
                return old.value  # refreshing early failed; the old token is still good
            raise
        finally:
            flight = self._flights.get(key)
            if flight is not None and flight.task is asyncio.current_task():
                del self._flights[key]
        now = self._clock()
        lifetime = max(float(fetched.expires_in), 0.0)
        refresh_at = now + lifetime - refresh_margin(lifetime)
        self._entries[key] = _Entry(value=fetched.value, refresh_at=refresh_at, expires_at=now + lifetime)
        return fetched.value


def _retrieve(task: asyncio.Task[Secret]) -> None:
    """Mark a fetch's exception as seen even when every waiter was cancelled (no asyncio warning)."""
    if not task.cancelled():
        task.exception()


# The process-wide cache every adapter uses.
TOKENS = TokenCache()
