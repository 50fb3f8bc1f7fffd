"""HTTP API for reconciliation breaks (CONTRACT §4)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import Provide
from litestar.params import Parameter

from refundwatch.auth.apikeys import Principal
from refundwatch.reconciliation.breaks import BreakFilter, BreakList, list_breaks
from refundwatch.refunds.queries import MAX_PAGE
from refundwatch.web.auth import principal, require_scopes
from refundwatch.web.state import runtime_of

READ = {"scopes": ["refunds:read"]}


class ReconciliationController(Controller):
    path = "/api/v1/reconciliation"
    dependencies = {"who": Provide(principal)}
    guards = [require_scopes]
    tags = ["reconciliation"]

    @get("/breaks", opt=READ)
    async def breaks(
        self,
        request: Request[Any, Any, Any],
        who: Principal,
        kind: str | None = None,
        connection: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> BreakList:
        """Breaks newest first, in the refunds list's envelope; amounts in minor units."""
        return await list_breaks(runtime_of(request), BreakFilter(kind, connection, status, cursor, limit))
