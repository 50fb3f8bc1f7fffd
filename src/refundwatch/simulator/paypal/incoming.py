"""The request headers PayPal looks at, and how the simulator answers errors for one request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.types import ASGIApp

from ..asgi import Reply, json_reply
from .tokens import OAuthError
from .wire import PayPalError, debug_id, not_found, server_error

__all__ = ["Incoming", "unknown_path"]


@dataclass(slots=True)
class Incoming:
    authorization: str | None = None
    request_id: str | None = None
    representation: bool = False
    debug: str = ""

    @classmethod
    def from_request(cls, request: Request[Any, Any, Any]) -> Incoming:
        incoming = cls(debug=debug_id())
        for raw_name, value in request.scope["headers"]:
            name = raw_name.lower()
            if name == b"authorization":
                incoming.authorization = value.decode("latin-1")
            elif name == b"paypal-request-id":
                incoming.request_id = value.decode("latin-1") or None
            elif name == b"prefer":
                incoming.representation = b"return=representation" in value.lower()
        return incoming

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"paypal-debug-id", self.debug.encode())]

    def error(self, exc: PayPalError | OAuthError) -> Reply:
        body = exc.body() if isinstance(exc, OAuthError) else exc.body(self.debug)
        return json_reply(exc.status, body, self.headers())

    def answers(self) -> tuple[Callable[[int], ASGIApp], Callable[[], ASGIApp]]:
        return (lambda status: self.error(server_error(status))), (lambda: self.error(server_error(503)))


def unknown_path() -> dict[str, Any]:
    return not_found().body()
