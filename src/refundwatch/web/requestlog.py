"""Request ids, one access-log line per request, and unread request bodies drained.

Every request gets an id: the caller's ``X-Request-ID`` when it is a plain token (so a returns system
can follow its own id through our logs), otherwise a new one. It is answered in ``X-Request-ID`` and
put on every log record written while the request runs (``logs.RequestIdFilter``). The access line has
the method, the path (no query string: it can carry references and return paths), the status and the
time, and never headers, cookies or bodies.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from refundwatch.dashboard.signals import signals
from refundwatch.logs import REQUEST_ID

_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_QUIET = ("/healthz", "/readyz", "/metrics", "/static/")
access_log = logging.getLogger("refundwatch.access")


def _incoming_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _ACCEPTABLE.match(candidate):
                return candidate
    return uuid.uuid4().hex


_DRAIN_LIMIT = 1024 * 1024


async def _drain(receive: Receive, body: dict[str, bool]) -> None:
    """Read what is left of a request body the app answered without reading (a 401 before the body,
    say). Unread, the server closes the keep-alive connection after the answer, and a client that
    already sent its next request on it sees a disconnect instead of a response."""
    read = 0
    while not body["done"] and read <= _DRAIN_LIMIT:
        message = await receive()
        chunk: Any = message.get("body", b"")
        read += len(chunk)


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = _incoming_id(scope)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 0}
        body = {"done": False}

        async def receive_tracked() -> ReceiveMessage:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body["done"] = True
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive_tracked, send_with_id)
            if not body["done"]:
                await _drain(receive_tracked, body)
        finally:
            elapsed = time.perf_counter() - started
            # Litestar sets the route template once routing is done; unmatched paths stay one label.
            route = scope.get("path_template") or "unmatched"
            signals.http_request(scope.get("method", "?"), route, status["code"], elapsed)
            path: str = scope.get("path", "")
            if not path.startswith(_QUIET) or status["code"] >= 500:
                access_log.info(
                    "%s %s %s %.1fms",
                    scope.get("method", "?"),
                    path[:200],
                    status["code"],
                    elapsed * 1000,
                )
            REQUEST_ID.reset(token)

    return middleware
