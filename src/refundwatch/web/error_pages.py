"""Error pages for people: a browser that asks for HTML gets 403, 404 and 500 as pages in the house
layout. The API, webhooks, health, metrics and the schema keep their JSON errors (CONTRACT §4, §5),
whatever the caller's Accept header says."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.response import Template

if TYPE_CHECKING:
    from refundwatch.auth.sessions import Session

# Paths whose callers are programs: their errors stay JSON.
_MACHINE_PATHS = ("/api/", "/webhooks/", "/healthz", "/readyz", "/metrics", "/schema", "/static/")
PAGES = {
    403: ("Not allowed", "You may not open this page or do this."),
    404: ("Not found", "There is nothing at this address. It may have been mistyped, or the link is old."),
    500: ("Something went wrong", "refundwatch could not show this page. The error has been logged."),
}


def wants_page(request: Request[Any, Any, Any], status: int) -> bool:
    """An error page when the status has one, a browser asked for HTML, and the path is not a machine's."""
    if status not in PAGES:
        return False
    path = request.scope.get("path", "")
    if path.startswith(_MACHINE_PATHS):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request[Any, Any, Any], status: int, message: str | None = None) -> Template:
    title, default = PAGES[status]
    session: Session | None = request.state.get("session")  # set when the staff guard ran
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
