"""Bearer authentication for the API: API keys (``rw_…``) and OIDC client-credentials access tokens.

Authentication runs as a guard, before Litestar parses the body, so an anonymous or unauthorised
caller gets 401/403 whatever it sent.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from refundwatch.audit.actions import Actor
from refundwatch.auth.apikeys import PREFIX, SCOPES, Principal
from refundwatch.auth.oidc import OidcProvider, SignInError, TokenInvalid
from refundwatch.lib.exceptions import AuthenticationFailed, PermissionDenied, RefundwatchError
from refundwatch.web.state import authenticator


class BearerRequired(AuthenticationFailed):
    """401 for the API: says which scheme to use (RFC 6750)."""

    headers = {"WWW-Authenticate": 'Bearer realm="refundwatch"'}


class MissingIdempotencyKey(RefundwatchError):
    status_code = 400
    code = "idempotency_key_missing"


async def require_scopes(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: authenticate the bearer token and check the scopes the route declares in ``opt``."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerRequired("send Authorization: Bearer <API key or access token>", code="unauthenticated")
    found = await _authenticate(connection, token.strip())
    if found is None:
        raise BearerRequired("the token is invalid, expired or revoked", code="invalid_token")
    missing = set(handler.opt.get("scopes", ())) - found.scopes
    if missing:
        raise PermissionDenied(
            f"this call needs scope {', '.join(sorted(missing))}", code="insufficient_scope"
        )
    connection.state.principal = found


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Principal | None:
    if token.startswith(PREFIX):
        return await authenticator(connection.app).authenticate(token)
    oidc: OidcProvider | None = connection.app.state.get("oidc")
    if oidc is None or not oidc.configured or token.count(".") != 2:
        return None
    try:
        claims = await oidc.verify_access_token(token)
    except (TokenInvalid, SignInError):
        return None  # which check failed is not the caller's business; it is 401 either way
    client = str(claims.get("client_id") or claims["sub"])[:128]
    scopes = frozenset(str(claims.get("scope", "")).split()) & frozenset(SCOPES)
    return Principal("client", client, client, scopes)


async def require_idempotency_key(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    key = connection.headers.get("idempotency-key", "")
    if not key.strip():
        raise MissingIdempotencyKey("send an Idempotency-Key header (at most 255 characters)")
    if len(key) > 255:
        raise MissingIdempotencyKey(
            "Idempotency-Key must be at most 255 characters", code="idempotency_key_invalid"
        )


async def principal(request: Request[Any, Any, Any]) -> Principal:
    """Dependency: the caller the guard authenticated."""
    found: Principal = request.state.principal
    return found


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


def api_actor(request: Request[Any, Any, Any], who: Principal) -> Actor:
    """Who the audit log records for an API call: the caller, from its address and user agent."""
    return who.actor(client_ip(request), request.headers.get("user-agent"))
