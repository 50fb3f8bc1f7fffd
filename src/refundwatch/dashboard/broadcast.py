"""The live broadcaster: renders each changed panel once and publishes it for every viewer.

Every web process runs one; a Redis lease makes exactly one of them the leader at a time (another
takes over within seconds if it dies). The leader listens for change notices (dashboard.signals),
marks panels stale, and at most every ``live_interval_ms`` (``live_feed_interval_ms``, 100 ms, for the feed)
renders the stale panels for each view someone is watching and publishes the encoded SSE message on
that view's channel. Each web process forwards what arrives to its own SSE clients (dashboard.stream),
so a change made anywhere reaches every browser, whichever process serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any
from uuid import UUID

from jinja2 import Environment
from litestar.channels import ChannelsPlugin
from redis.exceptions import RedisError

from refundwatch.dashboard import render
from refundwatch.dashboard.panels import resolve
from refundwatch.dashboard.signals import ALERTS, CHANGES_CHANNEL, HEALTH, RECONCILIATION, ROLLUPS
from refundwatch.dashboard.timeline import render_timeline
from refundwatch.dashboard.views import View
from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)

LEADER_KEY = "refundwatch:live:leader"
VIEWS_KEY = "refundwatch:live:views"  # zset: view key → until when someone watches it
REFUNDS_KEY = "refundwatch:live:refunds"  # zset: refund id → until when someone watches its page
LEASE_MS = 5000
SLOW_REDRAW_SECONDS = 15.0  # ages and sliding windows move even when nothing happens
# Renew or give up the lease only while it is still ours.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"  # noqa: E501
_RESIGN = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def view_channel(view_key: str) -> str:
    return f"dashboard.{view_key}"


def refund_channel(refund_id: UUID | str) -> str:
    return f"refund.{refund_id}"


class Broadcaster:
    def __init__(self, rt: Runtime, channels: ChannelsPlugin, env: Environment) -> None:
        self.rt, self.channels, self.env = rt, channels, env
        self.token = uuid.uuid4().hex
        self.stale: set[str] = set()
        self.refunds: set[str] = set()
        self.wake = asyncio.Event()
        self.last: dict[str, float] = {}

    async def run(self) -> None:
        redis = self.rt.require_redis()
        redis_down = False  # said once per outage: a line every second would bury the log
        while True:
            try:
                if await redis.set(LEADER_KEY, self.token, nx=True, px=LEASE_MS):
                    if redis_down:
                        log.info("live broadcaster: Redis answers again")
                        redis_down = False
                    await self._lead()
                else:
                    redis_down = False
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:
                if not redis_down:
                    log.warning(
                        "live broadcaster: Redis does not answer (%s); retrying every second",
                        type(exc).__name__,
                    )
                redis_down = True
                await asyncio.sleep(1.0)
            except Exception:
                log.warning("live broadcaster stopped leading; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def _lead(self) -> None:
        log.info("this process now renders the live dashboard panels")
        redis = self.rt.require_redis()
        pubsub = redis.pubsub()
        await pubsub.subscribe(CHANGES_CHANNEL)
        listener = asyncio.create_task(self._listen(pubsub))
        self.stale.update(render.PANELS)  # a new leader owes everyone a fresh picture
        try:
            renewed = time.monotonic()
            while True:
                if time.monotonic() - renewed > LEASE_MS / 3000:
                    if not await redis.eval(_RENEW, 1, LEADER_KEY, self.token, str(LEASE_MS)):  # type: ignore[misc]
                        return  # the lease went to someone else (we stalled): let them lead
                    renewed = time.monotonic()
                if listener.done():
                    listener.result()  # raises what stopped it
                await self._tick()
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await redis.eval(_RESIGN, 1, LEADER_KEY, self.token)  # type: ignore[misc]

    async def _listen(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message.get("type") != "message":
                continue
            for item in message["data"].decode().split(","):
                if item == ROLLUPS:
                    self.stale.update(render.ON_ROLLUPS)
                elif item == HEALTH:
                    self.stale.update(render.ON_HEALTH)
                elif item == RECONCILIATION:
                    self.stale.update(render.ON_RECONCILIATION)
                elif item == ALERTS:
                    self.stale.update(render.ON_ALERTS)
                else:
                    self.stale.update(render.ON_REFUND_CHANGE)
                    self.refunds.add(item)
            self.wake.set()

    async def _tick(self) -> None:
        """Wait for something stale, then redraw what is due; what is not due waits for its turn."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=0.5)
        self.wake.clear()
        now = time.monotonic()
        if now - self.last.get("slow", 0.0) >= SLOW_REDRAW_SECONDS:
            self.stale.update(render.PANELS)
            self.last["slow"] = now
        settings = self.rt.settings
        due = {
            name
            for name in self.stale
            if now - self.last.get(name, 0.0)
            >= (settings.live_feed_interval_ms if name == "feed" else settings.live_interval_ms) / 1000
        }
        refunds = set(self.refunds)
        if not due and not refunds:
            await asyncio.sleep(0.02)
            return
        self.stale -= due
        self.refunds -= refunds
        for name in due:
            self.last[name] = now
        await asyncio.gather(self._publish_panels(due), self._publish_timelines(refunds))
        if self.stale:
            self.wake.set()  # some were not due yet: come back for them shortly
            await asyncio.sleep(0.02)

    async def _publish_panels(self, names: set[str]) -> None:
        """Every stale panel of every watched view, side by side (their queries overlap); the feed first,
        since that is where people watch for their refund."""
        if not names:
            return
        ordered = sorted(names, key=lambda name: (name != "feed", name))
        views = await _watched(self.rt, VIEWS_KEY)
        await asyncio.gather(*(self._publish_view(key, ordered) for key in views))

    async def _publish_view(self, key: str, names: list[str]) -> None:
        """One message per view and pass, carrying every redrawn panel as its own SSE event: each
        viewer is woken once per pass, not once per panel."""
        scope = await resolve(self.rt, View.from_key(key))
        pages = await asyncio.gather(*(render.render_panel(self.rt, self.env, scope, name) for name in names))
        message = b"".join(render.sse_message(name, html) for name, html in zip(names, pages, strict=True))
        await self.channels.wait_published(message, [view_channel(key)])

    async def _publish_timelines(self, refunds: set[str]) -> None:
        if not refunds:
            return
        watched = set(await _watched(self.rt, REFUNDS_KEY))
        for refund_id in refunds & watched:
            html = await render_timeline(self.rt, self.env, UUID(refund_id))
            if html is not None:
                await self.channels.wait_published(
                    render.sse_message("timeline", html), [refund_channel(refund_id)]
                )


_PRUNE_SECONDS = 60.0
_pruned: dict[str, float] = {}


async def _watched(rt: Runtime, key: str) -> list[str]:
    """What someone still watches: one round trip (the leader asks on every pass while refunds
    change). Lapsed entries are ignored here and removed about once a minute."""
    redis = rt.require_redis()
    now = time.time()
    if now - _pruned.get(key, 0.0) >= _PRUNE_SECONDS:
        _pruned[key] = now
        await redis.zremrangebyscore(key, "-inf", now)
    return [m.decode() for m in await redis.zrangebyscore(key, f"({now}", "+inf")]  # lapsed: score <= now


async def watch(rt: Runtime, key: str, member: str, seconds: float = 45.0) -> None:
    """A viewer is on this view or refund page for at least ``seconds`` more (renewed while connected)."""
    await rt.require_redis().zadd(key, {member: time.time() + seconds})
