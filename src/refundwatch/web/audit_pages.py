"""The audit log screen and its exports (admins only, as the rest of administration).

``/audit`` filters by actor, action, target and time, searches, and pages by keyset; the same filter
exports every matching entry as CSV or JSON Lines (times in UTC). The chain's state (verified up to
which entry, the last anchor) comes from audit.checkpoint.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.response import Stream, Template

from refundwatch.audit import actions, browse
from refundwatch.audit.checkpoint import chain_state
from refundwatch.audit.services import record
from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.refunds.people import display_names
from refundwatch.web.state import runtime_of

ADMIN = {"action": Action.ADMINISTER}
NO_STORE = {"Cache-Control": "no-store"}
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


@get("/audit", opt=ADMIN)
async def audit_page(request: Request[Any, Any, Any], session: Session) -> Template:
    rt = runtime_of(request)
    f = await browse.named(rt.db, browse.parse(request.query_params.multi_items()))
    found = None if f.errors else await browse.page(rt.db, f)
    return await _render(request, session, f, found)


async def _render(
    request: Request[Any, Any, Any], session: Session, f: browse.AuditFilter, found: browse.Page | None
) -> Template:
    rt = runtime_of(request)
    chain = await chain_state(rt.db, rt.redis, Path(rt.settings.audit_anchor))
    entries = found.entries if found else []
    older = found.next_before if found else None
    async with rt.db.read_session() as db:  # people by name; the actor id stays on hover and in links
        names = await display_names(db, ((e.actor_type, e.actor_id) for e in entries))
    status = 422 if f.errors and not request.headers.get("hx-request") else 200
    return Template(
        template_name="pages/audit.html",
        context={
            "user": session.user,
            "entries": entries,
            "names": names,
            "details": {e.id: browse.details_of(e.details) for e in entries},
            "filters": f.form,
            "actor_types": browse.ACTOR_TYPES,
            "actions": _known_actions(),
            "older_url": f"/audit?{f.query(before=older)}" if older else None,
            "newest_url": f"/audit?{f.query()}" if f.before is not None else None,
            "csv_url": f"/audit/export.csv?{f.query()}",
            "jsonl_url": f"/audit/export.jsonl?{f.query()}",
            "link": lambda **change: "/audit?" + _with(f, **change),
            "chain": chain,
            "error": "; ".join(f.errors) or None,
        },
        status_code=status,
        headers=NO_STORE,
    )


def _with(f: browse.AuditFilter, **change: str) -> str:
    """This filter with one field set (the links in each row narrow the list to that value)."""
    form = {**f.form, **change}
    return browse.AuditFilter(form=form).query()


def _known_actions() -> list[str]:
    """The action names refundwatch records (audit.actions), for the filter's suggestions."""
    names = {v for k, v in vars(actions).items() if k.isupper() and isinstance(v, str)}
    sources = ("api", "user", "worker", "processor", "system")
    names |= {actions.REFUND_TRANSITION.format(source=s) for s in sources}
    names |= {f"{s}:refund:create" for s in sources}
    names |= {"user:access:denied", "user:auth:role_changed", "user:auth:session_ended"}
    return sorted(n for n in names if "{" not in n)


@get("/audit/export.csv", opt=ADMIN)
async def audit_csv(request: Request[Any, Any, Any], session: Session) -> Response[Any]:
    return await _export(request, session, "csv")


@get("/audit/export.jsonl", opt=ADMIN)
async def audit_jsonl(request: Request[Any, Any, Any], session: Session) -> Response[Any]:
    return await _export(request, session, "jsonl")


async def _export(request: Request[Any, Any, Any], session: Session, kind: str) -> Response[Any]:
    """Every entry of the filter (no cursor), streamed in keyset batches. Audited, and committed
    before the first byte, so an export that starts is on record even if it is cut short."""
    rt = runtime_of(request)
    f = await browse.named(
        rt.db, browse.parse((k, v) for k, v in request.query_params.multi_items() if k != "before")
    )
    if f.errors:
        return await _render(request, session, f, None)
    async with rt.db.session() as db:
        record(
            db,
            user_actor(session.user, request),
            actions.USER_AUDIT_EXPORT,
            target_type="audit",
            details={"format": kind, "filter": f.summary()},
        )
        await db.commit()
    terms = browse.conditions(f)
    chunks = browse.csv_chunks(rt.db, terms) if kind == "csv" else browse.jsonl_chunks(rt.db, terms)
    name = browse.filename(kind, dt.datetime.now(dt.UTC))
    return Stream(
        chunks,
        media_type=_MEDIA[kind],
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


ROUTES = [audit_page, audit_csv, audit_jsonl]
