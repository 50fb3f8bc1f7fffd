"""Who may see which page and do what: the staff guard, and the answers for those who may not.

Every page route declares the action it needs in ``opt={"action": ...}`` (default: view). The guard
loads the session: nobody signed in → sign-in (a redirect for a page, 401 with ``HX-Redirect`` for an
htmx request); signed in without a mapped role → the "no access" page; a role below the action → 403.
Denials by a known person are audited.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect, Template

from refundwatch.audit import actions
from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.auth import rolecheck
from refundwatch.auth.roles import Action, User
from refundwatch.auth.sessions import COOKIE, Session, SessionStore
from refundwatch.web.state import runtime_of

DENIED = actions.ACCESS_DENIED


class SignInRequired(Exception):
    def __init__(self, path: str) -> None:
        super().__init__("sign in first")
        self.path = path


class AccessDenied(Exception):
    """A signed-in person may not do this; ``no_role`` when no group maps to a role at all."""

    def __init__(self, message: str, *, no_role: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.no_role = no_role


def session_store(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionStore:
    store: SessionStore = connection.app.state.sessions
    return store


def user_actor(user: User, connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    """How a person appears in the audit log: name and stable subject, with where they came from."""
    host = connection.client.host if connection.client else None
    return Actor("user", f"{user.audit_label} ({user.subject})", host, connection.headers.get("user-agent"))


async def current_session(connection: ASGIConnection[Any, Any, Any, Any]) -> Session | None:
    cached: Session | None = connection.state.get("session")
    if cached is not None:
        return cached
    session = await live_session(connection)
    if session is not None:
        connection.state.session = session
    return session


async def live_session(connection: ASGIConnection[Any, Any, Any, Any]) -> Session | None:
    """The browser's session, its role re-read from the provider when that is due; None when
    there is none or it just ended (``auth/rolecheck.py``)."""
    session = await session_store(connection).get(connection.cookies.get(COOKIE))
    if session is None:
        return None
    return await rolecheck.checked(connection, session)


def _wanted_path(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    if connection.headers.get("hx-request") and connection.headers.get("hx-current-url"):
        return "/"  # an htmx fragment is not a page to come back to
    query = connection.scope.get("query_string", b"").decode("latin-1")
    return connection.url.path + (f"?{query}" if query else "")


async def audit_denied(connection: ASGIConnection[Any, Any, Any, Any], user: User, why: str) -> None:
    rt = runtime_of(connection)
    async with rt.db.session() as session:
        record(
            session,
            user_actor(user, connection),
            DENIED,
            target_type="route",
            target_id=f"{connection.scope.get('method', 'GET')} {connection.url.path}"[:255],
            details={"reason": why, "role": user.role.label if user.role else None},
        )
        await session.commit()


async def staff_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    session = await current_session(connection)
    if session is None:
        raise SignInRequired(_wanted_path(connection))
    user = session.user
    if user.role is None:
        await audit_denied(connection, user, "no role")
        raise AccessDenied("none of your groups gives access to refundwatch", no_role=True)
    action = Action(handler.opt.get("action", Action.VIEW))
    if not user.can(action):
        await audit_denied(connection, user, f"needs {action.value}")
        raise AccessDenied(f"your role ({user.role.label}) does not allow this ({action.value})")


async def staff(request: Request[Any, Any, Any]) -> Session:
    """Dependency: the session the guard loaded."""
    found: Session = request.state.session
    return found


def sign_in_required_handler(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    target = "/auth/login?next=" + quote(exc.path, safe="")
    if request.headers.get("hx-request"):
        return Response(
            {"code": "unauthenticated", "message": "sign in first"},
            status_code=401,
            headers={"HX-Redirect": target, "Cache-Control": "no-store"},
        )
    if request.method not in ("GET", "HEAD"):
        return Response(
            {"code": "unauthenticated", "message": "sign in first"},
            status_code=401,
            headers={"Cache-Control": "no-store"},
        )
    return Redirect(target, status_code=303, headers={"Cache-Control": "no-store"})


def access_denied_handler(request: Request[Any, Any, Any], exc: AccessDenied) -> Response[Any]:
    template = "pages/no_access.html" if exc.no_role else "pages/forbidden.html"
    session: Session | None = request.state.get("session")
    return Template(
        template_name=template,
        context={"message": exc.message, "session": session, "user": session.user if session else None},
        status_code=403,
        headers={"Cache-Control": "no-store"},
    )


PAGE_EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    SignInRequired: sign_in_required_handler,
    AccessDenied: access_denied_handler,
}
