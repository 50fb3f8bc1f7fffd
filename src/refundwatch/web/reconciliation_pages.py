"""The reconciliation screens (issue 14 §3): breaks with their summary and CSV export, a break with its
refund and settlement line, resolving a break, one settlement line raw, and an admin's report upload.

Who: viewers read (the refunds list's role), approvers and admins resolve (the approvals' role), admins
upload (administration). Resolving and uploading are plain POST forms that also work through htmx.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Stream, Template
from sqlalchemy import select

from refundwatch.audit import actions
from refundwatch.audit.services import record
from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.dashboard.signals import RECONCILIATION, signals
from refundwatch.db.models import ReconciliationBreak, Refund, SettlementEntry, SettlementFile
from refundwatch.lib.exceptions import NotFound, RefundwatchError
from refundwatch.reconciliation import browse
from refundwatch.reconciliation.breaks import KINDS
from refundwatch.reconciliation.resolving import RESOLUTIONS, get_break, resolve
from refundwatch.reconciliation.uploads import UPLOAD_LIMIT, Uploaded, import_upload
from refundwatch.refunds.people import display_names
from refundwatch.runtime import Runtime
from refundwatch.web.state import runtime_of

NO_STORE = {"Cache-Control": "no-store"}
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
MULTIPART = Body(media_type=RequestEncodingType.MULTI_PART)


def _page(name: str, session: Session, status_code: int = 200, **context: Any) -> Template:
    return Template(
        template_name=name,
        context={"user": session.user, **context},
        status_code=status_code,
        headers=NO_STORE,
    )


def _refused(request: Request[Any, Any, Any], status: int) -> int:
    """A refused form or filter: its status for a plain request; 200 when htmx swaps it in place."""
    return 200 if request.headers.get("hx-request") else status


async def _names(rt: Runtime) -> dict[UUID, str]:
    return {c.id: c.name for c in await rt.connections.all()}


# ---------------------------------------------------------------------------------------- the list


@get("/reconciliation")
async def reconciliation_page(request: Request[Any, Any, Any], session: Session) -> Template:
    return await _list(request, session, browse.parse(request.query_params.multi_items()))


async def _list(
    request: Request[Any, Any, Any],
    session: Session,
    q: browse.BreakQuery,
    *,
    upload: Uploaded | None = None,
    upload_error: str | None = None,
    upload_status: int = 200,
) -> Template:
    rt = runtime_of(request)
    now = dt.datetime.now(dt.UTC)
    await browse.resolve_connection(rt, q)
    found = None if q.errors else await browse.page(rt, q, now)
    summary = None if q.errors else await browse.summarise(rt, q, now)
    names = await _names(rt)
    older = found.next_before if found else None
    status = _refused(request, 422) if q.errors else upload_status
    return _page(
        "pages/reconciliation.html",
        session,
        status_code=status,
        breaks=found.breaks if found else [],
        summary=summary,
        amounts={b.id: browse.unreconciled_of(b) for b in (found.breaks if found else [])},
        names=names,
        connections=sorted(names.values()),
        filters=q.form,
        kinds=KINDS,
        statuses=browse.STATUSES,
        ages=browse.AGE_NAMES,
        link=lambda **change: "/reconciliation?" + browse.parse({**q.form, **change}.items()).query(),
        older_url=f"/reconciliation?{q.query(before=older)}" if older else None,
        newest_url=f"/reconciliation?{q.query()}" if q.before is not None else None,
        export_url=f"/reconciliation/breaks.csv?{q.query()}",
        error="; ".join(q.errors) or None,
        now=now,
        upload=upload,
        upload_error=upload_error,
        upload_limit_mb=UPLOAD_LIMIT // (1024 * 1024),
    )


@get("/reconciliation/breaks.csv")
async def breaks_csv(request: Request[Any, Any, Any], session: Session) -> Response[Any]:
    """The filter as CSV (every page of it). The list's role, audited before the first byte."""
    rt = runtime_of(request)
    q = browse.parse((k, v) for k, v in request.query_params.multi_items() if k != "before")
    await browse.resolve_connection(rt, q)
    if q.errors:
        return await _list(request, session, q)
    async with rt.db.session() as db:
        record(
            db,
            user_actor(session.user, request),
            actions.USER_RECONCILIATION_EXPORT,
            target_type="reconciliation",
            details={"filter": q.summary()},
        )
        await db.commit()
    now = dt.datetime.now(dt.UTC)
    return Stream(
        browse.csv_chunks(rt, q, now),
        media_type="text/csv; charset=utf-8",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{browse.filename(now)}"'},
    )


# ---------------------------------------------------------------------------------------- one break


async def _break_context(rt: Runtime, found: ReconciliationBreak) -> dict[str, Any]:
    async with rt.db.read_session() as db:
        refund = await db.get(Refund, found.refund_id) if found.refund_id else None
        line = await db.get(SettlementEntry, found.line_id) if found.line_id else None
        file = await db.get(SettlementFile, line.file_id) if line else None
        candidates: list[Refund] = []
        if found.status == "open" and line is not None and line.gateway_payment_id and refund is None:
            # Refunds of the payment the line names: what a person most likely links it to (made
            # through the line's connection or another reaching the same account).
            account = await rt.connections.siblings(line.connection_id)
            candidates = list(
                await db.scalars(
                    select(Refund)
                    .where(
                        Refund.connection_id.in_(account),
                        Refund.payment_reference == line.gateway_payment_id,
                    )
                    .order_by(Refund.created_at.desc())
                    .limit(10)
                )
            )
        names = {}
        if found.resolved_by:
            kind = "system" if found.resolved_by.startswith("system:") else "user"
            names = await display_names(db, [(kind, found.resolved_by)])
    connections = await _names(rt)
    return {
        "b": found,
        "amount": browse.unreconciled_of(found),
        "refund": refund,
        "line": line,
        "file": file,
        "candidates": candidates,
        "connection": connections.get(found.connection_id) if found.connection_id else None,
        "resolved_by": names.get(found.resolved_by or "", found.resolved_by),
        "resolutions": RESOLUTIONS,
    }


@get("/reconciliation/breaks/{break_id:uuid}")
async def break_page(request: Request[Any, Any, Any], session: Session, break_id: UUID) -> Template:
    rt = runtime_of(request)
    found = await get_break(rt, break_id)
    return _page("pages/reconciliation_break.html", session, form={}, **await _break_context(rt, found))


@post("/reconciliation/breaks/{break_id:uuid}/resolve", opt={"action": Action.APPROVE}, status_code=303)
async def resolve_break(
    request: Request[Any, Any, Any],
    session: Session,
    break_id: UUID,
    data: Annotated[dict[str, str], FORM],
) -> Response[Any]:
    rt = runtime_of(request)
    form = {k: (v or "").strip() for k, v in data.items() if k != "_csrf_token"}
    try:
        await resolve(
            rt,
            break_id,
            resolution=form.get("resolution", ""),
            reason=form.get("reason", ""),
            refund_id=form.get("refund_id", ""),
            actor=user_actor(session.user, request),
        )
    except NotFound:
        raise
    except RefundwatchError as exc:
        found = await get_break(rt, break_id)
        return _page(
            "pages/reconciliation_break.html",
            session,
            status_code=_refused(request, exc.status_code),
            form=form,
            error=exc.message,
            error_code=exc.code,
            **await _break_context(rt, found),
        )
    signals.notice(RECONCILIATION)
    path = f"/reconciliation/breaks/{break_id}"
    if request.headers.get("hx-request"):
        return Response(None, status_code=204, headers={"HX-Redirect": path})
    return Redirect(path, status_code=303)


# ---------------------------------------------------------------------------------------- one line


@get("/reconciliation/lines/{line_id:int}")
async def line_page(request: Request[Any, Any, Any], session: Session, line_id: int) -> Template:
    rt = runtime_of(request)
    async with rt.db.read_session() as db:
        line = await db.get(SettlementEntry, line_id)
        if line is None:
            raise NotFound(f"no settlement line {line_id}", code="line_not_found")
        file = await db.get(SettlementFile, line.file_id)
        about = list(
            await db.scalars(
                select(ReconciliationBreak)
                .where(ReconciliationBreak.line_id == line_id)
                .order_by(ReconciliationBreak.id)
                .limit(20)
            )
        )
    connections = await _names(rt)
    return _page(
        "pages/settlement_line.html",
        session,
        line=line,
        file=file,
        breaks=about,
        connection=connections.get(line.connection_id, "?"),
    )


# ---------------------------------------------------------------------------------------- upload


@post(
    "/reconciliation/upload",
    opt={"action": Action.ADMINISTER},
    request_max_body_size=UPLOAD_LIMIT + 64 * 1024,  # the file and the form's few fields
)
async def upload_report(
    request: Request[Any, Any, Any],
    session: Session,
    data: Annotated[dict[str, Any], MULTIPART],
) -> Template:
    """A processor's settlement report for a connection: imported, then matched, like the CLI does."""
    rt = runtime_of(request)
    q = browse.parse(())
    file = data.get("file")
    connection = data.get("connection")
    if not isinstance(connection, str) or not connection.strip():
        return await _list(
            request, session, q, upload_error="Choose a connection.", upload_status=_refused(request, 422)
        )
    if not isinstance(file, UploadFile) or not file.filename:
        return await _list(
            request, session, q, upload_error="Choose a file to upload.", upload_status=_refused(request, 422)
        )
    try:
        result = await import_upload(rt, connection.strip(), file, user_actor(session.user, request))
    except RefundwatchError as exc:
        return await _list(
            request, session, q, upload_error=exc.message, upload_status=_refused(request, 422)
        )
    finally:
        await file.close()
    signals.notice(RECONCILIATION)
    return await _list(request, session, q, upload=result)


ROUTES = [reconciliation_page, breaks_csv, break_page, resolve_break, line_page, upload_report]
