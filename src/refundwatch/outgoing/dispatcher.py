"""The worker's sender: a background task in every worker process that takes due deliveries and sends
them, each endpoint on its own few slots.

When it looks: at once when any process announces a committed change (the live notices every process
already publishes after commit, ``dashboard.signals``: nothing is added to the refund hot path), when
one of its own sends finishes (the next delivery of that refund may now go), and at least every
``REFUNDWATCH_WEBHOOK_SWEEP_SECONDS`` whatever happens, so a notice lost on the way (Redis away, a
worker restarting) delays a delivery by a second, never loses it: the database is the queue.

A slow or dead endpoint holds only its own ``REFUNDWATCH_WEBHOOK_ENDPOINT_CONCURRENCY`` slots, each
for at most ``REFUNDWATCH_WEBHOOK_TIMEOUT_SECONDS``; the other endpoints, and refund execution (other
tasks on the same loop), go on.

How much it claims at once: a claim and the record of what was sent are writes, and while refunds run
at full speed each waits its turn among execution's (on SQLite 30-50 ms apiece, measured). Claiming
only as many deliveries as an endpoint has slots made that wait the pace of every endpoint. So an
endpoint that answers fast (:data:`FAST_SECONDS`, its recent sends) gets :data:`CLAIM_FACTOR` times
its slots per claim, sent through the same slots. A claimed delivery still waiting for a slot when
too little of its lease is left for a whole send and its record is not sent; its lease runs out and
it is claimed again, so a lease never ends during a send or its record because of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

import httpx2
from redis.asyncio import Redis

from refundwatch.dashboard.signals import CHANGES_CHANNEL
from refundwatch.lib.egress import AllowList
from refundwatch.lib.http import make_client
from refundwatch.outgoing import delivery
from refundwatch.outgoing.notices import endpoint_disabled
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 256  # deliveries claimed and not yet sent and recorded, per worker, over all endpoints
CLAIM_FACTOR = 4  # a fast endpoint's claims: this many deliveries per send slot
FAST_SECONDS = 0.5  # an endpoint whose recent sends took less than this is fast
_LATENCY_WEIGHT = 0.2  # of the newest send in an endpoint's moving average


def lease_seconds(timeout_seconds: float) -> float:
    """How long a claim holds a delivery: the send's deadline, and as long again to record it."""
    return 2 * timeout_seconds + 5


class Dispatcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._wake = asyncio.Event()
        self._in_flight: Counter[UUID] = Counter()  # claimed, per endpoint, until sent (or given up)
        self._slots: dict[UUID, asyncio.Semaphore] = {}  # the sends at once, per endpoint
        self._latency: dict[UUID, float] = {}  # moving average of an endpoint's sends, in seconds
        self._sends: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoints_until = 0.0  # monotonic time until which the enabled endpoints are believed
        self._enabled: list[UUID] = []
        # One client per endpoint, its pool as large as the endpoint's slots: its connections are
        # kept alive from one send to the next, and a slow endpoint's never crowd the processors'.
        self._clients: dict[UUID, httpx2.AsyncClient] = {}
        self._sent: list[delivery.Sent] = []  # attempts made, waiting for the recorder
        self._to_record = asyncio.Event()
        self._allow = AllowList.parse(rt.settings.webhook_allowed_hosts)

    def start(self) -> Dispatcher:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name="refundwatch-outgoing"),
            loop.create_task(self._listen(), name="refundwatch-outgoing-notices"),
            loop.create_task(self._record(), name="refundwatch-outgoing-recorder"),
        ]
        return self

    async def stop(self) -> None:
        """Stop looking and cancel sends in flight: their leases run out and another worker (or this
        one, restarted) sends them again. Attempts already made are recorded first, so a restart does
        not send them twice."""
        for task in [*self._tasks, *self._sends]:
            task.cancel()
        for task in [*self._tasks, *self._sends]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self._sends = [], set()
        with contextlib.suppress(Exception):
            await self._flush()
        for client in self._clients.values():
            await client.aclose()
        self._clients = {}

    def nudge(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.round()
            except Exception:
                log.warning("could not take due webhook deliveries", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.rt.settings.webhook_sweep_seconds)

    async def round(self) -> int:
        """Claim what is due on every endpoint with a free slot and start sending it; how many."""
        settings = self.rt.settings
        lease = lease_seconds(settings.webhook_timeout_seconds)
        claimed: list[delivery.Claimed] = []
        for endpoint_id in await self._endpoints():
            room = MAX_IN_FLIGHT - sum(self._in_flight.values())
            free = min(self._claim_cap(endpoint_id) - self._in_flight[endpoint_id], room)
            if free > 0:
                batch = await delivery.claim_due(self.rt, endpoint_id, free, lease)
                self._in_flight[endpoint_id] += len(batch)
                claimed += batch
        if claimed:
            self._spawn(self._start_sends(claimed))
        return len(claimed)

    def _claim_cap(self, endpoint_id: UUID) -> int:
        """How many of an endpoint's deliveries may be claimed and not yet sent: its slots, times
        :data:`CLAIM_FACTOR` while it answers fast. Unknown (no send yet) is not fast."""
        slots = self.rt.settings.webhook_endpoint_concurrency
        fast = self._latency.get(endpoint_id, FAST_SECONDS) < FAST_SECONDS
        return slots * CLAIM_FACTOR if fast else slots

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _endpoints(self) -> list[UUID]:
        """The enabled endpoints, believed for most of a sweep interval: woken by every change notice
        while refunds run at full speed, the dispatcher reads them once, not on every round (a claim
        re-checks its endpoint is enabled, so one disabled meanwhile is not sent to)."""
        now = time.monotonic()
        if self._endpoints_until <= now:
            self._enabled = await delivery.enabled_endpoints(self.rt)
            self._endpoints_until = now + self.rt.settings.webhook_sweep_seconds * 0.9
            for gone in [e for e in self._clients if e not in self._enabled and not self._in_flight[e]]:
                await self._clients.pop(gone).aclose()
                self._slots.pop(gone, None)
                self._latency.pop(gone, None)
        return self._enabled

    async def _start_sends(self, claimed: list[delivery.Claimed]) -> None:
        """Sign and send a claimed batch, each delivery on its own task (different refunds side by
        side: a claim holds at most one delivery per refund and endpoint)."""
        try:
            signers = await delivery.signers(self.rt, {c.endpoint_id for c in claimed})
            bodies = await delivery.bodies(self.rt, claimed)
        except Exception:
            log.warning("could not prepare %d webhook deliveries; their leases will expire", len(claimed))
            for one in claimed:
                self._release(one.endpoint_id)
            raise
        for one in claimed:
            signer = signers.get(one.endpoint_id)
            if signer is None:  # deleted meanwhile: its deliveries went with it
                self._release(one.endpoint_id)
                continue
            self._spawn(self._send(one, signer, bodies[one.id]))

    async def _send(self, claimed: delivery.Claimed, signer: delivery.Signer, body: bytes) -> None:
        endpoint_id = claimed.endpoint_id
        try:
            async with self._slot(endpoint_id):
                if not self._time_for_a_send(claimed):
                    log.info("webhook delivery %s waited too long for a slot; sent later", claimed.id)
                    return
                sent = await delivery.send(
                    self.rt, self._client(endpoint_id), claimed, signer, body, self._allow
                )
            seconds = sent.attempt.latency_ms / 1000
            average = self._latency.get(endpoint_id, seconds)
            self._latency[endpoint_id] = average + _LATENCY_WEIGHT * (seconds - average)
            self._sent.append(sent)
            self._to_record.set()
        except Exception:
            log.warning("webhook delivery %s failed to run; its lease will expire", claimed.id, exc_info=True)
        finally:
            self._release(claimed.endpoint_id)

    def _slot(self, endpoint_id: UUID) -> asyncio.Semaphore:
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = asyncio.Semaphore(self.rt.settings.webhook_endpoint_concurrency)
        return slot

    def _time_for_a_send(self, claimed: delivery.Claimed) -> bool:
        """Enough of the lease left for a whole send and 5 s to record it (a fresh lease leaves the send
        timeout and as long again plus 5 s: ``lease_seconds``)."""
        lease = claimed.lease if claimed.lease.tzinfo else claimed.lease.replace(tzinfo=dt.UTC)
        left = (lease - delivery.utcnow()).total_seconds()
        return left > self.rt.settings.webhook_timeout_seconds + 5

    def _release(self, endpoint_id: UUID) -> None:
        self._in_flight[endpoint_id] -= 1
        if self._in_flight[endpoint_id] <= 0:
            del self._in_flight[endpoint_id]
        self.nudge()

    def _client(self, endpoint_id: UUID) -> httpx2.AsyncClient:
        client = self._clients.get(endpoint_id)
        if client is None:
            slots = self.rt.settings.webhook_endpoint_concurrency
            client = self._clients[endpoint_id] = make_client(max_connections=slots, keepalive=slots)
        return client

    async def _record(self) -> None:
        """Write the attempts made, as many as have gathered since the last write, in one go; then
        look again (a refund's next delivery is due once its previous one is recorded)."""
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            try:
                await self._flush()
            except Exception:
                log.warning("could not record webhook attempts; their leases will expire", exc_info=True)
            self.nudge()

    async def _flush(self) -> None:
        sent, self._sent = self._sent, []
        if sent:
            for notice in await delivery.record(self.rt, sent):
                await endpoint_disabled(self.rt, notice)

    async def _listen(self) -> None:
        """Wake on every change notice (its own Redis connection: a subscribed one can do nothing else)."""
        while True:
            redis = Redis.from_url(self.rt.settings.redis_url)
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANGES_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.nudge()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("change notices unavailable; the sweep still runs", exc_info=True)
                await asyncio.sleep(self.rt.settings.webhook_sweep_seconds)
            finally:
                await redis.aclose()
