"""A connection's ``rate_limit_per_second`` (CONTRACT §6), kept by every worker together through Redis.

Processors limit the calls an account may make per second (Stripe's 100 a second in live mode, 25 in
test mode; an acquirer's contract may ask for less). Each call a refund's execution or sync makes
takes the next slot of its connection's schedule, and slots are ``1 / rate`` seconds apart (a generic
cell rate algorithm without burst), so no second carries more than the rate, however many workers run.
The schedule is one Redis key per connection, read and advanced atomically by a script on Redis's clock.

A refund's execution reserves its slots before it claims the refund (so a refund that waits spends no
attempt and is never left with its outcome unknown by a job that ran out of time). Slots within
``MAX_INLINE_WAIT`` are waited for in the job. Later ones stay reserved for that refund (a key of its
own) and its job is run again at the first of them: one run per slot, in the order the slots were
given, however long the queue. If Redis does not answer, the calls go ahead: a limit is not worth a
refund that does not move (and jobs need that Redis anyway).

What is counted: the refund's send, the balance read before it (Checkout.com), the look-up before a
re-send, and each sync's read. Not counted: OAuth token fetches (PayPal), a look-up's further pages,
health checks (one call per interval) and settlement downloads (a few a day).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from uuid import UUID

from redis.exceptions import RedisError

from refundwatch.connections.services import ConnectionInfo
from refundwatch.lib.scripts import run_script
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

KEY_PREFIX = "refundwatch:pace:"
MAX_INLINE_WAIT = 1.0  # seconds a job sleeps for its slot; later ones are waited for in the queue
HOLD_GRACE_US = 2_000_000  # a held slot this late (a job run long after it) is given up for a new one

# KEYS[1]: the connection's next free slot (µs on Redis's clock); KEYS[2]: this refund's held first
# slot, or '' for none. ARGV: spacing (µs), calls, the longest wait to take in the job (µs), whether a
# later slot is held for the refund (1) or refused (0). Returns {go, µs until the first slot}: go = 1,
# wait that long and call; go = 0, come back after that long (the slots are held when ARGV[4] is 1,
# otherwise nothing was reserved).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing, calls, inline, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
if KEYS[2] ~= '' then
  local held = tonumber(redis.call('GET', KEYS[2]) or '-1')
  if held >= 0 and now - held <= tonumber(ARGV[5]) then
    if held - now > inline then return {0, held - now} end
    redis.call('DEL', KEYS[2])
    return {1, held - now}
  end
  if held >= 0 then redis.call('DEL', KEYS[2]) end
end
local first = tonumber(redis.call('GET', KEYS[1]) or '0')
if first < now then first = now end
if first - now > inline and not hold then return {0, first - now} end
local after = first + spacing * calls
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
if first - now > inline then
  redis.call('SET', KEYS[2], string.format('%.0f', first), 'PX', math.ceil((first - now) / 1000) + 60000)
  return {0, first - now}
end
return {1, first - now}
"""


@dataclass(frozen=True, slots=True)
class Slots:
    """Reserved calls: wait for the k-th before making the k-th call (0 first)."""

    first: float  # time.monotonic() of the first slot
    spacing: float  # seconds between slots

    async def wait(self, k: int = 0) -> None:
        delay = self.first + k * self.spacing - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


FREE = Slots(0.0, 0.0)  # no limit: every call at once


async def reserve(
    rt: Runtime,
    conn: ConnectionInfo,
    calls: int = 1,
    *,
    held_for: UUID | None = None,
    inline: float = MAX_INLINE_WAIT,
) -> Slots | float:
    """The connection's next ``calls`` slots (``Slots``: wait for each before its call), or the seconds
    after which to come back. With ``held_for`` (a refund's execution) later slots are reserved for
    that refund and given to it when it comes back; without, nothing is reserved then."""
    rate = conn.rate_limit_per_second
    if not rate:
        return FREE
    spacing = 1_000_000 / rate
    held = f"{KEY_PREFIX}held:{held_for}" if held_for is not None else ""
    args = (repr(spacing), str(calls), str(int(inline * 1_000_000)), "1" if held else "0", str(HOLD_GRACE_US))
    try:
        go, wait = await _run(rt, (f"{KEY_PREFIX}{conn.id}", held), args)
    except RedisError as exc:
        log.warning("rate limit of %s not kept: Redis does not answer (%s)", conn.name, type(exc).__name__)
        return FREE
    seconds = float(wait) / 1_000_000
    if not go:
        return max(seconds, 0.001)
    return Slots(time.monotonic() + seconds, spacing / 1_000_000)


async def _run(rt: Runtime, keys: tuple[str, str], args: tuple[str, ...]) -> tuple[int, int]:
    answer = await run_script(rt.require_redis(), _SCRIPT, list(keys), list(args))
    return int(answer[0]), int(answer[1])
