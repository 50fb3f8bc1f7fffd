"""PayPal's webhook delivery: events signed with the certificate, re-sent on PayPal's schedule.

Every attempt is a new transmission: a new ``PAYPAL-TRANSMISSION-ID`` and ``-TIME`` and so a new
signature, over the same body (the event ``id`` stays). An attempt counts as delivered on any 2xx.
PayPal: "If your app responds with any other status code, PayPal tries to resend the notification
message 25 times over the course of three days" (developer.paypal.com, Webhooks overview). The spacing
is not documented: here the waits double from 30 s up to 4 h, then stay even so that the 25th re-send
goes out 72 h after the first attempt; ``webhook_retry_scale`` compresses them as for Adyen.

Transmissions are remembered (the most recent :data:`MAX_TRANSMISSIONS`) so that
``POST /v1/notifications/verify-webhook-signature`` can check a claimed one against what was sent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from ..connections import Connection
from ..faults import Faults
from ..webhooks import WebhookSender
from .certs import Certificates, signed_message
from .wire import now_time

__all__ = ["AUTH_ALGO", "MAX_TRANSMISSIONS", "RETRY_DELAYS", "Notifier", "Transmission", "event_digest"]

PROCESSOR = "paypal"
AUTH_ALGO = "SHA256withRSA"
MAX_TRANSMISSIONS = 200_000
_RETRIES = 25
_WINDOW = 72 * 3600.0


def _retry_delays() -> tuple[float, ...]:
    delays: list[float] = []
    wait = 30.0
    while wait < 4 * 3600.0:
        delays.append(wait)
        wait *= 2
    rest = _RETRIES - len(delays)
    even = (_WINDOW - sum(delays)) / rest
    return (*delays, *([even] * rest))


RETRY_DELAYS: tuple[float, ...] = _retry_delays()
_USER_AGENT = "PayPal/AUHD-214.0-58420222"
_encode = msgspec.json.Encoder().encode


def event_digest(event: object) -> str:
    """The event's content, independent of key order and spacing (what verification compares)."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Transmission:
    transmission_id: str
    transmission_time: str
    transmission_sig: str
    webhook_id: str
    cert_url: str
    event_digest: str


class Notifier:
    def __init__(
        self, webhooks: WebhookSender, faults: Faults, certificates: Certificates, public_base: str
    ) -> None:
        self.webhooks = webhooks
        self.faults = faults
        self.certificates = certificates
        self.cert_url = public_base + "/paypal" + certificates.cert_path
        self.transmissions: OrderedDict[str, Transmission] = OrderedDict()
        webhooks.on_reset(self.transmissions.clear)

    def notify(self, connection: Connection, event: dict[str, Any]) -> None:
        """Send ``event`` to ``connection``'s webhook URL, signed for its ``webhook_id``."""
        webhook_id = connection.get("webhook_id")
        if not self.webhooks.enabled or not webhook_id:
            return
        config = self.faults.get(PROCESSOR)
        if config.drops_webhook():
            return  # lost: never delivered
        body = _encode(event)
        digest = event_digest(event)

        def signer(payload: bytes) -> dict[str, str]:
            transmission_id = str(uuid.uuid4())
            transmission_time = now_time()
            signature = self.certificates.sign(
                signed_message(transmission_id, transmission_time, webhook_id, payload)
            )
            self._remember(
                Transmission(transmission_id, transmission_time, signature, webhook_id, self.cert_url, digest)
            )
            return {
                "PAYPAL-TRANSMISSION-ID": transmission_id,
                "PAYPAL-TRANSMISSION-TIME": transmission_time,
                "PAYPAL-TRANSMISSION-SIG": signature,
                "PAYPAL-CERT-URL": self.cert_url,
                "PAYPAL-AUTH-ALGO": AUTH_ALGO,
                "PAYPAL-AUTH-VERSION": "v2",
                "User-Agent": _USER_AGENT,
                "Correlation-Id": uuid.uuid4().hex[:13],
            }

        copies = 2 if config.duplicates_webhook() else 1
        for copy in range(copies):
            self.webhooks.spawn(
                self._deliver(connection, event["id"], event["event_type"], body, signer, copy > 0)
            )

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

    def _remember(self, transmission: Transmission) -> None:
        self.transmissions[transmission.transmission_id] = transmission
        while len(self.transmissions) > MAX_TRANSMISSIONS:
            self.transmissions.popitem(last=False)

    def verify(self, claim: dict[str, Any]) -> bool:
        """Whether ``claim`` (a verify-webhook-signature body) names a transmission this simulator sent,
        with its signature, time, webhook id, certificate URL, algorithm, and the very event."""
        sent = self.transmissions.get(str(claim.get("transmission_id")))
        if sent is None:
            return False
        return (
            claim.get("transmission_sig") == sent.transmission_sig
            and claim.get("transmission_time") == sent.transmission_time
            and claim.get("webhook_id") == sent.webhook_id
            and claim.get("cert_url") == sent.cert_url
            and claim.get("auth_algo") == AUTH_ALGO
            and event_digest(claim.get("webhook_event")) == sent.event_digest
        )
