"""Server-rendered staff pages, all behind the staff guard (sign-in and role; auth.guards).

The dashboard on ``/`` is a plain status page of recent refunds until the live panels land.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get
from litestar.di import Provide
from litestar.response import Template

from refundwatch.auth.guards import staff, staff_guard
from refundwatch.auth.sessions import Session
from refundwatch.refunds import pages as refund_pages
from refundwatch.refunds.queries import RefundFilter, list_refunds
from refundwatch.web import admin_pages
from refundwatch.web.state import runtime_of


@get("/", include_in_schema=False)
async def status_page(request: Request[Any, Any, Any], session: Session) -> Template:
    rt = runtime_of(request)
    page = await list_refunds(rt, RefundFilter(limit=100))
    names = {c.id: c.name for c in await rt.connections.all()}
    counts: dict[str, int] = {}
    for refund in page.refunds:
        counts[refund.status] = counts.get(refund.status, 0) + 1
    return Template(
        template_name="pages/status.html",
        context={
            "refunds": page.refunds,
            "names": names,
            "counts": sorted(counts.items()),
            "user": session.user,
        },
        headers={"Cache-Control": "no-store"},
    )


def pages_router() -> Router:
    """Every staff page: the guard runs before each one (anonymous → sign-in, role checked)."""
    return Router(
        path="/",
        route_handlers=[status_page, *refund_pages.ROUTES, *admin_pages.ROUTES],
        guards=[staff_guard],
        dependencies={"session": Provide(staff)},
        include_in_schema=False,
    )
