"""POST /webhooks/{connection}: verify, store raw, commit, enqueue, answer fast."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, post

from refundwatch.web.auth import client_ip
from refundwatch.web.state import runtime_of
from refundwatch.webhooks import rejections
from refundwatch.webhooks.services import receive

MAX_BODY = 1024 * 1024  # processors send small JSON; anything larger is not a webhook


@post("/webhooks/{connection:str}", status_code=200, request_max_body_size=MAX_BODY, tags=["webhooks"])
async def webhook(request: Request[Any, Any, Any], connection: str) -> Response[Any]:
    rt, ip = runtime_of(request), client_ip(request)
    try:
        # A sender over its rejections is refused before its body is read or a signature checked.
        await rejections.check(rt, connection, ip)
        body = await request.body()
        receipt = await receive(
            rt, connection, request.headers, body, ip=ip, user_agent=request.headers.get("user-agent")
        )
    except rejections.RateLimited as refused:
        message = f"too many rejected webhook deliveries from this address; retry in {refused.retry_after} s"
        return Response(
            {"code": "rate_limited", "message": message, "retry_after": refused.retry_after},
            status_code=429,
            headers={"Retry-After": str(refused.retry_after)},
        )
    if receipt.ack is not None:  # the processor's own acknowledgement, so it does not resend
        return Response(receipt.ack, media_type=MediaType.TEXT)
    return Response({"received": True, "stored": receipt.stored, "duplicates": receipt.duplicates})
