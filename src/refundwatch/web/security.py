"""Security headers on every response, and the middleware list the app installs (issue 3 §5).

The pages hold refund and payment data and run htmx from ``/static`` only, so the policy is strict:
no inline script or style, no third-party origin, no framing, nothing cached. Handlers that set a
header themselves (an SSE stream's ``Cache-Control``, say) keep their value.

Litestar runs app-level middleware only for requests that match a route: the router's own 404 and
405 for unknown paths and methods never reach it. ``security_before_send`` adds the same headers to
those too, when the app lists it in ``before_send``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litestar._asgi.utils import wrap_in_exception_handler
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from refundwatch.config import Settings
from refundwatch.web.ratelimit import RateLimitMiddleware

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

__all__ = [
    "SecurityHeadersMiddleware",
    "content_security_policy",
    "security_before_send",
    "security_headers",
    "security_middleware",
]

HSTS = "max-age=31536000; includeSubDomains"
# Features no page here uses; a script injected despite the CSP still cannot ask for them.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()"
NO_STORE = (b"cache-control", b"no-store")
# Static assets keep whatever caching the static files router gives them; everything else can carry data.
CACHEABLE_PREFIX = "/static/"


def _origin(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """Same-origin everything. ``form-action`` also names the OpenID provider: signing out posts to
    ``/auth/logout``, which redirects to the provider's end-session page, and Chromium checks
    ``form-action`` against every redirect that follows a form submission."""
    form_action = "'self'"
    if settings.oidc_issuer and (issuer := _origin(settings.oidc_issuer)):
        form_action += f" {issuer}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
        )
    )


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (names lower-case, encoded once at start-up)."""
    headers = {
        "content-security-policy": content_security_policy(settings),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # No URL of ours (refund ids, payment references in filters) leaves the site, not even the origin.
        "referrer-policy": "same-origin",
        "permissions-policy": PERMISSIONS_POLICY,
        "cross-origin-opener-policy": "same-origin",
        # No other site may load our responses as script, image or JSON (Spectre-style reads).
        "cross-origin-resource-policy": "same-origin",
    }
    if settings.is_https:
        headers["strict-transport-security"] = HSTS
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def _add_headers(message: HTTPResponseStartEvent, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    raw = list(message.get("headers") or ())
    present = {name.lower() for name, _ in raw}
    raw.extend(header for header in headers if header[0] not in present)
    if NO_STORE[0] not in present and not path.startswith(CACHEABLE_PREFIX):
        raw.append(NO_STORE)
    message["headers"] = raw


class SecurityHeadersMiddleware(ASGIMiddleware):
    """Adds the security headers (and ``Cache-Control: no-store``) to every HTTP response."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: Settings) -> None:
        self.headers = security_headers(settings)

    def __call__(self, app: ASGIApp) -> ASGIApp:
        # Middleware inside this one (CSRF, the rate limiter) may raise; Litestar would turn that into a
        # response outside this middleware, without the headers. Render it here instead.
        return super().__call__(wrap_in_exception_handler(app))

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path: str = scope["path"]
        headers = self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message, path, headers)
            await send(message)

        await next_app(scope, receive, send_with_headers)


def security_before_send(settings: Settings) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook adding the same headers to responses no route handled (router 404/405).
    Headers already present are left alone, so it can run alongside the middleware."""
    headers = security_headers(settings)

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start" and scope["type"] == ScopeType.HTTP:
            _add_headers(message, scope["path"], headers)

    return hook


def security_middleware(settings: Settings) -> list[Any]:
    """What ``Litestar(middleware=...)`` installs, outermost first: the headers wrap the rate limiter so
    its 429s carry them too."""
    return [SecurityHeadersMiddleware(settings), RateLimitMiddleware.from_settings(settings)]
