"""Notices for the live dashboard and /metrics, sent after commit and batched: which refunds changed, how
the processors answered live calls, and the web requests served.

Every process (web, worker) has one ``signals`` object. Calls to it only touch memory, so the worker's
hot path never waits on Redis for the dashboard; a background task sends what piled up in one pipeline
(one ``PUBLISH`` of many refund ids, a few counters). ORM sessions report the refunds they changed
when they commit (the session hooks below); the Core hot paths call ``refund_changed`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "refundwatch:live:changes"
CALLS_KEY = "refundwatch:calls:{connection}:{slot}"  # hash ok/failed per 10 s slot
LAST_CALL_FAILURE_KEY = "refundwatch:calls:{connection}:last_failure"
CALL_SLOT_SECONDS = 10
HTTP_KEY = "refundwatch:http"  # hash: request counts and latency buckets per method, route, status
# Upper bounds (s) of the request-duration buckets, as /metrics exposes them.
HTTP_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_FLUSH_SECONDS = 1.0
UNTIMED_ROUTES = frozenset({"/dashboard/stream"})  # a stream lasts as long as the viewer stays
ROLLUPS = "rollups"  # a notice that the rollups moved (not a refund id)
HEALTH = "health"  # a notice that health checks were stored
RECONCILIATION = "reconciliation"  # a notice that breaks were opened or resolved
ALERTS = "alerts"  # a notice that alerts were opened or resolved (refundwatch.alerts)


class Signals:
    def __init__(self) -> None:
        self._redis: Redis | None = None
        self._changed: set[str] = set()
        self._calls: dict[tuple[str, int], list[int]] = {}
        self._failures: dict[str, dict[str, Any]] = {}
        self._http: dict[tuple[str, str, int], list[float]] = {}  # count, seconds, buckets…
        self._http_sent = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, redis: Redis) -> None:
        """Start sending (one per process, once its Redis is open)."""
        self._redis = redis
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="refundwatch-signals")

    async def detach(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._flush()  # what piled up since the last send
        self._redis = None

    def refund_changed(self, refund_id: object) -> None:
        if self._redis is not None:
            self._changed.add(str(refund_id))
            self._wake.set()

    def notice(self, what: str) -> None:
        """Something other than one refund changed (``ROLLUPS``, ``HEALTH``, ``RECONCILIATION``,
        ``ALERTS``)."""
        self.refund_changed(what)

    def gateway_call(self, connection: str, *, ok: bool, code: str = "", message: str = "") -> None:
        """The outcome of one live processor call: feeds the uptime panel's current state."""
        if self._redis is None:
            return
        slot = int(time.time()) // CALL_SLOT_SECONDS
        counts = self._calls.setdefault((connection, slot), [0, 0])
        counts[0 if ok else 1] += 1
        if not ok:
            self._failures[connection] = {"at": time.time(), "code": code, "message": message[:200]}
        self._wake.set()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request, by route template (never the raw path: labels stay few). Sent with the
        next notices, at most once a second; nothing waits for it."""
        if self._redis is None:
            return
        row = self._http.get((method, route, status))
        if row is None:
            row = self._http[method, route, status] = [0.0] * (2 + len(HTTP_BOUNDS))
        row[0] += 1
        if route in UNTIMED_ROUTES:
            return
        row[1] += seconds
        for slot, bound in enumerate(HTTP_BOUNDS):
            if seconds <= bound:
                row[2 + slot] += 1
                break

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancel that arrives as
            # the wait ends (a notice just before detach), and detach would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HTTP_FLUSH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except Exception:
                log.warning("could not send live notices", exc_info=True)
            await asyncio.sleep(0.01)  # at most ~100 sends a second; notices pile up meanwhile

    async def _flush(self) -> None:
        redis = self._redis
        if redis is None:
            return
        http: dict[tuple[str, str, int], list[float]] = {}
        if self._http and time.monotonic() - self._http_sent >= HTTP_FLUSH_SECONDS:
            http, self._http, self._http_sent = self._http, {}, time.monotonic()
        if not (self._changed or self._calls or self._failures or http):
            return
        changed, self._changed = self._changed, set()
        calls, self._calls = self._calls, {}
        failures, self._failures = self._failures, {}
        pipe = redis.pipeline(transaction=False)
        if changed:
            pipe.publish(CHANGES_CHANNEL, ",".join(sorted(changed)))
        for (connection, slot), (ok, failed) in calls.items():
            key = CALLS_KEY.format(connection=connection, slot=slot)
            pipe.hincrby(key, "ok", ok)
            pipe.hincrby(key, "failed", failed)
            pipe.expire(key, CALL_SLOT_SECONDS * 60)
        for connection, failure in failures.items():
            pipe.set(LAST_CALL_FAILURE_KEY.format(connection=connection), json.dumps(failure), ex=30 * 86400)
        for (method, route, status), row in http.items():
            key = f"{method} {route} {status}"
            pipe.hincrby(HTTP_KEY, key, int(row[0]))
            if any(row[2:]):
                pipe.hincrbyfloat(HTTP_KEY, f"{key} sum", row[1])
                for slot, count in enumerate(row[2:]):
                    if count:
                        pipe.hincrby(HTTP_KEY, f"{key} le {HTTP_BOUNDS[slot]}", int(count))
        await pipe.execute()


signals = Signals()


# ORM sessions: remember the refunds whose timeline grew, tell the dashboards once it is committed.
@event.listens_for(Session, "after_flush")
def _collect(session: Session, _context: Any) -> None:
    from refundwatch.db.models import RefundEvent

    changed = session.info.setdefault("refundwatch_changed", set())
    changed.update(obj.refund_id for obj in session.new if isinstance(obj, RefundEvent))


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    for refund_id in session.info.pop("refundwatch_changed", ()):
        signals.refund_changed(refund_id)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop("refundwatch_changed", None)
