"""A connection's ``rate_limit_per_second`` (CONTRACT §6), kept by every worker together through Redis.

Processors limit the calls an account may make per second (Stripe's 100 a second in live mode, less
in test mode; an acquirer's contract may ask for less). Each call of a refund's execution takes the
next slot of its connection's schedule, and slots are ``1 / rate`` seconds apart (a generic cell rate
algorithm without burst), so no second carries more than the rate, however many workers run. The
schedule is one Redis key per connection, read and advanced atomically by a script on Redis's clock.

A job whose slot is near waits for it. One whose slot is further away than ``MAX_INLINE_WAIT`` takes
none and runs again when the schedule has room: nothing is claimed, so no attempt is spent and the
refund's outcome is never left unknown by a job that waited past its timeout. If Redis does not answer,
the call goes ahead: a limit is not worth a refund that does not move (and jobs need Redis anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from uuid import UUID

from redis.exceptions import NoScriptError, RedisError

from refundwatch.connections.services import ConnectionInfo
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

KEY_PREFIX = "refundwatch:pace:"
MAX_INLINE_WAIT = 5.0  # seconds a job sleeps for its slot; well inside any job timeout

# KEYS[1]: the connection's theoretical arrival time (microseconds on Redis's clock). ARGV: the slot
# spacing (µs), how many calls to reserve, the longest wait to accept (µs; -1: any). Returns
# {1, wait until the last reserved slot} or {0, how long until one is free} without reserving.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing, calls, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat + spacing * (calls - 1) - now
if most >= 0 and wait > most then return {0, tat - now} end
local nxt = tat + spacing * calls
redis.call('SET', KEYS[1], string.format("%.0f", nxt), "PX", math.ceil((nxt - now) / 1000) + 1000)
return {1, wait}
"""
_SHA = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()


async def take_slots(
    rt: Runtime, conn: ConnectionInfo, calls: int = 1, *, may_defer: bool = True
) -> float | None:
    """Wait for the connection's next ``calls`` slots and return None (go ahead); or, with
    ``may_defer``, when they are further away than ``MAX_INLINE_WAIT``, return the seconds after which
    to try again, having reserved nothing. A connection without a limit costs nothing."""
    rate = conn.rate_limit_per_second
    if not rate:
        return None
    spacing = 1_000_000 / rate
    most = int(MAX_INLINE_WAIT * 1_000_000) if may_defer else -1
    try:
        reserved, wait = await _run(rt, conn.id, spacing, calls, most)
    except RedisError as exc:
        log.warning("rate limit of %s not kept: Redis does not answer (%s)", conn.name, type(exc).__name__)
        return None
    seconds = max(0.0, float(wait) / 1_000_000)
    if not reserved:
        return seconds
    if seconds:
        await asyncio.sleep(seconds)
    return None


async def _run(rt: Runtime, connection_id: UUID, spacing: float, calls: int, most: int) -> tuple[int, int]:
    redis = rt.require_redis()
    args = (1, f"{KEY_PREFIX}{connection_id}", repr(spacing), str(calls), str(most))
    try:
        answer = await redis.evalsha(_SHA, *args)  # type: ignore[misc]
    except NoScriptError:
        answer = await redis.eval(_SCRIPT, *args)  # type: ignore[misc]
    return int(answer[0]), int(answer[1])
