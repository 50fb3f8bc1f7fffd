"""Staff refund screens: list, detail with timeline, new refund, approvals, and the actions on a refund.

Handlers stay thin: the same services as the API (intake, commands), the same validation and errors.
Every form is a plain POST that also works through htmx (``hx-boost``): with htmx, a refused form comes
back re-rendered in place with the error next to it; without, it comes back as a 422 page.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Annotated, Any, get_args
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Stream, Template
from sqlalchemy import or_, select

from refundwatch.audit import actions
from refundwatch.audit.services import record
from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action, Role, parse_role_limits
from refundwatch.auth.sessions import Session
from refundwatch.dashboard import timeline
from refundwatch.db.models import Payment, Refund
from refundwatch.lib.exceptions import RefundwatchError, ValidationFailed
from refundwatch.lib.money import AmountError, example_amount, format_money, one_per_exponent, parse_amount
from refundwatch.refunds import export, services
from refundwatch.refunds.approvals import SORTS, waiting_queue
from refundwatch.refunds.closing import close_unexecuted
from refundwatch.refunds.intake import create_refund
from refundwatch.refunds.listing import REASONS, STATUSES, Listing, parse_listing
from refundwatch.refunds.queries import SORTS as LIST_SORTS
from refundwatch.refunds.queries import Page, filter_conditions, list_refunds, totals
from refundwatch.refunds.schemas import MAX_AMOUNT, Reason, RefundCreate, field_error
from refundwatch.refunds.states import Source, Trigger, allowed_commands
from refundwatch.runtime import Runtime
from refundwatch.web.state import runtime_of
from refundwatch.web.webhook_pages import refund_deliveries

NO_STORE = {"Cache-Control": "no-store"}
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)


def _page(name: str, session: Session, status_code: int = 200, **context: Any) -> Template:
    return Template(
        template_name=name,
        context={"user": session.user, **context},
        status_code=status_code,
        headers=NO_STORE,
    )


async def _names(rt: Runtime) -> dict[UUID, str]:
    return {c.id: c.name for c in await rt.connections.all()}


@get("/refunds")
async def refunds_page(request: Request[Any, Any, Any], session: Session) -> Template:
    """The refunds list: every filter in the query string (refunds.listing), newest first, keyset pages."""
    rt = runtime_of(request)
    listing = parse_listing(request.query_params.multi_items())
    page = None
    if not listing.errors:
        try:
            page = await list_refunds(rt, listing.filter)
        except RefundwatchError as exc:  # an unknown connection or a bad cursor
            listing.errors.append(exc.message)
    return _page(
        "pages/refunds.html",
        session,
        # Like the forms: a refused filter is a 422 page, swapped in place (200) under htmx.
        status_code=422 if listing.errors and not request.headers.get("hx-request") else 200,
        **await _list_context(rt, listing, page),
    )


async def _list_context(rt: Runtime, listing: Listing, page: Page | None) -> dict[str, Any]:
    """Everything the list template needs; links are built here so they carry every active filter."""
    next_cursor = page.next_cursor if page else None
    names = await _names(rt)
    sort = listing.filter.sort
    return {
        "totals": await totals(rt, listing.filter) if page else [],
        "sort": sort,
        "sort_urls": {s: f"/refunds?{listing.sorted_by(s)}" for s in LIST_SORTS},
        "refunds": page.refunds if page else [],
        "names": names,
        "filters": listing.form,
        "chosen_statuses": listing.statuses,
        "statuses": STATUSES,
        "reasons": REASONS,
        "connections": sorted(names.values()),
        "older_url": f"/refunds?{listing.query(cursor=next_cursor)}" if next_cursor else None,
        "newest_url": f"/refunds?{listing.query()}" if listing.cursor else None,
        "export_url": f"/refunds.csv?{listing.query()}" if page else None,
        "error": "; ".join(listing.errors) or None,
    }


@get("/refunds.csv", opt={"action": Action.VIEW})
async def refunds_csv(request: Request[Any, Any, Any], session: Session) -> Response[Any]:
    """The current filter as CSV (every page of it, no cursor). Same role as the list: it shows nothing
    the list does not, and it is audited."""
    rt = runtime_of(request)
    listing = parse_listing(request.query_params.multi_items())
    terms = None
    if not listing.errors:
        try:  # checked before the stream starts: a bad filter is a page, not a broken download
            terms = await filter_conditions(rt, listing.filter)
        except RefundwatchError as exc:
            listing.errors.append(exc.message)
    if terms is None:
        return _page("pages/refunds.html", session, status_code=422, **await _list_context(rt, listing, None))
    await _audit_export(request, session, listing)
    return Stream(
        export.csv_chunks(rt, terms),
        media_type="text/csv; charset=utf-8",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{export.filename(dt.datetime.now(dt.UTC))}"',
        },
    )


async def _audit_export(request: Request[Any, Any, Any], session: Session, listing: Listing) -> None:
    """Committed before the first byte: an export that starts is on record even if it is cut short."""
    rt = runtime_of(request)
    async with rt.db.session() as db:
        record(
            db,
            user_actor(session.user, request),
            actions.USER_REFUNDS_EXPORT,
            target_type="refunds",
            details={"filter": listing.summary()},
        )
        await db.commit()


@get("/refunds/{refund_id:uuid}")
async def refund_page(request: Request[Any, Any, Any], session: Session, refund_id: UUID) -> Template:
    rt = runtime_of(request)
    found = await timeline.story(rt, refund_id)
    return _page(
        "pages/refund.html",
        session,
        story=found,
        connection=found.connection,
        **await _actions_context(rt, session, found.refund),
        **await refund_deliveries(rt, refund_id),
    )


@get("/refunds/{refund_id:uuid}/actions", include_in_schema=False)
async def refund_actions(request: Request[Any, Any, Any], session: Session, refund_id: UUID) -> Template:
    """The refund page's actions alone, re-read on every live update of its timeline: they follow the
    status (no Cancel once it succeeded) and this person's role, so they cannot be one shared fragment."""
    rt = runtime_of(request)
    refund, _ = await services.get_refund(rt, refund_id)
    return _page("partials/refunds/_actions.html", session, **await _actions_context(rt, session, refund))


async def _actions_context(
    rt: Runtime, session: Session, refund: Refund, *, error: bool = False
) -> dict[str, Any]:
    """What the status and the role allow; after a refused command (``error``) nothing is offered."""
    commands = [t.value for t in allowed_commands(refund.status) if session.user.can(_ACTION_FOR[t])]
    own = refund.created_by == session.user.key
    if own:  # four eyes: never offer approval of one's own refund
        commands = [c for c in commands if c not in ("approve", "reject")]
    async with rt.db.read_session() as db:
        payment = await db.get(Payment, refund.payment_id)
    refundable = payment.amount - payment.reserved_amount if payment else 0
    can_create = session.user.can(Action.CREATE) and payment is not None and refundable > 0
    return {
        "refund": refund,
        "commands": [] if error else commands,
        "own": own,
        "refundable": refundable,
        "payment_done": payment is not None and refundable <= 0,
        "new_refund_url": f"/refunds/new?{urlencode({'q': refund.payment_reference})}"
        if can_create
        else None,
    }


_ACTION_FOR = {
    Trigger.CANCEL: Action.CANCEL,
    Trigger.RETRY: Action.RETRY,
    Trigger.APPROVE: Action.APPROVE,
    Trigger.REJECT: Action.APPROVE,
    Trigger.CLOSE: Action.APPROVE,  # releases money whose fate was unknown: an approver's call
}


async def _command(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, trigger: Trigger, reason: str | None
) -> Response[Any]:
    rt = runtime_of(request)
    try:
        _refuse_nul({"reason": reason or ""})
        if trigger is Trigger.CLOSE:
            await close_unexecuted(
                rt, refund_id, actor=user_actor(session.user, request), by=session.user.key, reason=reason
            )
        else:
            await services.command(
                rt,
                refund_id,
                trigger,
                actor=user_actor(session.user, request),
                source=Source.USER,
                reason=reason,
                by=session.user.key,
            )
    except RefundwatchError as exc:
        found = await timeline.story(rt, refund_id)
        return _page(
            "pages/refund.html",
            session,
            status_code=200 if request.headers.get("hx-request") else exc.status_code,
            story=found,
            connection=found.connection,
            error=exc.message,
            **await _actions_context(rt, session, found.refund, error=True),
            **await refund_deliveries(rt, refund_id),
        )
    return _go_to(request, f"/refunds/{refund_id}")


@post("/refunds/{refund_id:uuid}/cancel", opt={"action": Action.CANCEL}, status_code=303)
async def cancel_refund(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _command(request, session, refund_id, Trigger.CANCEL, data.get("reason"))


@post("/refunds/{refund_id:uuid}/retry", opt={"action": Action.RETRY}, status_code=303)
async def retry_refund(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _command(request, session, refund_id, Trigger.RETRY, data.get("reason"))


@post("/refunds/{refund_id:uuid}/close", opt={"action": Action.APPROVE}, status_code=303)
async def close_refund(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    """Manual review only: closed as not executed once the processor confirms it has no such refund."""
    return await _command(request, session, refund_id, Trigger.CLOSE, data.get("reason"))


@post("/refunds/{refund_id:uuid}/approve", opt={"action": Action.APPROVE}, status_code=303)
async def approve_refund(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _command(request, session, refund_id, Trigger.APPROVE, data.get("reason"))


@post("/refunds/{refund_id:uuid}/reject", opt={"action": Action.APPROVE}, status_code=303)
async def reject_refund(
    request: Request[Any, Any, Any], session: Session, refund_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _command(request, session, refund_id, Trigger.REJECT, data.get("reason"))


@get("/approvals", opt={"action": Action.APPROVE})
async def approvals_page(
    request: Request[Any, Any, Any],
    session: Session,
    sort: str = "oldest",
    currency: str = "",
    connection: str = "",
) -> Template:
    rt = runtime_of(request)
    names = await _names(rt)
    queue = await waiting_queue(
        rt, sort=sort, currency=currency.strip().upper(), connection=connection.strip()
    )
    return _page(
        "pages/approvals.html",
        session,
        queue=queue,
        sorts=SORTS,
        names=names,
        connections=sorted(names.values()),
        me=session.user.key,
        now=dt.datetime.now(dt.UTC),
    )


async def _find_payments(rt: Runtime, q: str) -> list[Payment]:
    q = q.strip()
    if not q or len(q) > 255 or "\x00" in q:  # PostgreSQL cannot even compare with a NUL
        return []
    async with rt.db.read_session() as db:
        rows = await db.scalars(
            select(Payment)
            .where(or_(Payment.payment_reference == q, Payment.order_id == q, Payment.invoice_id == q))
            .limit(20)
        )
        return list(rows)


async def _payments_context(rt: Runtime, q: str) -> dict[str, Any]:
    """The payments found, and those with money left to refund: a fully refunded one offers no form."""
    payments = await _find_payments(rt, q)
    return {
        "payments": payments,
        "refundable_payments": [p for p in payments if p.amount > p.reserved_amount],
    }


def _limit_for(role: Role | None, rt: Runtime) -> int | None:
    limits = parse_role_limits(rt.settings.role_limits)
    return limits.get(role) if role is not None else 0


def _limit_examples(limit: int | None, rt: Runtime) -> list[str]:
    """A role's limit is one figure in minor units, whatever the currency (REFUNDWATCH_ROLE_LIMITS):
    before a payment is chosen, it is shown in one currency of each number of decimals, those the
    approval threshold names first, then EUR, JPY and KWD."""
    if not limit:
        return []
    currencies = one_per_exponent([*rt.settings.approval_threshold_currencies, "EUR", "JPY", "KWD"])
    return [format_money(limit, c) for c in currencies]


@get("/refunds/new", opt={"action": Action.CREATE})
async def new_refund_page(
    request: Request[Any, Any, Any], session: Session, q: str | None = None
) -> Template:
    rt = runtime_of(request)
    return _page(
        "pages/refund_new.html",
        session,
        q=q or "",
        **await _payments_context(rt, q or ""),
        names=await _names(rt),
        reasons=REASONS,
        form={},
        error=None,
        form_key=secrets.token_urlsafe(16),
        limit=_limit_for(session.user.role, rt),
        limit_examples=_limit_examples(_limit_for(session.user.role, rt), rt),
        threshold_for=rt.settings.approval_threshold_for,
    )


@post("/refunds/new", opt={"action": Action.CREATE}, status_code=303)
async def create_refund_page(
    request: Request[Any, Any, Any], session: Session, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    rt = runtime_of(request)
    form = {k: (v or "").strip() for k, v in data.items() if k != "_csrf_token"}
    # The form carries a key made when it was rendered: a double submit creates one refund.
    key = f"form:{form.get('form_key') or secrets.token_urlsafe(16)}"[:255]
    try:
        _refuse_nul(form)
        body = _body_from(form)
        intake = await create_refund(
            rt,
            body,
            scope=session.user.key,
            idempotency_key=key,
            actor=user_actor(session.user, request),
            source=Source.USER,
            amount_limit=_limit_for(session.user.role, rt),
        )
    except RefundwatchError as exc:
        message, form_key = exc.message, form.get("form_key") or secrets.token_urlsafe(16)
        if exc.code == "idempotency_key_reused":
            # This form was sent before with other values (back to it, changed, sent): say so in the
            # form's terms, and give it a new key, so sending it again is a deliberate new refund.
            async with rt.db.read_session() as db:
                earlier = await db.scalar(
                    select(Refund.id).where(
                        Refund.client_scope == session.user.key, Refund.idempotency_key == key
                    )
                )
            message = (
                f"this form was already sent with other values and made refund /refunds/{earlier}; "
                "check that one, then send the form again to make another"
            )
            form_key = secrets.token_urlsafe(16)
        return _page(
            "pages/refund_new.html",
            session,
            status_code=200 if request.headers.get("hx-request") else 422,
            q=form.get("payment_reference", ""),
            **await _payments_context(rt, form.get("payment_reference", "")),
            names=await _names(rt),
            reasons=REASONS,
            form=form,
            error=message,
            error_code=exc.code,
            form_key=form_key,
            limit=_limit_for(session.user.role, rt),
            limit_examples=_limit_examples(_limit_for(session.user.role, rt), rt),
            threshold_for=rt.settings.approval_threshold_for,
        )
    return _go_to(request, f"/refunds/{intake.refund.id}")


def _go_to(request: Request[Any, Any, Any], path: str) -> Response[Any]:
    """After a successful form: a 303 for a plain form, a client-side redirect for htmx (the XHR
    would follow a 303 silently and leave the address bar on the form)."""
    if request.headers.get("hx-request"):
        return Response(None, status_code=204, headers={"HX-Redirect": path})
    return Redirect(path, status_code=303)


def _refuse_nul(fields: dict[str, str]) -> None:
    """PostgreSQL cannot store a NUL character: said on the page, with the form, on both databases
    (the database's safety net answered a bare JSON 422 instead, and SQLite stored it)."""
    for name, value in fields.items():
        if "\x00" in value:
            raise ValidationFailed(f"{name}: remove the NUL character (it cannot be stored)")


def _body_from(form: dict[str, str]) -> RefundCreate:
    """The API's request body from the form fields, decoded by the same schema as the API's."""
    currency = form.get("currency", "").upper()
    try:  # typed in major units (600.00 EUR, 1200 JPY, 1.250 KWD); the API's body is in minor units
        minor = parse_amount(form.get("amount", ""), currency)
    except AmountError as exc:
        raise ValidationFailed(f"amount: {exc}", code="invalid_amount") from None
    # In the form's own terms: the schema's words are the API's (a JSON integer in minor units).
    if minor < 1:
        raise ValidationFailed(
            f"amount: type an amount above 0, like {example_amount(currency)}", code="invalid_amount"
        )
    if minor > MAX_AMOUNT:
        raise ValidationFailed(f"amount: at most {format_money(MAX_AMOUNT, currency)}", code="invalid_amount")
    fields: dict[str, Any] = {
        "payment_reference": form.get("payment_reference", ""),
        "amount": minor,
        "currency": currency,
        "reason": form.get("reason", ""),
    }
    if form.get("connection"):
        fields["connection"] = form["connection"]
    if form.get("note"):
        fields["metadata"] = {"note": form["note"]}
    try:
        return msgspec.convert(fields, RefundCreate)
    except msgspec.ValidationError as exc:
        problem, _, where = str(exc).rpartition(" - at `$.")
        if found := field_error(where.rstrip("`"), problem):
            raise ValidationFailed(found[1], code=found[0]) from None
        if where.rstrip("`") == "reason":
            raise ValidationFailed(f"reason: choose one of {', '.join(get_args(Reason))}") from None
        raise ValidationFailed(str(exc)) from None


ROUTES = [
    refunds_page,
    refunds_csv,
    refund_page,
    refund_actions,
    cancel_refund,
    retry_refund,
    close_refund,
    approve_refund,
    reject_refund,
    approvals_page,
    new_refund_page,
    create_refund_page,
]
