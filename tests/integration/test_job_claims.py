"""The worker's job claims (jobs.Worker.start_jobs) against a real Redis.

A running job stays at the head of arq's queue until it finishes, so every poll lists it again. The
worker running it must not spend a Redis round trip per poll asking whether it may start it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis, create_pool

from _services import start_private_redis
from refundwatch.jobs import Worker, enqueue
from refundwatch.runtime import redis_settings


@pytest.fixture(scope="module")
def redis_url() -> str:
    return start_private_redis()


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(redis_settings(redis_url))
    await redis.flushdb()
    yield redis
    await redis.aclose()


class CountingClaims:
    """Counts the claim script's calls: each is one Redis round trip."""

    def __init__(self, pool: ArqRedis) -> None:
        self.calls = 0
        self._register = pool.register_script

    def register_script(self, script: str) -> Any:
        registered = self._register(script)

        async def call(**kwargs: Any) -> Any:
            self.calls += 1
            return await registered(**kwargs)

        return call


async def test_a_job_running_here_is_not_claimed_again_on_every_poll(
    pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    ran = 0

    async def slow(ctx: dict[str, Any]) -> None:
        nonlocal ran
        ran += 1
        await release.wait()

    worker = Worker(functions=[func(slow, name="slow")], redis_pool=pool, handle_signals=False)
    counting = CountingClaims(pool)
    monkeypatch.setattr(pool, "register_script", counting.register_script)
    assert await enqueue(pool, "slow", job_id="slow-1")
    assert await enqueue(pool, "slow", job_id="slow-2")

    await worker.start_jobs([b"slow-1"])
    assert counting.calls == 1
    for _ in range(5):  # polls while slow-1 runs: it is still listed first, slow-2 behind it
        await worker.start_jobs([b"slow-1", b"slow-2"])
    await asyncio.sleep(0.1)

    assert counting.calls == 2  # slow-1 once, slow-2 once
    assert ran == 2
    release.set()
    await asyncio.wait_for(asyncio.gather(*worker.tasks.values()), 10)
    assert await pool.zcard(pool.default_queue_name) == 0  # both finished and left the queue
