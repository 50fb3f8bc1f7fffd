"""Admin-only pages: gateway connections (with their latest health check); the audit log is in
web.audit_pages."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template
from sqlalchemy import func, select

from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.db.models import ApiKey, HealthCheck
from refundwatch.web.state import runtime_of

ADMIN = {"action": Action.ADMINISTER}
NO_STORE = {"Cache-Control": "no-store"}


@get("/gateways", opt=ADMIN)
async def gateways_page(request: Request[Any, Any, Any], session: Session) -> Template:
    rt = runtime_of(request)
    connections = await rt.connections.all()
    async with rt.db.read_session() as db:
        latest = (
            select(HealthCheck.connection_id, func.max(HealthCheck.id).label("id"))
            .group_by(HealthCheck.connection_id)
            .subquery()
        )
        checks = {
            c.connection_id: c
            for c in await db.scalars(select(HealthCheck).join(latest, HealthCheck.id == latest.c.id))
        }
        keys = list(await db.scalars(select(ApiKey).order_by(ApiKey.created_at.desc()).limit(100)))
    return Template(
        template_name="pages/gateways.html",
        context={"user": session.user, "connections": connections, "checks": checks, "keys": keys},
        headers=NO_STORE,
    )


ROUTES = [gateways_page]
