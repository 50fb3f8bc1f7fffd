"""Adyen's notification delivery: signed items, batched per endpoint, one batch at a time.

Adyen queues notification items per webhook endpoint and posts them as a ``notificationItems``
batch, waiting for the ``[accepted]`` acknowledgement before the next one. Items that fall due while
a batch is on its way (or being retried) travel together in the next one. A batch not acknowledged is
retried on Adyen's documented schedule (:data:`RETRY_DELAYS`), at the pace ``webhook_retry_scale``
sets, until acknowledged or the schedule ends.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from ..connections import Connection
from ..faults import Faults
from ..webhooks import WebhookSender
from .wire import sign_item

__all__ = ["PROCESSOR", "RETRY_DELAYS", "RETRY_WINDOW_SECONDS", "Notifier"]

PROCESSOR = "adyen"
MAX_BATCH = 100  # items per POST; more wait for the next one

_MINUTE, _HOUR = 60.0, 3600.0
# docs.adyen.com/development-resources/webhooks/troubleshoot ("Retry queue", page of 2026-05-24):
# "Adyen retries sending the webhook message three times before placing the webhook into a retry
# queue. The initial delivery attempts are sent at 9 seconds, 18 seconds, and again at 27 seconds."
# (an older version of the page: "three times immediately"). "From the queue, we automatically retry
# sending the webhook for up to 30 days. After the first three failed retries, we retry sending the
# webhook in the following intervals: 2 minutes, 5 minutes, 10 minutes, 15 minutes, 30 minutes,
# 1 hour, 2 hours, 4 hours, 8 hours". What follows 8 hours is not said: the last interval repeats
# until 30 days after the first attempt (our reading).
_FIRST_RETRIES = (9.0, 9.0, 9.0)
_QUEUE_INTERVALS = (
    2 * _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    15 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    2 * _HOUR,
    4 * _HOUR,
    8 * _HOUR,
)
RETRY_WINDOW_SECONDS = 30 * 24 * _HOUR


def _retry_delays() -> tuple[float, ...]:
    delays = [*_FIRST_RETRIES, *_QUEUE_INTERVALS]
    while sum(delays) + _QUEUE_INTERVALS[-1] <= RETRY_WINDOW_SECONDS:
        delays.append(_QUEUE_INTERVALS[-1])
    return tuple(delays)


# The wait before each retry, in real seconds: 99 retries, 100 attempts in all.
RETRY_DELAYS: tuple[float, ...] = _retry_delays()
_USER_AGENT = "Adyen HttpPost Notification Service"
_encode = msgspec.json.Encoder().encode


def _accepted(status: int, body: bytes) -> bool:
    """Adyen takes a delivery as done only on a 2xx answer whose body says ``[accepted]``."""
    return 200 <= status < 300 and b"[accepted]" in body


class Notifier:
    """Queues signed items per connection and drains each queue in its own background task."""

    def __init__(self, webhooks: WebhookSender, faults: Faults) -> None:
        self.webhooks = webhooks
        self.faults = faults
        self._queues: dict[str, list[dict[str, Any]]] = {}
        self._connections: dict[str, Connection] = {}
        self._draining: set[str] = set()
        webhooks.on_reset(self._forget)

    def notify(self, connection: Connection, item: dict[str, Any]) -> None:
        """Sign ``item`` with the connection's HMAC key and queue it for delivery."""
        hmac_key = connection.get("hmac_key")
        if not self.webhooks.enabled or not hmac_key:
            return
        if self.faults.get(PROCESSOR).drops_webhook():
            return  # lost: never delivered
        self._queues.setdefault(connection.name, []).append(sign_item(item, hmac_key))
        self._connections[connection.name] = connection
        if connection.name not in self._draining:
            self._draining.add(connection.name)
            self.webhooks.spawn(self._drain(connection.name))

    async def _drain(self, name: str) -> None:
        try:
            while queue := self._queues.get(name):
                batch, self._queues[name] = queue[:MAX_BATCH], queue[MAX_BATCH:]
                await self._post(self._connections[name], batch)
        finally:
            self._draining.discard(name)

    async def _post(self, connection: Connection, batch: list[dict[str, Any]]) -> None:
        body = _encode(
            {"live": "false", "notificationItems": [{"NotificationRequestItem": item} for item in batch]}
        )
        event_id = ",".join(f"{i['pspReference']}:{i['eventCode']}:{i['success']}" for i in batch)
        event_type = ",".join(dict.fromkeys(str(i["eventCode"]) for i in batch))
        headers = {"User-Agent": _USER_AGENT}
        username, password = connection.get("webhook_username"), connection.get("webhook_password")
        if username and password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"

        def signer(payload: bytes) -> dict[str, str]:
            return headers  # items carry their signatures; the request only its credentials

        copies = 2 if self.faults.get(PROCESSOR).duplicates_webhook() else 1
        for copy in range(copies):
            await self.webhooks.deliver(
                connection,
                event_id,
                event_type,
                body,
                signer,
                duplicate=copy > 0,
                acknowledged=_accepted,
                retry_delays=RETRY_DELAYS,
                scale=self._retry_scale,
            )

    def _retry_scale(self) -> float:
        return self.faults.get(PROCESSOR).webhook_retry_scale

    def _forget(self) -> None:
        self._queues.clear()
        self._connections.clear()
        self._draining.clear()
