"""Admin screens that manage, not only show: API keys (create with scopes, shown once; revoke) and
gateway connections (enable, disable, edit settings, replace a secret with a second admin's approval:
connections.changes). Every change is audited under the admin's name."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from refundwatch.audit import actions
from refundwatch.auth.apikeys import SCOPES, create_api_key, list_api_keys, revoke_api_key
from refundwatch.auth.guards import user_actor
from refundwatch.auth.roles import Action
from refundwatch.auth.sessions import Session
from refundwatch.connections import changes
from refundwatch.connections.services import set_enabled
from refundwatch.lib.exceptions import RefundwatchError
from refundwatch.web.state import runtime_of

ADMIN = {"action": Action.ADMINISTER}
NO_STORE = {"Cache-Control": "no-store"}
FORM = Body(media_type=RequestEncodingType.URL_ENCODED)


async def _keys_page(
    request: Request[Any, Any, Any],
    session: Session,
    *,
    status_code: int = 200,
    new_key: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    keys = await list_api_keys(runtime_of(request).db)
    return Template(
        template_name="pages/api_keys.html",
        context={
            "user": session.user,
            "keys": keys,
            "scopes": SCOPES,
            "new_key": new_key,
            "error": error,
            "form": form or {},
        },
        status_code=status_code,
        headers=NO_STORE,  # the page that shows a new key once must never be cached
    )


@get("/admin/api-keys", opt=ADMIN)
async def api_keys_page(request: Request[Any, Any, Any], session: Session) -> Template:
    return await _keys_page(request, session)


@post("/admin/api-keys", opt=ADMIN, status_code=200)
async def create_key(
    request: Request[Any, Any, Any], session: Session, data: Annotated[dict[str, str], FORM]
) -> Template:
    """Create a key with the scopes ticked; the key itself is shown on this answer only."""
    scopes = [scope for scope in SCOPES if data.get(f"scope:{scope}")]
    if not scopes:
        return await _keys_page(
            request, session, status_code=400, error="Choose at least one scope.", form=data
        )
    try:
        key = await create_api_key(
            runtime_of(request).db,
            data.get("name", ""),
            scopes,
            user_actor(session.user, request),
            action=actions.ADMIN_APIKEY_CREATE,
        )
    except RefundwatchError as exc:
        return await _keys_page(request, session, status_code=400, error=exc.message, form=data)
    return await _keys_page(request, session, new_key=key)


@post("/admin/api-keys/{key_id:str}/revoke", opt=ADMIN, status_code=303)
async def revoke_key(request: Request[Any, Any, Any], session: Session, key_id: str) -> Response[Any]:
    try:
        await revoke_api_key(
            runtime_of(request).db,
            key_id,
            user_actor(session.user, request),
            action=actions.ADMIN_APIKEY_REVOKE,
        )
    except RefundwatchError as exc:
        return await _keys_page(request, session, status_code=400, error=exc.message)
    return Redirect("/admin/api-keys", status_code=303)


@post("/admin/connections/{name:str}/enabled", opt=ADMIN, status_code=303)
async def set_connection_enabled(
    request: Request[Any, Any, Any], session: Session, name: str, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    """Enable or disable a connection (``enabled`` = ``true`` or ``false``)."""
    value = data.get("enabled", "")
    if value not in ("true", "false"):
        return Response(
            {"code": "invalid_request", "message": "enabled must be true or false"}, status_code=400
        )
    rt = runtime_of(request)
    await set_enabled(rt.db, name, value == "true", user_actor(session.user, request))
    rt.connections.invalidate()
    return Redirect("/gateways", status_code=303)


async def _connection_page(
    request: Request[Any, Any, Any],
    session: Session,
    name: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Template:
    rt = runtime_of(request)
    found = await changes.editable(rt.db, rt.cipher, name)
    return Template(
        template_name="pages/connection.html",
        context={
            "user": session.user,
            "c": found.connection,
            "options": found.options,
            "plain": found.plain,
            "secrets": found.secrets,
            "pending": found.pending,
            "error": error,
            "notice": notice,
        },
        status_code=status_code,
        headers=NO_STORE,
    )


@get("/admin/connections/{name:str}", opt=ADMIN)
async def connection_page(request: Request[Any, Any, Any], session: Session, name: str) -> Template:
    return await _connection_page(request, session, name)


@post("/admin/connections/{name:str}/settings", opt=ADMIN, status_code=200)
async def update_connection_settings(
    request: Request[Any, Any, Any], session: Session, name: str, data: Annotated[dict[str, str], FORM]
) -> Template:
    rt = runtime_of(request)
    try:
        changed = await changes.update_settings(
            rt.db, rt.cipher, name, data, user_actor(session.user, request)
        )
    except RefundwatchError as exc:
        return await _connection_page(request, session, name, status_code=exc.status_code, error=exc.message)
    rt.connections.invalidate()
    notice = f"Saved: {', '.join(changed)}." if changed else "Nothing changed."
    return await _connection_page(request, session, name, notice=notice)


@post("/admin/connections/{name:str}/credentials", opt=ADMIN, status_code=200)
async def request_credentials(
    request: Request[Any, Any, Any], session: Session, name: str, data: Annotated[dict[str, str], FORM]
) -> Template:
    """New secret values wait for a second admin; the page never echoes them back."""
    rt = runtime_of(request)
    values = {key.removeprefix("secret:"): value for key, value in data.items() if key.startswith("secret:")}
    try:
        await changes.request_credentials(
            rt.db,
            rt.cipher,
            name,
            values,
            by=session.user.key,
            by_name=session.user.display,
            actor=user_actor(session.user, request),
        )
    except RefundwatchError as exc:
        return await _connection_page(request, session, name, status_code=exc.status_code, error=exc.message)
    notice = "Asked for: another admin must approve the new credentials before they are used."
    return await _connection_page(request, session, name, notice=notice)


async def _decide(
    request: Request[Any, Any, Any], session: Session, change_id: UUID, data: dict[str, str], *, approve: bool
) -> Response[Any]:
    rt = runtime_of(request)
    name = data.get("connection", "")
    try:
        await changes.decide(
            rt.db,
            rt.cipher,
            change_id,
            approve=approve,
            by=session.user.key,
            by_name=session.user.display,
            reason=data.get("reason"),
            actor=user_actor(session.user, request),
        )
    except RefundwatchError as exc:
        if not name:
            raise
        return await _connection_page(request, session, name, status_code=exc.status_code, error=exc.message)
    rt.connections.invalidate()
    return Redirect(f"/admin/connections/{name}" if name else "/gateways", status_code=303)


@post("/admin/connection-changes/{change_id:uuid}/approve", opt=ADMIN, status_code=303)
async def approve_change(
    request: Request[Any, Any, Any], session: Session, change_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _decide(request, session, change_id, data, approve=True)


@post("/admin/connection-changes/{change_id:uuid}/reject", opt=ADMIN, status_code=303)
async def reject_change(
    request: Request[Any, Any, Any], session: Session, change_id: UUID, data: Annotated[dict[str, str], FORM]
) -> Response[Any]:
    return await _decide(request, session, change_id, data, approve=False)


ROUTES = [
    api_keys_page,
    create_key,
    revoke_key,
    set_connection_enabled,
    connection_page,
    update_connection_settings,
    request_credentials,
    approve_change,
    reject_change,
]
