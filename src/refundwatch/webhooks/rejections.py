"""Rejected webhook deliveries: counted in Redis, limited per sender, audited once per connection and minute.

Anyone who knows a connection's name can post bad signatures, so a rejection must cost no database
write (on SQLite that would also take the one write lock refund execution needs). Each one is one
Redis round trip (``note_rejection``, a Lua script) that

* counts it exactly in ``REJECTED_COUNTER`` (what ``refundwatch_webhooks_rejected`` reports),
* adds it to the bucket of its connection and minute (a hash: ``count``, and a bounded sample of
  reasons ``r:<reason>`` and client addresses ``a:<address>``, at most ``SAMPLE`` distinct of each,
  the rest under ``(others)``),
* counts it against the sender: the address (as the trusted-proxy logic resolved it) and connection.

Once a sender has ``limit`` rejections on a connection within a minute (a fixed window from its first
rejection), its further requests to that connection are refused with 429 before the body is read or
a signature checked (``refusal``, one round trip), and counted in ``RATE_LIMITED_COUNTER`` and the
bucket's ``rate_limited``, so the rejection count stays exact and the flood stays visible. Limiting
rejections, not requests, means the processor's own deliveries are never throttled by someone else's
flood. Unknown connection names (404) count per address (``note_unknown``) the same way.

Minutes follow the Redis server's clock (``TIME`` inside the scripts), so every web process and the
flush agree on when a minute has closed and nothing can land in a minute after its flush.

``flush`` (the worker, every few seconds) claims closed buckets (renamed to ``claimed:<member>``, the
member moved from the open set to the flushing set, atomically), writes one audit entry per claimed
bucket unless one for that connection and minute exists, then drops the claim. A crash anywhere
leaves the claim behind for the next flush: the minute is neither lost nor audited twice.

If Redis does not answer, the caller audits the rejection directly (the fact is never lost) and the
limit is not applied.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.db.models import AuditEntry
from refundwatch.lib.scripts import run_script

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

REJECTED_COUNTER = "refundwatch:webhooks:rejected"  # hash: connection → rejected deliveries
RATE_LIMITED_COUNTER = "refundwatch:webhooks:rate_limited"  # hash: connection → 429s
PREFIX = "refundwatch:webhooks:rejections:"
OPEN_KEY = PREFIX + "open"  # set of "<minute>|<connection>" whose bucket may still grow
FLUSHING_KEY = PREFIX + "flushing"  # set of members claimed by a flush and not yet dropped
BUCKET_PREFIX = PREFIX + "bucket:"
CLAIMED_PREFIX = PREFIX + "claimed:"
FLUSH_LOCK = PREFIX + "flush-lock"
LIMIT_PREFIX = "refundwatch:ratelimit:webhook-rejections:"
# Set (for a window) by every counted rejection: while it is absent, no sender can be over its limit.
REJECTING_KEY = "refundwatch:ratelimit:webhook-rejections-lately"
QUIET_CACHE_SECONDS = 1.0
UNKNOWN_PREFIX = "refundwatch:ratelimit:webhook-unknown:"
WINDOW_MS = 60_000
SAMPLE = 10  # distinct reasons and addresses kept per bucket
MAX_REASON = 160

# The bucket of this minute on the Redis clock; shared by the scripts below.
_BUCKET = """
local t = redis.call('TIME')
local member = math.floor(tonumber(t[1]) / 60) .. '|' .. ARGV[1]
local bucket = ARGV[2] .. member
redis.call('SADD', KEYS[1], member)
"""

# KEYS: open set, rejected counter, sender's limit key, the "rejecting lately" marker. ARGV: connection,
# bucket prefix, reason, address, window ms (0: no limit), sample size. Returns the sender's
# rejections in its window.
NOTE_REJECTION = (
    _BUCKET
    + """
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', bucket, 'count', 1)
local function sample(kind, value)
  local field = kind .. ':' .. value
  if redis.call('HEXISTS', bucket, field) == 0
     and redis.call('HINCRBY', bucket, '#' .. kind, 1) > tonumber(ARGV[6]) then
    field = kind .. ':(others)'
  end
  redis.call('HINCRBY', bucket, field, 1)
end
sample('r', ARGV[3])
sample('a', ARGV[4])
if ARGV[5] == '0' then return 0 end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
local n = redis.call('INCR', KEYS[3])
if redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
return n
"""
)

# KEYS: open set, rate-limited counter, sender's limit key. ARGV: connection, bucket prefix, limit.
# Returns 0 when the sender may go on, else the milliseconds until its window ends (refusal counted).
CHECK = (
    """
local n = tonumber(redis.call('GET', KEYS[3]) or '0')
if n < tonumber(ARGV[3]) then return 0 end
local ttl = redis.call('PTTL', KEYS[3])
"""
    + _BUCKET
    + """
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', bucket, 'rate_limited', 1)
if ttl < 1 then ttl = 1 end
return ttl
"""
)

# KEYS: address's unknown-name key. ARGV: window ms. Returns {count, ms left}.
NOTE_UNKNOWN = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

# KEYS: open set, flushing set. ARGV: bucket prefix, claimed prefix. Claims every closed minute whose
# earlier claim is finished; returns every claimed member (new and left over from a crash).
CLAIM = """
local t = redis.call('TIME')
local now = math.floor(tonumber(t[1]) / 60)
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local minute = tonumber(string.match(member, '^(%d+)|'))
  if minute == nil or (minute < now and redis.call('EXISTS', ARGV[2] .. member) == 0) then
    if minute ~= nil and redis.call('EXISTS', ARGV[1] .. member) == 1 then
      redis.call('RENAME', ARGV[1] .. member, ARGV[2] .. member)
      redis.call('SADD', KEYS[2], member)
    end
    redis.call('SREM', KEYS[1], member)
  end
end
return redis.call('SMEMBERS', KEYS[2])
"""


class RateLimited(Exception):
    """Too many rejected deliveries (or unknown names) from this address: refused before any work."""

    def __init__(self, retry_after_ms: int) -> None:
        super().__init__("too many rejected webhook deliveries from this address")
        self.retry_after = max(1, math.ceil(retry_after_ms / 1000))


async def _script(redis: Redis, script: str, keys: list[str], *args: str | int) -> Any:
    return await run_script(redis, script, keys, [str(a) for a in args])


_quiet_until = 0.0  # throttles the "Redis is down" warning: a flood must not flood the log too


def _redis_failed(exc: BaseException) -> None:
    global _quiet_until  # noqa: PLW0603 — one process-wide throttle, like web.ratelimit's
    now = time.monotonic()
    if now >= _quiet_until:
        _quiet_until = now + 60
        log.warning(
            "webhook rejections audited directly and not limited, Redis did not answer: %s",
            exc.__class__.__name__,
        )


def _limit_key(connection: str, address: str | None) -> str:
    return f"{LIMIT_PREFIX}{connection}:{address or 'unknown'}"


def _limit(rt: Runtime) -> int:
    value: int = rt.settings.rate_limit_webhook_rejections_per_minute
    return value


class _Lately:
    """This process's view of whether any delivery was rejected within the window, so that the common
    case (nobody is being refused) costs no Redis round trip per delivery. It is read from Redis at
    most once a second, and set at once by this process's own rejections: a sender flooding several
    processes gets at most one more delivery checked (and rejected, and counted) per process before
    each of them checks it, never past the limit unseen."""

    __slots__ = ("rejecting", "until")

    def __init__(self) -> None:
        self.rejecting = True
        self.until = 0.0  # monotonic time up to which ``rejecting`` is trusted


_lately: weakref.WeakKeyDictionary[Any, _Lately] = weakref.WeakKeyDictionary()


def _lately_of(redis: Redis) -> _Lately:
    found = _lately.get(redis)
    if found is None:
        found = _lately[redis] = _Lately()
    return found


async def _rejecting_lately(redis: Redis) -> bool:
    lately = _lately_of(redis)
    now = time.monotonic()
    if now >= lately.until:
        lately.rejecting = bool(await redis.exists(REJECTING_KEY))
        lately.until = now + QUIET_CACHE_SECONDS
    return lately.rejecting


async def check(rt: Runtime, connection: str, address: str | None) -> None:
    """Raise ``RateLimited`` when this sender is over its rejections on this connection."""
    limit = _limit(rt)
    if limit <= 0 or rt.redis is None:
        return
    try:
        if not await _rejecting_lately(rt.redis):
            return
    except (RedisError, OSError) as exc:
        _redis_failed(exc)
        return
    keys = [OPEN_KEY, RATE_LIMITED_COUNTER, _limit_key(connection, address)]
    try:
        wait_ms = int(await _script(rt.redis, CHECK, keys, connection, BUCKET_PREFIX, limit))
    except (RedisError, OSError) as exc:
        _redis_failed(exc)
        return
    if wait_ms > 0:
        raise RateLimited(wait_ms)


async def note_rejection(rt: Runtime, connection: str, reason: str, address: str | None) -> bool:
    """Count a rejected delivery in Redis; False when Redis could not take it (audit it directly)."""
    if rt.redis is None:
        return False
    limit = _limit(rt)
    keys = [OPEN_KEY, REJECTED_COUNTER, _limit_key(connection, address), REJECTING_KEY]
    args = (connection, BUCKET_PREFIX, reason[:MAX_REASON], address or "unknown")
    lately = _lately_of(rt.redis)  # this process checks senders from now on, before Redis says so
    lately.rejecting, lately.until = True, time.monotonic() + QUIET_CACHE_SECONDS
    try:
        await _script(rt.redis, NOTE_REJECTION, keys, *args, WINDOW_MS if limit > 0 else 0, SAMPLE)
    except (RedisError, OSError) as exc:
        _redis_failed(exc)
        return False
    return True


async def note_unknown(rt: Runtime, address: str | None) -> None:
    """Count a delivery to an unknown connection name; raise ``RateLimited`` over the limit."""
    limit = _limit(rt)
    if limit <= 0 or rt.redis is None:
        return
    try:
        count, wait_ms = await _script(
            rt.redis, NOTE_UNKNOWN, [UNKNOWN_PREFIX + (address or "unknown")], WINDOW_MS
        )
    except (RedisError, OSError) as exc:
        _redis_failed(exc)
        return
    if int(count) > limit:
        raise RateLimited(int(wait_ms))


# ------------------------------------------------------------------------------------------- flush


@dataclass(frozen=True, slots=True)
class Bucket:
    connection: str
    minute: dt.datetime
    fields: dict[str, int]

    @classmethod
    def of(cls, member: str, raw: dict[bytes, bytes]) -> Bucket:
        minute, connection = member.split("|", 1)
        start = dt.datetime.fromtimestamp(int(minute) * 60, dt.UTC)
        return cls(connection, start, {k.decode(): int(v) for k, v in raw.items()})

    @property
    def minute_text(self) -> str:
        return self.minute.strftime("%Y-%m-%dT%H:%M:%SZ")

    def details(self) -> dict[str, Any]:
        def sample(kind: str) -> dict[str, int]:
            prefix = f"{kind}:"
            return {k[len(prefix) :]: n for k, n in self.fields.items() if k.startswith(prefix)}

        return {
            "minute": self.minute_text,
            "count": self.fields.get("count", 0),
            "rate_limited": self.fields.get("rate_limited", 0),
            "reasons": sample("r"),
            "addresses": sample("a"),
        }


async def _audited(rt: Runtime, bucket: Bucket) -> bool:
    """Whether this connection and minute already has its entry (entries are dated at the minute's end
    or later, which keeps the look-up to a few rows)."""
    async with rt.db.read_session() as session:
        rows = await session.scalars(
            select(AuditEntry.details).where(
                AuditEntry.action == actions.WEBHOOK_REJECTED,
                AuditEntry.target_type == "connection",
                AuditEntry.target_id == bucket.connection,
                AuditEntry.at >= bucket.minute + dt.timedelta(minutes=1),
            )
        )
        return any(_minute_of(details) == bucket.minute_text for details in rows)


def _minute_of(details: str) -> str | None:
    try:
        minute = json.loads(details).get("minute")
    except (ValueError, AttributeError):
        return None
    return minute if isinstance(minute, str) else None


async def _write(rt: Runtime, bucket: Bucket) -> None:
    at = max(dt.datetime.now(dt.UTC), bucket.minute + dt.timedelta(minutes=1))
    async with rt.db.session() as session:
        record(
            session,
            Actor("processor", bucket.connection),
            actions.WEBHOOK_REJECTED,
            target_type="connection",
            target_id=bucket.connection,
            details=bucket.details(),
            at=at,
        )
        await session.commit()


async def flush(rt: Runtime) -> int:
    """Audit every closed minute's rejections, one entry per connection and minute; returns how many."""
    redis = rt.require_redis()
    token = uuid.uuid4().hex
    if not await redis.set(FLUSH_LOCK, token, nx=True, px=WINDOW_MS):
        return 0  # another worker is flushing
    written = 0
    try:
        members = await _script(redis, CLAIM, [OPEN_KEY, FLUSHING_KEY], BUCKET_PREFIX, CLAIMED_PREFIX)
        for raw_member in members:
            member = raw_member.decode()
            fields = await redis.hgetall(CLAIMED_PREFIX + member)  # type: ignore[misc]
            if fields:
                bucket = Bucket.of(member, fields)
                if not await _audited(rt, bucket):
                    await _write(rt, bucket)
                    written += 1
            pipe = redis.pipeline(transaction=True)
            pipe.delete(CLAIMED_PREFIX + member)
            pipe.srem(FLUSHING_KEY, member)
            await pipe.execute()
    finally:
        if await redis.get(FLUSH_LOCK) == token.encode():
            await redis.delete(FLUSH_LOCK)
    return written
