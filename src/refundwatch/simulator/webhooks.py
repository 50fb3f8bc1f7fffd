"""Background webhook delivery, generic over the processor.

A processor module builds the event body and a ``signer`` that returns its signature headers for
one attempt (signatures carry a timestamp, so each retry is signed afresh); this module posts it
to the connection's URL in the background, retrying on answers the processor does not take as an
acknowledgement (by default: anything but 2xx) and on connection errors. A processor with a documented
retry schedule (Adyen) passes it, with the time scale that compresses it; the others get a short one.
Every attempt is kept on its delivery, for ``GET /_control/webhooks``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx2

from .connections import Connection

__all__ = ["Acknowledged", "Attempt", "Delivery", "Scale", "Signer", "WebhookSender"]

Signer = Callable[[bytes], Mapping[str, str]]
# The fraction of real time the retry waits take, read before each wait (a fault setting).
Scale = Callable[[], float]
# Whether the receiver's answer (status, body) acknowledges the delivery; otherwise it is retried.
Acknowledged = Callable[[int, bytes], bool]


def _is_2xx(status: int, body: bytes) -> bool:
    return 200 <= status < 300


DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


def _real_time() -> float:
    return 1.0


@dataclass(slots=True)
class Attempt:
    """One POST of a delivery: when, after how long a wait, and what came back."""

    number: int
    at: float
    waited: float  # seconds slept before it (the scaled schedule's delay; 0 for the first)
    status_code: int | None = None
    error: str | None = None
    acknowledged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "at": self.at,
            "waited": self.waited,
            "status_code": self.status_code,
            "error": self.error,
            "acknowledged": self.acknowledged,
        }


@dataclass(slots=True)
class Delivery:
    event_id: str
    event_type: str
    processor: str
    connection: str
    url: str
    created: float
    duplicate: bool = False
    attempts: int = 0
    status_code: int | None = None
    state: str = "pending"  # pending | delivered | failed
    error: str | None = None
    attempt_log: list[Attempt] = field(default_factory=list)
    next_attempt_at: float | None = None  # while a retry waits

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "processor": self.processor,
            "connection": self.connection,
            "url": self.url,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "state": self.state,
            "error": self.error,
            "duplicate": self.duplicate,
            "created": self.created,
            "attempt_log": [attempt.as_dict() for attempt in self.attempt_log],
            "next_attempt_at": self.next_attempt_at,
        }


class WebhookSender:
    """Posts events through one shared ``httpx2.AsyncClient`` (opened on app start-up)."""

    def __init__(
        self,
        url_template: str | None,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url_template = url_template
        self.retry_delays = tuple(retry_delays)
        self.timeout_seconds = timeout_seconds
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx2.AsyncClient | None = None
        self._reset_hooks: list[Callable[[], None]] = []

    @property
    def enabled(self) -> bool:
        return self.url_template is not None

    def url_for(self, connection: Connection) -> str | None:
        if self.url_template is None:
            return None
        return self.url_template.replace("{connection}", quote(connection.name, safe=""))

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self.timeout_seconds),
                limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64),
                trust_env=False,  # loopback only: never route through an environment proxy
            )

    async def close(self) -> None:
        await self._cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def send(
        self,
        connection: Connection,
        event_id: str,
        event_type: str,
        body: bytes,
        signer: Signer,
        *,
        duplicate: bool = False,
        acknowledged: Acknowledged = _is_2xx,
    ) -> None:
        """Deliver ``body`` in the background (twice, independently, when ``duplicate``)."""
        for copy in range(2 if duplicate else 1):
            delivery = self._new_delivery(connection, event_id, event_type, duplicate=copy > 0)
            if delivery is None:
                return
            self.spawn(self._deliver(delivery, body, signer, acknowledged, self.retry_delays, _real_time))

    async def deliver(
        self,
        connection: Connection,
        event_id: str,
        event_type: str,
        body: bytes,
        signer: Signer,
        *,
        duplicate: bool = False,
        acknowledged: Acknowledged = _is_2xx,
        retry_delays: Sequence[float] | None = None,
        scale: Scale = _real_time,
    ) -> bool:
        """Deliver ``body`` now, with retries; returns whether it was acknowledged. For processors
        that deliver one batch at a time per endpoint (Adyen), from a task started with :meth:`spawn`.

        ``retry_delays``: the waits before each retry (default: the sender's short schedule), each
        multiplied by ``scale()`` when it starts; when they run out unacknowledged, the delivery failed.
        """
        delivery = self._new_delivery(connection, event_id, event_type, duplicate=duplicate)
        if delivery is None:
            return False
        delays = self.retry_delays if retry_delays is None else tuple(retry_delays)
        await self._deliver(delivery, body, signer, acknowledged, delays, scale)
        return delivery.state == "delivered"

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background; reset and shutdown cancel it."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_reset(self, hook: Callable[[], None]) -> None:
        """``hook()`` runs on reset, after the background deliveries are cancelled."""
        self._reset_hooks.append(hook)

    def _new_delivery(
        self, connection: Connection, event_id: str, event_type: str, *, duplicate: bool
    ) -> Delivery | None:
        url = self.url_for(connection)
        if url is None:
            return None
        delivery = Delivery(
            event_id=event_id,
            event_type=event_type,
            processor=connection.processor,
            connection=connection.name,
            url=url,
            created=time.time(),
            duplicate=duplicate,
        )
        self.deliveries.append(delivery)
        return delivery

    def list(self, connection: str | None = None, processor: str | None = None) -> list[dict[str, Any]]:
        return [
            d.as_dict()
            for d in self.deliveries
            if (connection is None or d.connection == connection)
            and (processor is None or d.processor == processor)
        ]

    async def reset(self) -> None:
        await self._cancel_all()
        self.deliveries.clear()
        for hook in self._reset_hooks:
            hook()

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _deliver(
        self,
        delivery: Delivery,
        body: bytes,
        signer: Signer,
        acknowledged: Acknowledged,
        delays: Sequence[float],
        scale: Scale,
    ) -> None:
        for number in range(1, len(delays) + 2):
            waited = 0.0
            if number > 1:
                waited = delays[number - 2] * max(scale(), 0.0)
                delivery.next_attempt_at = time.time() + waited
                await asyncio.sleep(waited)
                delivery.next_attempt_at = None
            if await self._attempt(delivery, body, signer, acknowledged, number, waited):
                delivery.state = "delivered"
                return
        delivery.state = "failed"

    async def _attempt(
        self,
        delivery: Delivery,
        body: bytes,
        signer: Signer,
        acknowledged: Acknowledged,
        number: int,
        waited: float,
    ) -> bool:
        """One POST, recorded on the delivery; whether the processor takes the answer as acknowledged."""
        if self._client is None:  # started outside the app's lifespan (tests of the app object)
            await self.start()
        client = self._client
        assert client is not None
        attempt = Attempt(number=number, at=time.time(), waited=waited)
        delivery.attempt_log.append(attempt)
        delivery.attempts += 1
        headers = {"Content-Type": "application/json; charset=utf-8", **signer(body)}
        try:
            response = await client.post(delivery.url, content=body, headers=headers)
        except httpx2.HTTPError as exc:
            delivery.status_code = attempt.status_code = None
            delivery.error = attempt.error = f"{type(exc).__name__}: {exc}"
            return False
        delivery.status_code = attempt.status_code = response.status_code
        if acknowledged(response.status_code, response.content):
            attempt.acknowledged = True
            delivery.error = None
            return True
        error = f"HTTP {response.status_code}"
        if 200 <= response.status_code < 300:
            error += " without the acknowledgement the processor expects"
        delivery.error = attempt.error = error
        return False
