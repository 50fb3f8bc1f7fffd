"""PayPal's part of the control API, under ``/_control/paypal`` (no authentication, loopback tool).

- ``GET /tokens`` → ``{"issued": n, "active": m}``: tokens issued since start (not cleared by
  ``/_control/reset``), and those still live.
- ``POST /tokens/expire`` → ``{"expired": n}``: every token ends now (the next call with one: 401).
- ``GET /ca.pem``: the test CA that issued the webhook signing certificate (PEM), for a trust store.
- ``POST /captures/{capture_id}/issue`` ``{"issue": "TRANSACTION_DISPUTED"}`` → 200: refunds of that
  capture answer 422 with that issue of ``captures.refund-422`` until ``{"issue": null}`` (or reset).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post

from ..asgi import decode_json
from .handlers import PayPalSimulator
from .wire import ISSUES

__all__ = ["build_paypal_control_router"]


def build_paypal_control_router(sim: PayPalSimulator) -> Router:
    @get("/tokens")
    async def tokens() -> dict[str, int]:
        return {"issued": sim.tokens.issued, "active": sim.tokens.active()}

    @post("/tokens/expire", status_code=200)
    async def expire() -> dict[str, int]:
        return {"expired": sim.tokens.expire_all()}

    @get("/ca.pem", media_type="application/x-pem-file")
    async def ca() -> bytes:
        return sim.certificates.ca_pem

    @post("/captures/{capture_id:str}/issue", status_code=200)
    async def issue(request: Request[Any, Any, Any], capture_id: str) -> Response[Any]:
        try:
            data = decode_json(await request.body() or b"{}")
        except msgspec.DecodeError:
            return Response({"error": "body is not valid JSON", "code": "invalid_body"}, status_code=400)
        if not isinstance(data, dict) or set(data) != {"issue"}:
            return Response(
                {"error": 'body must be {"issue": <issue or null>}', "code": "invalid_body"}, status_code=400
            )
        value = data["issue"]
        if value is None:
            sim.issues.pop(capture_id, None)
        elif isinstance(value, str) and value in ISSUES:
            sim.issues[capture_id] = value
        else:
            message = f"issue must be one of captures.refund-422's: {', '.join(ISSUES)}"
            return Response({"error": message, "code": "invalid_issue"}, status_code=400)
        return Response({"capture_id": capture_id, "issue": value})

    return Router(path="/_control/paypal", route_handlers=[tokens, expire, ca, issue])
