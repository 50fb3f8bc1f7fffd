"""Signed delivery ids that must not come back with another body.

PayPal signs ``transmission id | time | webhook id | CRC32(body)``: a CRC32 is no cryptographic hash,
so anyone holding one delivery's signed headers could write another body with the same CRC32 and
replay the signature while its time is acceptable. A processor's re-send of the same delivery carries
the same body (stored once, by event id); the same transmission id with any other body is refused.
Kept in Redis, shared by every web process, for as long as the signature is acceptable.
"""

from __future__ import annotations

import hashlib
import math

from refundwatch.gateways.base import WebhookItem
from refundwatch.runtime import Runtime

KEY = "refundwatch:webhooks:transmission:{connection}:{id}"
REUSED = "this transmission id was already used with another body"


async def refuse_reused(rt: Runtime, connection: str, items: list[WebhookItem]) -> list[WebhookItem]:
    """The items, with those whose replay id was first seen with another body marked refused."""
    return [await _checked(rt, connection, item) for item in items]


async def _checked(rt: Runtime, connection: str, item: WebhookItem) -> WebhookItem:
    if item.error is not None or item.replay_id is None:
        return item
    redis = rt.require_redis()
    key = KEY.format(connection=connection, id=item.replay_id)
    digest = hashlib.sha256(item.payload).hexdigest()
    if await redis.set(key, digest, nx=True, ex=max(1, math.ceil(item.replay_seconds))):
        return item  # first seen
    if (await redis.get(key) or b"").decode() == digest:
        return item  # the same delivery again: stored once by its event id
    return WebhookItem(item.payload, error=REUSED)
