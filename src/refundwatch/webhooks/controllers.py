"""POST /webhooks/{connection}: verify, store raw, commit, enqueue, answer fast."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from refundwatch.web.auth import client_ip
from refundwatch.web.state import runtime_of
from refundwatch.webhooks.services import receive

MAX_BODY = 1024 * 1024  # processors send small JSON; anything larger is not a webhook


@post("/webhooks/{connection:str}", status_code=200, request_max_body_size=MAX_BODY, tags=["webhooks"])
async def webhook(request: Request[Any, Any, Any], connection: str) -> Response[dict[str, Any]]:
    body = await request.body()
    receipt = await receive(
        runtime_of(request),
        connection,
        request.headers,
        body,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return Response({"received": True, "stored": receipt.stored, "duplicates": receipt.duplicates})
