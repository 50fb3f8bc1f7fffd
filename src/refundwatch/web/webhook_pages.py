"""Admin screens for outgoing webhooks: endpoints (register, edit, enable or disable, rotate the secret,
delete), each endpoint's deliveries and a delivery's attempts, re-sending one delivery or every delivery
since a moment; and the deliveries of one refund on its staff page.

Handlers parse the form, call one service of ``outgoing.endpoints`` / ``outgoing.history`` (which audit
every change as ``admin:webhook_endpoint:{verb}``) and render. A refused form comes back with the error
next to it (200 under htmx, which swaps only 2xx; 4xx without it). A secret is on the answer that made
it and on no other page.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode, urlsplit
from uuid import UUID

import msgspec
from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Template

from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.db.models._outgoing import FAILED, PENDING, SUCCEEDED
from refundwatch.lib.exceptions import NotFound, RefundwatchError, ValidationFailed
from refundwatch.lib.identifiers import whole_number
from refundwatch.outgoing import endpoints, history
from refundwatch.outgoing.endpoints import EndpointCreate, EndpointOut, EndpointUpdate, SecretRotation
from refundwatch.outgoing.events import EVENT_TYPES
from refundwatch.refunds.listing import parse_moment
from refundwatch.runtime import Runtime
from refundwatch.web.state import runtime_of

ADMIN = {"action": Action.ADMINISTER}
NO_STORE = {"Cache-Control": "no-store"}  # pages that show a secret once must never be cached
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
Req = Request[Any, Any, Any]
SOURCE = "admin"
PAGE_SIZE = 50
STATUSES = (PENDING, SUCCEEDED, FAILED)
LIST = "/admin/webhooks"
T = TypeVar("T")


@dataclass
class Outcome:
    """What the last form did, for the page that answers it."""

    status_code: int = 200
    error: str | None = None
    notice: str | None = None
    secret: str | None = None
    form: dict[str, str] = field(default_factory=dict)


def _refused(request: Req, exc: RefundwatchError, form: dict[str, str]) -> Outcome:
    status = 200 if request.headers.get("hx-request") else exc.status_code
    return Outcome(status_code=status, error=exc.message, form=form)


def _form(data: dict[str, str]) -> dict[str, str]:
    return {k: (v or "").strip() for k, v in data.items() if k != "_csrf_token"}


def _decoded(fields: dict[str, Any], kind: type[T]) -> T:
    """A form as the API's body, checked by the same schema; its complaint as one readable line."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        problem, _, where = str(exc).rpartition(" - at `$.")
        name = where.rstrip("`")
        raise ValidationFailed(f"{name}: {problem}" if problem else str(exc)) from None


def _chosen_events(form: dict[str, str]) -> list[str]:
    events = [e for e in EVENT_TYPES if form.get(f"event:{e}")]
    if not events:
        raise ValidationFailed("Choose at least one event type.", code="unknown_event_type")
    return events


def _endpoint_fields(form: dict[str, str]) -> dict[str, Any]:
    return {
        "url": form.get("url", ""),
        "events": _chosen_events(form),
        "connection": form.get("connection") or None,
        "description": form.get("description") or None,
    }


def _page(request: Req, session: Session, name: str, outcome: Outcome, url: str, **ctx: Any) -> Template:
    """``url`` is the page's own address: a boosted form's answer shows it, not the form's action."""
    headers = dict(NO_STORE)
    if request.method == "POST":
        headers["HX-Push-Url"] = url
    context = {"user": session.user, "error": outcome.error, "notice": outcome.notice, **ctx}
    context.update(secret=outcome.secret, form=outcome.form, event_types=EVENT_TYPES)
    return Template(template_name=name, context=context, status_code=outcome.status_code, headers=headers)


async def _connection_names(rt: Runtime) -> list[str]:
    return sorted(c.name for c in await rt.connections.all())


# ------------------------------------------------------------------------------------ endpoints


async def _list_page(
    request: Req, session: Session, outcome: Outcome, created: EndpointOut | None = None
) -> Template:
    rt = runtime_of(request)
    found = await endpoints.list_endpoints(rt)
    latest = {e.id: await history.latest_delivery(rt, e.id) for e in found}
    return _page(
        request,
        session,
        "pages/webhooks.html",
        outcome,
        LIST,
        endpoints=found,
        latest=latest,
        created=created,
        connections=await _connection_names(rt),
    )


@get(LIST, opt=ADMIN)
async def webhooks_page(request: Req, session: Session) -> Template:
    return await _list_page(request, session, Outcome())


@post(LIST, opt=ADMIN, status_code=200)
async def create_webhook(request: Req, session: Session, data: Form) -> Template:
    """Register an endpoint; its signing secret is on this answer only."""
    form = _form(data)
    try:
        created = await endpoints.create_endpoint(
            runtime_of(request),
            _decoded(_endpoint_fields(form), EndpointCreate),
            actor=user_actor(session.user, request),
            source=SOURCE,
            created_by=session.user.key,
        )
    except RefundwatchError as exc:
        return await _list_page(request, session, _refused(request, exc, form))
    outcome = Outcome(secret=created.secret, notice=f"Registered {created.url}.")
    return await _list_page(request, session, outcome, created=created)


async def _endpoint_page(request: Req, session: Session, endpoint_id: UUID, outcome: Outcome) -> Template:
    rt = runtime_of(request)
    endpoint = await endpoints.get_endpoint(rt, endpoint_id)
    status = request.query_params.get("status") or None
    status = status if status in STATUSES else None
    before = _int(request.query_params.get("before"))
    deliveries = await history.list_deliveries(
        rt, endpoint_id=endpoint_id, status=status, before_id=before, limit=PAGE_SIZE
    )
    base = f"{LIST}/{endpoint_id}"
    older = deliveries[-1].id if len(deliveries) == PAGE_SIZE else None
    edit = outcome.form or {
        "url": endpoint.url,
        "connection": endpoint.connection or "",
        "description": endpoint.description or "",
        **{f"event:{e}": "on" for e in endpoint.events},
    }
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return _page(
        request,
        session,
        "pages/webhook_endpoint.html",
        outcome,
        base,
        endpoint=endpoint,
        deliveries=deliveries,
        attempts=await history.last_attempts(rt, [d.id for d in deliveries]),
        connections=await _connection_names(rt),
        edit=edit,
        status=status,
        statuses=STATUSES,
        status_url=lambda s: base + (f"?{urlencode({'status': s})}" if s else ""),
        older_url=f"{base}?{urlencode({'before': older, **({'status': status} if status else {})})}"
        if older
        else None,
        newest_url=base + (f"?{urlencode({'status': status})}" if status else "") if before else None,
        since=outcome.form.get("since") or since.strftime("%Y-%m-%dT%H:%M"),
    )


def _int(raw: str | None) -> int | None:
    return whole_number(raw, 10**18 - 1) if raw else None


@get(f"{LIST}/{{endpoint_id:uuid}}", opt=ADMIN)
async def webhook_page(request: Req, session: Session, endpoint_id: UUID) -> Template:
    return await _endpoint_page(request, session, endpoint_id, Outcome())


@post(f"{LIST}/{{endpoint_id:uuid}}", opt=ADMIN, status_code=200)
async def update_webhook(request: Req, session: Session, endpoint_id: UUID, data: Form) -> Template:
    """Change the URL, the events, the connection filter and the description at once."""
    form = _form(data)
    try:
        await endpoints.update_endpoint(
            runtime_of(request),
            endpoint_id,
            _decoded(_endpoint_fields(form), EndpointUpdate),
            actor=user_actor(session.user, request),
            source=SOURCE,
        )
    except NotFound:
        raise
    except RefundwatchError as exc:
        return await _endpoint_page(request, session, endpoint_id, _refused(request, exc, form))
    return await _endpoint_page(request, session, endpoint_id, Outcome(notice="Saved."))


@post(f"{LIST}/{{endpoint_id:uuid}}/enabled", opt=ADMIN, status_code=200)
async def set_webhook_enabled(request: Req, session: Session, endpoint_id: UUID, data: Form) -> Template:
    """``enabled`` = ``true`` (its pending deliveries go out) or ``false`` (nothing is sent or queued)."""
    form = _form(data)
    value = form.get("enabled", "")
    if value not in ("true", "false"):
        refused = ValidationFailed("enabled must be true or false", code="invalid_request")
        return await _endpoint_page(request, session, endpoint_id, _refused(request, refused, {}))
    reason = form.get("reason", "")[:200]
    found = await endpoints.set_enabled(
        runtime_of(request),
        endpoint_id,
        value == "true",
        actor=user_actor(session.user, request),
        source=SOURCE,
        reason=f"disabled by {session.user.display}: {reason}" if reason else "",
    )
    notice = "Enabled: its pending deliveries go out now." if found.enabled else "Disabled: nothing is sent."
    return await _endpoint_page(request, session, endpoint_id, Outcome(notice=notice))


@post(f"{LIST}/{{endpoint_id:uuid}}/rotate-secret", opt=ADMIN, status_code=200)
async def rotate_webhook_secret(request: Req, session: Session, endpoint_id: UUID, data: Form) -> Template:
    """A new secret, on this answer only; the current one also signs for the overlap chosen."""
    form = _form(data)
    try:
        hours = _decoded({"overlap_hours": _number(form.get("overlap_hours", ""))}, SecretRotation)
        rotated = await endpoints.rotate_secret(
            runtime_of(request),
            endpoint_id,
            actor=user_actor(session.user, request),
            source=SOURCE,
            overlap_hours=hours.overlap_hours,
        )
    except NotFound:
        raise
    except RefundwatchError as exc:
        return await _endpoint_page(request, session, endpoint_id, _refused(request, exc, {}))
    notice = (
        "New secret made; the previous one also signs until its overlap ends."
        if rotated.previous_secret_expires_at
        else "New secret made; the previous one no longer signs."
    )
    return await _endpoint_page(request, session, endpoint_id, Outcome(notice=notice, secret=rotated.secret))


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValidationFailed(f"overlap_hours: {raw!r} is not a number of hours") from None


@post(f"{LIST}/{{endpoint_id:uuid}}/delete", opt=ADMIN, status_code=200)
async def delete_webhook(request: Req, session: Session, endpoint_id: UUID, data: Form) -> Template:
    """Only with the confirmation ticked: the endpoint goes with its deliveries and their attempts."""
    form = _form(data)
    if form.get("confirm") != "yes":
        refused = ValidationFailed("Tick the box to confirm the deletion.", code="confirmation_required")
        return await _endpoint_page(request, session, endpoint_id, _refused(request, refused, {}))
    rt = runtime_of(request)
    gone = await endpoints.get_endpoint(rt, endpoint_id)
    await endpoints.delete_endpoint(rt, endpoint_id, actor=user_actor(session.user, request), source=SOURCE)
    return await _list_page(request, session, Outcome(notice=f"Deleted {gone.url}."))


# ----------------------------------------------------------------------------------- deliveries


@post(f"{LIST}/{{endpoint_id:uuid}}/resend-since", opt=ADMIN, status_code=200)
async def resend_since(request: Req, session: Session, endpoint_id: UUID, data: Form) -> Template:
    """Every delivery of a change at or after ``since`` (UTC; the page's script sends the viewer's
    local time as UTC) goes out again."""
    form = _form(data)
    try:
        try:
            since, _ = parse_moment(form.get("since", ""))
        except ValueError:
            raise ValidationFailed(
                "since: give a date and time (YYYY-MM-DDTHH:MM)", code="invalid_time"
            ) from None
        count = await history.resend_since(
            runtime_of(request), endpoint_id, since, actor=user_actor(session.user, request), source=SOURCE
        )
    except NotFound:
        raise
    except RefundwatchError as exc:
        return await _endpoint_page(request, session, endpoint_id, _refused(request, exc, form))
    notice = f"{count} {'delivery' if count == 1 else 'deliveries'} will be sent again."
    return await _endpoint_page(request, session, endpoint_id, Outcome(notice=notice))


async def _delivery_page(
    request: Req, session: Session, endpoint_id: UUID, delivery_id: int, outcome: Outcome
) -> Template:
    rt = runtime_of(request)
    delivery = await history.get_delivery(rt, delivery_id)
    if delivery.endpoint_id != endpoint_id:
        raise NotFound(f"no webhook delivery {delivery_id}", code="webhook_delivery_not_found")
    url = f"{LIST}/{endpoint_id}/deliveries/{delivery_id}"
    return _page(
        request,
        session,
        "pages/webhook_delivery.html",
        outcome,
        url,
        endpoint=await endpoints.get_endpoint(rt, endpoint_id),
        delivery=delivery,
        attempts=await history.list_attempts(rt, delivery_id),
        body=_readable(await history.delivery_body(rt, delivery_id)),
    )


def _readable(body: str | None) -> str | None:
    """The JSON body indented for reading (the bytes sent are compact)."""
    if body is None:
        return None
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@get(f"{LIST}/{{endpoint_id:uuid}}/deliveries/{{delivery_id:int}}", opt=ADMIN)
async def delivery_page(request: Req, session: Session, endpoint_id: UUID, delivery_id: int) -> Template:
    return await _delivery_page(request, session, endpoint_id, delivery_id, Outcome())


@post(f"{LIST}/{{endpoint_id:uuid}}/deliveries/{{delivery_id:int}}/resend", opt=ADMIN, status_code=200)
async def resend_delivery(request: Req, session: Session, endpoint_id: UUID, delivery_id: int) -> Template:
    rt = runtime_of(request)
    if (await history.get_delivery(rt, delivery_id)).endpoint_id != endpoint_id:
        raise NotFound(f"no webhook delivery {delivery_id}", code="webhook_delivery_not_found")
    await history.resend(rt, delivery_id, actor=user_actor(session.user, request), source=SOURCE)
    notice = "It will be sent again now (same webhook-id: the receiver may see it twice)."
    return await _delivery_page(request, session, endpoint_id, delivery_id, Outcome(notice=notice))


# ------------------------------------------------------------------------- a refund's deliveries


async def refund_deliveries(rt: Runtime, refund_id: UUID) -> dict[str, Any]:
    """The refund page's outgoing deliveries: which endpoint (its host; admins get a link), which
    event, how it went. While one is pending the section re-reads itself (``deliveries_poll``): their
    sending is not a change of the refund, so the live timeline does not announce it."""
    deliveries = await history.list_deliveries(rt, refund_id=refund_id, limit=100)
    known = {e.id: e for e in await endpoints.list_endpoints(rt)} if deliveries else {}
    hosts = {i: urlsplit(e.url).netloc for i, e in known.items()}
    due = [d.next_attempt_at for d in deliveries if d.status == "pending" and d.next_attempt_at]
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    # Every 3 s while a send is due within the minute; every minute while retries are further off.
    every = None if not due else "3s" if min(due) <= soon else "60s"
    return {
        "deliveries": deliveries,
        "delivery_hosts": hosts,
        "delivery_endpoints": known,
        "deliveries_poll": every and (f"/refunds/{refund_id}/deliveries", every),
    }


@get("/refunds/{refund_id:uuid}/deliveries", include_in_schema=False)
async def refund_deliveries_fragment(request: Req, session: Session, refund_id: UUID) -> Template:
    """The section alone, re-read when the refund's timeline moves (each change may send events)."""
    context = await refund_deliveries(runtime_of(request), refund_id)
    return Template(
        template_name="partials/refunds/_deliveries.html",
        context={"user": session.user, "refund_id": refund_id, **context},
        headers=NO_STORE,
    )


ROUTES = [
    webhooks_page,
    create_webhook,
    webhook_page,
    update_webhook,
    set_webhook_enabled,
    rotate_webhook_secret,
    delete_webhook,
    resend_since,
    delivery_page,
    resend_delivery,
    refund_deliveries_fragment,
]
