"""Server-rendered pages. Until sign-in exists, a plain status page of recent refunds."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from refundwatch.refunds.queries import RefundFilter, list_refunds
from refundwatch.web.state import runtime_of


@get("/", include_in_schema=False)
async def status_page(request: Request[Any, Any, Any]) -> Template:
    rt = runtime_of(request)
    page = await list_refunds(rt, RefundFilter(limit=100))
    names = {c.id: c.name for c in await rt.connections.all()}
    counts: dict[str, int] = {}
    for refund in page.refunds:
        counts[refund.status] = counts.get(refund.status, 0) + 1
    return Template(
        template_name="pages/status.html",
        context={"refunds": page.refunds, "names": names, "counts": sorted(counts.items())},
        headers={"Cache-Control": "no-store"},
    )
