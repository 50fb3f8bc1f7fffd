"""Batched script calls (lib/scriptbatch.py) and the enqueue built on them, against a real Redis.

A private redis-server: one test flushes the server's script cache, which must not touch a shared one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, create_pool
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from _services import free_port, start_private_redis
from refundwatch.jobs import enqueue
from refundwatch.lib.scriptbatch import ScriptBatcher, batched
from refundwatch.lib.scripts import run_script
from refundwatch.runtime import redis_settings

COUNTER = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture(scope="module")
def redis_url() -> str:
    return start_private_redis()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


class CountingBatcher(ScriptBatcher):
    def __init__(self, redis: Redis, script: str) -> None:
        super().__init__(redis, script)
        self.round_trips = 0

    async def _pipeline(
        self, batch: list[tuple[list[object], list[object], asyncio.Future[object]]]
    ) -> list[object]:
        self.round_trips += 1
        return await super()._pipeline(batch)


async def test_concurrent_calls_share_round_trips_and_each_gets_its_own_result(client: Redis) -> None:
    key = f"test:scriptbatch:{uuid.uuid4().hex}"
    batcher = CountingBatcher(client, COUNTER)
    results = await asyncio.gather(*(batcher([key], [1]) for _ in range(300)))
    assert sorted(results) == list(range(1, 301))  # every call ran once, and got its own answer
    assert batcher.round_trips < 30, batcher.round_trips
    assert int(await client.get(key) or 0) == 300
    # A lone call still goes out on its own, at once.
    assert await asyncio.wait_for(batcher([key], [5]), 2) == 305
    await client.delete(key)


async def test_a_forgotten_script_is_loaded_again(client: Redis) -> None:
    """After SCRIPT FLUSH (a restarted Redis), the calls that hit NOSCRIPT are sent again, once."""
    key = f"test:scriptbatch:{uuid.uuid4().hex}"
    batcher = ScriptBatcher(client, COUNTER)
    assert await batcher([key], [1]) == 1
    await client.script_flush()
    assert sorted(await asyncio.gather(*(batcher([key], [1]) for _ in range(50)))) == list(range(2, 52))
    await client.delete(key)


async def test_a_single_script_call_survives_a_forgotten_script(client: Redis) -> None:
    """``run_script`` (the unbatched calls: pacing, rate limits, rejections, anchors) after SCRIPT FLUSH."""
    key = f"test:scripts:{uuid.uuid4().hex}"
    assert await run_script(client, COUNTER, [key], [2]) == 2
    await client.script_flush()
    assert await run_script(client, COUNTER, [key], [3]) == 5
    await client.delete(key)


async def test_a_redis_that_is_down_fails_every_caller_and_none_waits_forever() -> None:
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    batcher = ScriptBatcher(unreachable, COUNTER)
    async with asyncio.timeout(20):
        results = await asyncio.gather(*(batcher(["k"], [1]) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results
    await unreachable.aclose()


async def test_a_cancelled_caller_does_not_disturb_the_others(client: Redis) -> None:
    key = f"test:scriptbatch:{uuid.uuid4().hex}"
    batcher = ScriptBatcher(client, COUNTER)
    calls = [asyncio.create_task(batcher([key], [1])) for _ in range(20)]
    calls[3].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert len([r for r in results if isinstance(r, int)]) == 19
    # The cancelled caller's call may still have run (it was already on its way): never lost, never twice.
    assert int(await client.get(key) or 0) in (19, 20)
    await client.delete(key)


async def test_one_batcher_per_client_and_script(client: Redis) -> None:
    assert batched(client, COUNTER) is batched(client, COUNTER)
    assert batched(client, COUNTER) is not batched(client, "return 1")


async def test_concurrent_enqueues_of_one_job_queue_it_once(redis_url: str) -> None:
    """The intake's enqueue through the batcher keeps arq's rule: a job id is queued at most once."""
    queue = f"test:queue:{uuid.uuid4().hex}"
    pool: ArqRedis = await create_pool(redis_settings(redis_url), default_queue_name=queue)
    try:
        job_id = uuid.uuid4().hex
        added = await asyncio.gather(
            *(enqueue(pool, "execute_refund", job_id, job_id=job_id) for _ in range(25))
        )
        assert added.count(True) == 1
        others = [uuid.uuid4().hex for _ in range(100)]
        assert all(await asyncio.gather(*(enqueue(pool, "execute_refund", j, job_id=j) for j in others)))
        assert await pool.zcard(queue) == 101
    finally:
        await pool.delete(queue)
        await pool.aclose()
