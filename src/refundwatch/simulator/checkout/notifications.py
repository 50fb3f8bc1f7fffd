"""Checkout.com's webhook delivery: each event signed with ``Cko-Signature`` and re-sent until answered 2xx.

``Cko-Signature`` is the lowercase hex HMAC-SHA256 of the raw body, keyed with the connection's
``webhook_signature_key`` (Checkout.com, "Set up your webhook receiver"). When the connection has a
``webhook_authorization`` value, every delivery carries it as the ``Authorization`` header, as the
dashboard's optional "Authorization header key" does. Every event is delivered on its own, so a re-sent
one can arrive after a later one (order is not guaranteed); ``webhook_duplicate_rate`` sends an event
twice, ``webhook_drop_rate`` never.

Checkout.com retries deliveries that are not answered 2xx "over hours" without publishing the spacing:
here the waits double from 1 minute to 8 hours (1, 2, 4 … 256 minutes, then 8 hours), ten re-sends over
about 16.5 hours (ours), compressed by ``webhook_retry_scale`` as for the other processors.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import msgspec

from ..connections import Connection
from ..faults import Faults
from ..webhooks import WebhookSender

__all__ = ["PROCESSOR", "RETRY_DELAYS", "Notifier", "signature"]

PROCESSOR = "checkout"
RETRY_DELAYS: tuple[float, ...] = (*(60.0 * 2**n for n in range(9)), 8 * 3600.0)
_USER_AGENT = "Checkout.com-Webhooks/1.0"
_encode = msgspec.json.Encoder().encode


def signature(key: str, body: bytes) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, webhooks: WebhookSender, faults: Faults) -> None:
        self.webhooks = webhooks
        self.faults = faults

    def notify(self, connection: Connection, event: dict[str, Any]) -> None:
        """Sign ``event`` for ``connection`` and deliver it in the background."""
        key = connection.get("webhook_signature_key")
        if not self.webhooks.enabled or not key:
            return
        config = self.faults.get(PROCESSOR)
        if config.drops_webhook():
            return  # lost: never delivered
        body = _encode(event)
        headers = {"Cko-Signature": signature(key, body), "User-Agent": _USER_AGENT}
        authorization = connection.get("webhook_authorization")
        if authorization:
            headers["Authorization"] = authorization

        def signer(payload: bytes) -> dict[str, str]:
            return headers  # the body never changes between attempts, nor does its signature

        copies = 2 if config.duplicates_webhook() else 1
        for copy in range(copies):
            self.webhooks.spawn(self._deliver(connection, event["id"], event["type"], body, signer, copy > 0))

    async def _deliver(
        self,
        connection: Connection,
        event_id: str,
        event_type: str,
        body: bytes,
        signer: Any,
        duplicate: bool,
    ) -> None:
        await self.webhooks.deliver(
            connection,
            event_id,
            event_type,
            body,
            signer,
            duplicate=duplicate,
            retry_delays=RETRY_DELAYS,
            scale=self._retry_scale,
        )

    def _retry_scale(self) -> float:
        return self.faults.get(PROCESSOR).webhook_retry_scale
