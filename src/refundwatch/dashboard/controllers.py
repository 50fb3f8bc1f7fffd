"""The dashboard page on ``/``, one panel at a time (fallback polling, links), and the SSE stream.

All behind the staff guard (viewer and up). A page and its panels share the context builders in
dashboard.render, so a live update, a poll and a full load show the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from jinja2 import Environment
from litestar import Request, get
from litestar.channels import ChannelsPlugin, Subscriber
from litestar.response import Response, Stream, Template

from refundwatch.auth.guards import live_session
from refundwatch.auth.sessions import Session
from refundwatch.dashboard import render
from refundwatch.dashboard.broadcast import REFUNDS_KEY, VIEWS_KEY, refund_channel, view_channel, watch
from refundwatch.dashboard.panels import resolve
from refundwatch.dashboard.timeline import render_timeline
from refundwatch.dashboard.views import RANGES, View
from refundwatch.lib.exceptions import NotFound
from refundwatch.runtime import Runtime
from refundwatch.web.state import runtime_of
from refundwatch.web.templating import digest

KEEPALIVE_SECONDS = 15.0
SESSION_RECHECK_SECONDS = 60.0
# Three columns that stack independently (no gaps from rows of uneven panels); one column when narrow.
COLUMNS = (
    ("alerts", "success", "feed"),
    ("timing", "wip", "outflow"),
    ("uptime", "failures", "reconciliation"),
)
PAGE_ORDER = tuple(name for column in COLUMNS for name in column)


class LiveSubscriber(Subscriber):
    """Litestar's subscriber with a timed wait, so the stream can send keep-alives in between."""

    async def next_event(self, wait_seconds: float) -> bytes | None:
        # asyncio.timeout, not wait_for: no Task per message per viewer (500 viewers, many messages).
        try:
            async with asyncio.timeout(wait_seconds):
                item: bytes | None = await self._queue.get()
        except TimeoutError:
            return None
        self._queue.task_done()
        return item


def jinja(request: Request[Any, Any, Any]) -> Environment:
    env: Environment = request.app.template_engine.engine  # type: ignore[union-attr]
    return env


async def _view(rt: Runtime, request: Request[Any, Any, Any]) -> View:
    known = {c.name for c in await rt.connections.all()}
    return View.parse(request.query_params.get("range"), request.query_params.get("connection"), known)


@get("/", include_in_schema=False)
async def dashboard_page(request: Request[Any, Any, Any], session: Session) -> Template:
    rt = runtime_of(request)
    scope = await resolve(rt, await _view(rt, request))
    contexts = await asyncio.gather(*(render.panel_context(rt, scope, name) for name in PAGE_ORDER))
    return Template(
        template_name="pages/dashboard.html",
        context={
            "user": session.user,
            "view": scope.view,
            "ranges": list(RANGES.values()),
            "connections": sorted(scope.names.values()),
            "panels": dict(zip(PAGE_ORDER, contexts, strict=True)),
            "columns": COLUMNS,
            "rendered_at": scope.now,
        },
        headers={"Cache-Control": "no-store"},
    )


@get("/dashboard/panels/{name:str}", include_in_schema=False)
async def dashboard_panel(request: Request[Any, Any, Any], name: str) -> Response[str]:
    if name not in render.PANELS:
        raise NotFound(f"no panel {name!r}", code="panel_not_found")
    rt = runtime_of(request)
    scope = await resolve(rt, await _view(rt, request))
    html = await render.render_panel(rt, jinja(request), scope, name)
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})


@get("/refunds/{refund_id:uuid}/timeline", include_in_schema=False)
async def refund_timeline(request: Request[Any, Any, Any], refund_id: UUID) -> Response[str]:
    """A refund's timeline alone: what its page polls while the live stream is down."""
    html = await _timeline_html(request, runtime_of(request), refund_id)
    return Response(html, media_type="text/html", headers={"Cache-Control": "no-store"})


@get("/dashboard/stream", include_in_schema=False)
async def dashboard_stream(request: Request[Any, Any, Any], channels: ChannelsPlugin) -> Stream:
    """Server-sent events for one dashboard view, or (``?refund=<id>``) for one refund's timeline."""
    rt = runtime_of(request)
    refund = request.query_params.get("refund")
    if refund:
        try:
            refund_id = UUID(refund)
        except ValueError:
            raise NotFound("no such refund", code="refund_not_found") from None
        channel, key, member = refund_channel(refund_id), REFUNDS_KEY, str(refund_id)
        first = await _timeline_now(request, rt, refund_id, request.query_params.get("shown"))
    else:
        view = await _view(rt, request)
        channel, key, member = view_channel(view.key), VIEWS_KEY, view.key
        first = b""
    await watch(rt, key, member)
    subscriber = await channels.subscribe([channel])
    return Stream(
        _events(request, rt, channels, subscriber, key, member, first),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _timeline_html(request: Request[Any, Any, Any], rt: Runtime, refund_id: UUID) -> str:
    html = await render_timeline(rt, jinja(request), refund_id)
    if html is None:
        raise NotFound(f"no refund {refund_id}", code="refund_not_found")
    return html


async def _timeline_now(
    request: Request[Any, Any, Any], rt: Runtime, refund_id: UUID, shown: str | None
) -> bytes:
    """The refund's timeline as it is now, sent first on every (re)connect unless it is what the page
    shows (``shown``: its digest): a change made between the page's render (or while the connection
    was down) and this subscription would otherwise never reach it."""
    html = await _timeline_html(request, rt, refund_id)
    return b"" if shown == digest(html) else render.sse_message("timeline", html)


async def _events(
    request: Request[Any, Any, Any],
    rt: Runtime,
    channels: ChannelsPlugin,
    subscriber: Subscriber,
    key: str,
    member: str,
    first: bytes,
) -> AsyncIterator[bytes]:
    assert isinstance(subscriber, LiveSubscriber)
    checked = watched = asyncio.get_running_loop().time()
    try:
        # Reconnect after 3 s if the connection drops; the comment flushes the headers at once.
        yield b"retry: 3000\n: connected\n\n" + first
        while True:
            message = await subscriber.next_event(KEEPALIVE_SECONDS)
            if message is not None:
                yield message
            else:
                yield f": keep-alive {dt.datetime.now(dt.UTC):%H:%M:%S}\n\n".encode()
            # The watch (45 s) is renewed on time, not only on keep-alives: a stream whose events
            # kept coming let it lapse, and the broadcaster stopped drawing its view for 15 s.
            if asyncio.get_running_loop().time() - watched >= KEEPALIVE_SECONDS:
                watched = asyncio.get_running_loop().time()
                await watch(rt, key, member)
            # Due whatever the stream carries: checked only on keep-alives, a stream whose events
            # kept coming outlived its session for as long as the traffic lasted.
            if asyncio.get_running_loop().time() - checked > SESSION_RECHECK_SECONDS:
                checked = asyncio.get_running_loop().time()
                # Signed out elsewhere or expired: end the stream; the reconnect meets the sign-in guard.
                if await live_session(request) is None:  # role re-read too: its end ends the stream
                    return
    finally:
        with contextlib.suppress(Exception):
            await channels.unsubscribe(subscriber)


ROUTES = [dashboard_page, dashboard_panel, refund_timeline, dashboard_stream]
