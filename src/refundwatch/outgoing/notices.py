"""What the outgoing webhooks tell the rest of refundwatch: an endpoint was disabled.

The alerts feature (issue 15 §2) listens here: ``on_endpoint_disabled(listener)`` at start-up. The
worker calls :func:`endpoint_disabled` once, after the commit that disabled the endpoint; with no
listener it does nothing, and a listener that fails is logged, never raised.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

from refundwatch.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointDisabled:
    endpoint_id: UUID
    url: str
    reason: str
    failing_since: dt.datetime
    at: dt.datetime


Listener = Callable[[Runtime, EndpointDisabled], Awaitable[None]]
_listeners: list[Listener] = []


def on_endpoint_disabled(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


async def endpoint_disabled(rt: Runtime, notice: EndpointDisabled) -> None:
    log.warning("outgoing webhook endpoint %s disabled: %s", notice.endpoint_id, notice.reason)
    for listener in list(_listeners):
        try:
            await listener(rt, notice)
        except Exception:
            log.exception("an endpoint_disabled listener failed")
