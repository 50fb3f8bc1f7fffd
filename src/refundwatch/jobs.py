"""Enqueueing and claiming arq jobs in one Redis round trip each (enqueues from concurrent callers
share theirs).

arq's own ``enqueue_job`` spends three round trips (WATCH, EXISTS, MULTI/EXEC) per job; on the intake
path that is most of the Redis cost. This script does the same check-and-add atomically inside
Redis, writing exactly what arq writes (job key with the serialised job, score in the queue), so
arq's worker runs these jobs unchanged. A job id that is already queued or running is left alone.
"""

from __future__ import annotations

import time
from typing import Any

import arq.worker
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job

from refundwatch.lib.scriptbatch import batched

_EXPIRES_EXTRA_MS = 86_400_000  # arq's default: a job not started within a day is dropped

# KEYS: job key, result key, queue. ARGV: job id, score, expires ms, serialised job.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


async def enqueue(
    redis: ArqRedis, function: str, *args: Any, job_id: str, defer_seconds: float | None = None
) -> bool:
    """Queue ``function(*args)`` under ``job_id`` unless that job exists; True if it was queued."""
    now_ms = int(time.time() * 1000)
    score = now_ms + int((defer_seconds or 0) * 1000)
    payload = serialize_job(function, args, {}, None, now_ms, serializer=redis.job_serializer)
    # Concurrent enqueues share round trips (lib/scriptbatch.py): EVALSHA, pipelined.
    added = await batched(redis, _ENQUEUE)(
        [job_key_prefix + job_id, result_key_prefix + job_id, redis.default_queue_name],
        [job_id, score, score - now_ms + _EXPIRES_EXTRA_MS, payload],
    )
    return bool(added)


# KEYS: in-progress key, queue. ARGV: job id, now ms, in-progress timeout ms. Returns the score or nil.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


class Worker(arq.worker.Worker):
    """arq's worker, claiming each job in one round trip instead of four.

    arq claims a job with WATCH, EXISTS, ZSCORE and MULTI/EXEC; this does the same check-and-set
    atomically in one Lua script (a job already running, finished, or deferred is skipped, exactly
    as arq does). Everything else — running, retrying, finishing — is arq's own code.
    """

    def _in_progress_ms(self, job_id: str) -> str:
        """How long a claim holds this job: its own function's timeout + 10 s, as arq counts it.

        arq holds every job for the longest timeout of any function + 10 s (``in_progress_timeout_s``):
        with the 30-minute reconciliation cron, a refund job claimed by a worker that is then killed
        stayed locked for half an hour. A unique cron job's id names its function
        (``cron:reconcile:<ms>``); every other job runs with the worker's job timeout.
        """
        timeout = self.job_timeout_s
        if job_id.startswith("cron:"):
            function = self.functions.get(job_id.rsplit(":", 1)[0])
            if function is not None and function.timeout_s is not None:
                timeout = function.timeout_s
        return str(int((timeout + 10) * 1000))

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        claim = self.pool.register_script(_CLAIM)
        for job_id_b in job_ids:
            # Jobs stay in the queue while they run, at its head, so every poll lists the ones running
            # here again; a claim for them would only fail, one Redis round trip each, per poll.
            running = self.tasks.get(job_id_b.decode())
            if running is not None and not running.done():
                continue
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            job_id = job_id_b.decode()
            score = await claim(
                keys=[in_progress_key_prefix + job_id, self.queue_name],
                args=[job_id, str(int(time.time() * 1000)), self._in_progress_ms(job_id)],
            )
            if score is None:  # running elsewhere, finished, or re-enqueued with a delay
                self.job_counter -= 1
                self.sem.release()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
