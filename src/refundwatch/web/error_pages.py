"""Error pages for people: a browser that asks for HTML gets 403, 404, 413 and 500 as pages in the house
layout. The API, webhooks, health, metrics and the schema keep their JSON errors (CONTRACT §4, §5),
whatever the caller's Accept header says.

A signed-in person keeps the header and menu on these pages. Litestar's exception handlers are
synchronous and run where no guard may have loaded the session (an unknown path never reaches a route,
its guard or the CSRF middleware), so ``load_viewer``, an ``after_exception`` hook (asynchronous, run
just before the handler on the same scope), reads it first: from the session store by the cookie,
without the provider round trip of a role re-read (``auth/rolecheck.py``, which every real page
still does), and with the CSRF cookie as the page's token so the header's sign-out form works.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.response import Template
from litestar.types import Empty, Scope
from litestar.utils.scope.state import ScopeState

from refundwatch.auth.sessions import COOKIE, Session, SessionStore

log = logging.getLogger("refundwatch.web")
CSRF_COOKIE = "rw_csrf"  # app.py's CSRFConfig
_LOAD_SECONDS = 1.0  # a 500 may come from a Redis that does not answer: the page must not wait on it

# Paths whose callers are programs: their errors stay JSON.
_MACHINE_PATHS = ("/api/", "/webhooks/", "/healthz", "/readyz", "/metrics", "/schema", "/static/")
PAGES = {
    403: ("Not allowed", "You may not open this page or do this."),
    404: ("Not found", "There is nothing at this address. It may have been mistyped, or the link is old."),
    413: (
        "Too large",
        "What was sent is larger than this page accepts. A large settlement report can be imported with "
        "refundwatch reconcile import.",
    ),
    500: ("Something went wrong", "refundwatch could not show this page. The error has been logged."),
    503: (
        "Unavailable for a moment",
        "A service refundwatch needs does not answer, so this was not done. Try again in a minute.",
    ),
}


def wants_page(request: Request[Any, Any, Any], status: int) -> bool:
    """An error page when the status has one, a browser asked for HTML, and the path is not a machine's."""
    return status in PAGES and _asks_for_pages(request)


def _asks_for_pages(request: Request[Any, Any, Any]) -> bool:
    path = request.scope.get("path", "")
    if path.startswith(_MACHINE_PATHS):
        return False
    return "text/html" in request.headers.get("accept", "")


async def load_viewer(exc: Exception, scope: Scope) -> None:
    """``after_exception`` hook: the signed-in person (and a CSRF token) for an error page's header."""
    if scope["type"] != ScopeType.HTTP:
        return
    request: Request[Any, Any, Any] = scope["litestar_app"].request_class(scope=scope)
    if not _asks_for_pages(request):
        return
    state = ScopeState.from_scope(scope)
    if state.csrf_token is Empty and (token := request.cookies.get(CSRF_COOKIE)):
        state.csrf_token = token  # what the CSRF middleware renders on any GET: the cookie's own token
    if request.state.get("session") is not None or not request.cookies.get(COOKIE):
        return
    store: SessionStore = request.app.state.sessions
    try:
        session = await asyncio.wait_for(store.get(request.cookies.get(COOKIE)), _LOAD_SECONDS)
    except Exception as error:  # noqa: BLE001 - no header rather than no page
        log.warning("error page without its header: the session could not be read (%s)", type(error).__name__)
        return
    if session is not None:
        request.state.session = session


def error_page(request: Request[Any, Any, Any], status: int, message: str | None = None) -> Template:
    title, default = PAGES[status]
    session: Session | None = request.state.get("session")  # set by the staff guard, or load_viewer
    return Template(
        template_name="pages/error.html",
        context={
            "status": status,
            "title": title,
            "message": message or default,
            "user": session.user if session else None,
        },
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )
