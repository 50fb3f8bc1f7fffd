"""A connection's rate limit schedule (refunds.pacing) on a real Redis: slots 1/rate apart, a refund that
waits in the queue holds its slot (and is given it when it comes back, not another), and a connection
without a limit never touches Redis."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from _services import ensure_redis
from refundwatch.refunds import pacing


@dataclass
class _Conn:
    id: uuid.UUID
    name: str
    rate_limit_per_second: int | None


class _Runtime:
    def __init__(self, client: Any) -> None:
        self.client = client

    def require_redis(self) -> Any:
        return self.client


@pytest.fixture
async def rt() -> AsyncIterator[_Runtime]:
    client = aioredis.from_url(ensure_redis())
    try:
        yield _Runtime(client)
    finally:
        keys = [k async for k in client.scan_iter(f"{pacing.KEY_PREFIX}*{_TAG}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


_TAG = uuid.uuid4().hex[:8]


def _conn(rate: int | None) -> Any:
    return _Conn(uuid.UUID(f"{_TAG}{uuid.uuid4().hex[8:]}"), "paced", rate)


async def test_slots_are_one_over_the_rate_apart(rt: _Runtime) -> None:
    conn = _conn(4)  # slots 0.25 s apart; the bounds leave room for slow round trips
    got = [await pacing.reserve(rt, conn, inline=5.0) for _ in range(4)]  # type: ignore[arg-type]
    firsts = [s.first for s in got if isinstance(s, pacing.Slots)]
    assert len(firsts) == 4
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert all(0.15 < gap < 0.35 for gap in gaps), gaps
    pair = await pacing.reserve(rt, conn, 2, inline=5.0)  # type: ignore[arg-type]
    assert isinstance(pair, pacing.Slots)
    assert pair.spacing == pytest.approx(0.25)


async def test_a_refund_that_waits_in_the_queue_keeps_its_slot(rt: _Runtime) -> None:
    conn, a, b, c = _conn(1), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()  # slots 1 s apart
    inline = 0.3
    first = await pacing.reserve(rt, conn, held_for=a, inline=inline)  # type: ignore[arg-type]
    assert isinstance(first, pacing.Slots)
    later = await pacing.reserve(rt, conn, held_for=b, inline=inline)  # type: ignore[arg-type]
    assert isinstance(later, float)
    assert 0.5 < later <= 1.0, later  # the next slot, a second on: held for b
    again = await pacing.reserve(rt, conn, held_for=b, inline=inline)  # type: ignore[arg-type]
    assert isinstance(again, float)
    assert again <= later  # the same slot, not another one further on
    third = await pacing.reserve(rt, conn, held_for=c, inline=inline)  # type: ignore[arg-type]
    assert isinstance(third, float)
    assert 1.5 < third <= 2.0, third  # b's repeat took nothing
    await asyncio.sleep(later)
    given = await pacing.reserve(rt, conn, held_for=b, inline=inline)  # type: ignore[arg-type]
    assert isinstance(given, pacing.Slots)
    assert given.first - time.monotonic() < inline


async def test_without_a_held_slot_a_far_one_is_not_reserved(rt: _Runtime) -> None:
    conn = _conn(1)
    assert isinstance(await pacing.reserve(rt, conn, inline=0.3), pacing.Slots)  # type: ignore[arg-type]
    far = await pacing.reserve(rt, conn, inline=0.3)  # type: ignore[arg-type]
    assert isinstance(far, float)
    assert 0.5 < far <= 1.0
    again = await pacing.reserve(rt, conn, inline=0.3)  # type: ignore[arg-type]
    assert isinstance(again, float)
    assert again <= far  # nothing was reserved: the same slot is still the next one


async def test_a_connection_without_a_limit_never_asks_redis() -> None:
    class NoRedis:
        def require_redis(self) -> Any:
            raise AssertionError("Redis asked")

    assert await pacing.reserve(NoRedis(), _conn(None)) is pacing.FREE  # type: ignore[arg-type]
