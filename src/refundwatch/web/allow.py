"""A true ``Allow`` header on OPTIONS. Litestar builds a path's automatic OPTIONS handler with its
first route object; when a second handler on the same path (GET /api/v1/refunds beside POST) makes
it build the route again, that handler keeps answering the first route's methods
(``Allow: OPTIONS, POST``). This hook writes the path's real methods, from the app's own map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.types import Message, Scope


async def allow_before_send(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    handler: Any = scope.get("route_handler")
    if handler is None or getattr(handler, "handler_name", "") != "options_handler":
        return  # not Litestar's automatic answer
    method_map = scope["app"].route_handler_method_map
    methods = {method for path in handler.paths for method in method_map.get(path, {})}
    if not methods:
        return
    allow = ", ".join(sorted(methods)).encode()
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    message["headers"] = [*headers, (b"allow", allow)]  # type: ignore[typeddict-item]
