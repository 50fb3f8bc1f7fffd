"""The alert history for admins (``/admin/alerts``): every alert, newest first, with each message's
delivery; and resolving by hand the alerts no rule can see the end of (a suspected double refund)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template
from sqlalchemy import select

from refundwatch.alerts import store
from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.dashboard.signals import ALERTS as ALERTS_CHANGED
from refundwatch.dashboard.signals import signals
from refundwatch.db.tables import ALERT_DELIVERIES, ALERTS
from refundwatch.lib.exceptions import InvalidTransition, NotFound, ValidationFailed
from refundwatch.lib.identifiers import whole_number
from refundwatch.web.state import runtime_of

ADMIN = {"action": Action.ADMINISTER}
NO_STORE = {"Cache-Control": "no-store"}
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
PAGE = 50
STATES = ("pending", "open", "resolved")


@get("/admin/alerts", opt=ADMIN)
async def alerts_page(request: Request[Any, Any, Any], session: Session) -> Template:
    rt = runtime_of(request)
    state = request.query_params.get("state") or None
    before = request.query_params.get("before") or None
    if state is not None and state not in STATES:
        raise ValidationFailed("state must be pending, open or resolved", code="invalid_state")
    if before is not None and whole_number(before, 10**18 - 1) is None:  # fits the id column
        raise ValidationFailed("before must be an alert number", code="invalid_cursor")
    query = select(ALERTS).order_by(ALERTS.c.id.desc()).limit(PAGE + 1)
    if state is not None:
        query = query.where(ALERTS.c.state == state)
    if before is not None:
        query = query.where(ALERTS.c.id < int(before))
    async with rt.db.read_engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        shown = rows[:PAGE]
        deliveries = (
            await conn.execute(
                select(ALERT_DELIVERIES)
                .where(ALERT_DELIVERIES.c.alert_id.in_([r.id for r in shown]))
                .order_by(ALERT_DELIVERIES.c.id)
            )
        ).all()
    messages: dict[int, list[Any]] = {}
    for delivery in deliveries:
        messages.setdefault(delivery.alert_id, []).append(delivery)
    return Template(
        template_name="pages/alerts.html",
        context={
            "user": session.user,
            "alerts": shown,
            "messages": messages,
            "state": state,
            "states": STATES,
            "manual": store.MANUAL_KINDS,
            "next_before": shown[-1].id if len(rows) > PAGE else None,
            "targets": len(rt.settings.alert_url_list),
        },
        headers=NO_STORE,
    )


@post("/admin/alerts/{alert_id:int}/resolve", opt=ADMIN, status_code=303)
async def resolve_by_hand(
    request: Request[Any, Any, Any], session: Session, alert_id: int, data: Annotated[dict[str, str], FORM]
) -> Redirect:
    """Only for kinds no rule resolves; a rule's alert resolves when its condition clears."""
    rt = runtime_of(request)
    reason = (data.get("reason") or "").strip()
    if not reason or len(reason) > 500:
        raise ValidationFailed("give a reason (at most 500 characters)", code="reason_required")
    async with rt.db.session() as db:
        kind = await db.scalar(select(ALERTS.c.kind).where(ALERTS.c.id == alert_id))
        if kind is None:
            raise NotFound(f"no alert {alert_id}", code="alert_not_found")
        if kind not in store.MANUAL_KINDS:
            raise InvalidTransition("this alert resolves when its condition clears", code="resolved_by_rule")
        actor = user_actor(session.user, request)
        done = await store.resolve_in(
            db,
            alert_id,
            f"by {actor.id}: {reason}",
            now=dt.datetime.now(dt.UTC),
            settings=rt.settings,
            actor=actor,
        )
        if not done:
            raise InvalidTransition("the alert is not open", code="alert_not_open")
        await db.commit()
    signals.notice(ALERTS_CHANGED)
    return Redirect("/admin/alerts", status_code=303)


ROUTES = [alerts_page, resolve_by_hand]
