"""Sign-in, callback and sign-out (CONTRACT §5: /auth/login, /auth/callback, /auth/logout)."""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import Parameter
from litestar.response import Redirect, Template

from refundwatch.audit.actions import Actor
from refundwatch.audit.services import record
from refundwatch.auth.guards import current_session, session_store, user_actor
from refundwatch.auth.oidc import OidcProvider, SignInError
from refundwatch.auth.roles import User, groups_of, name_from, parse_role_map, role_for
from refundwatch.auth.sessions import COOKIE
from refundwatch.web.state import runtime_of

SIGN_IN = "user:auth:sign_in"
SIGN_IN_FAILED = "user:auth:sign_in_failed"
SIGN_OUT = "user:auth:sign_out"
NO_STORE = {"Cache-Control": "no-store"}
SIGN_IN_COOKIE = "rw_signin"
_BROWSER_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def safe_return_path(raw: str | None) -> str:
    """Only a path on this site: never another host, scheme or protocol-relative URL (open redirect)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in raw):
        return "/"
    return raw if not raw.startswith("/auth/") else "/"


def provider(request: Request[Any, Any, Any]) -> OidcProvider:
    oidc: OidcProvider = request.app.state.oidc
    return oidc


async def _audit(request: Request[Any, Any, Any], actor: Actor, action: str, details: dict[str, Any]) -> None:
    rt = runtime_of(request)
    async with rt.db.session() as session:
        record(session, actor, action, target_type="session", details=details)
        await session.commit()


def _cookie(request: Request[Any, Any, Any], value: str, *, max_age: int | None) -> Cookie:
    settings = runtime_of(request).settings
    return Cookie(
        key=COOKIE,
        value=value,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.is_https,
        max_age=max_age,
    )


def _binding_cookie(request: Request[Any, Any, Any], value: str, *, max_age: int) -> Cookie:
    """Ties a sign-in to the browser that started it (sent back on the provider's redirect: Lax).
    Sent to /auth/login too, which keeps the browser's value: a second tab's start must not
    orphan the first's."""
    return Cookie(
        key=SIGN_IN_COOKIE,
        value=value,
        path="/auth",
        httponly=True,
        samesite="lax",
        secure=runtime_of(request).settings.is_https,
        max_age=max_age,
    )


def _sign_in_error(request: Request[Any, Any, Any], message: str, status_code: int = 400) -> Template:
    return Template(
        template_name="pages/sign_in_error.html",
        context={"message": message, "user": None},
        status_code=status_code,
        headers=NO_STORE,
    )


class AuthController(Controller):
    path = "/auth"
    include_in_schema = False

    @get("/login")
    async def login(
        self,
        request: Request[Any, Any, Any],
        next_path: Annotated[str | None, Parameter(query="next")] = None,
    ) -> Response[Any]:
        oidc = provider(request)
        if not oidc.configured:
            return _sign_in_error(request, "Sign-in is not configured (REFUNDWATCH_OIDC_ISSUER).", 503)
        # One value per browser, kept while sign-ins are pending: each start binds its own state to
        # it, so two tabs' sign-ins both complete (a new value refused the other tab's as "another
        # browser"). Only our own shape is kept; anything else gets a fresh value.
        kept = request.cookies.get(SIGN_IN_COOKIE, "")
        browser = kept if _BROWSER_VALUE.fullmatch(kept) else secrets.token_urlsafe(32)
        try:
            url = await oidc.begin(safe_return_path(next_path), browser)
        except SignInError as exc:
            return _sign_in_error(request, str(exc), 503)
        response = Redirect(url, status_code=302, headers=NO_STORE)
        response.set_cookie(_binding_cookie(request, browser, max_age=600))
        return response

    @get("/callback")
    async def callback(self, request: Request[Any, Any, Any]) -> Response[Any]:
        oidc = provider(request)
        settings = runtime_of(request).settings
        host = request.client.host if request.client else None
        anonymous = Actor("user", "anonymous", host, request.headers.get("user-agent"))
        try:
            done = await oidc.complete(dict(request.query_params), request.cookies.get(SIGN_IN_COOKIE))
        except SignInError as exc:
            await _audit(request, anonymous, SIGN_IN_FAILED, {"reason": str(exc)})
            return _sign_in_error(request, str(exc))
        groups = groups_of(done.claims, settings.oidc_roles_claim)
        if groups is None:  # a provider that stopped sending groups must not sign anyone in
            reason = f"the ID token has no {settings.oidc_roles_claim!r} claim"
            await _audit(request, anonymous, SIGN_IN_FAILED, {"reason": reason})
            return _sign_in_error(request, reason)
        claims = done.claims
        user = User(
            subject=str(claims["sub"]),
            name=name_from(claims),
            email=str(claims["email"])[:255] if claims.get("email") else None,
            role=role_for(groups, parse_role_map(settings.role_map)),
            groups=tuple(groups)[:50],
        )
        store = session_store(request)
        session = await store.create(
            user,
            done.id_token,
            refresh_token=done.tokens.refresh_token,
            access_token=done.tokens.access_token,
            replacing=request.cookies.get(COOKIE),
        )
        await _audit(
            request,
            user_actor(user, request),
            SIGN_IN,
            # The name from the ID token: staff pages show people by it (refunds.people).
            {"role": user.role.label if user.role else None, "groups": list(user.groups), "name": user.name},
        )
        response = Redirect(done.return_to, status_code=303, headers=NO_STORE)
        response.set_cookie(_cookie(request, session.id, max_age=store.absolute_seconds))
        # The binding cookie stays until it expires: another tab's sign-in may still be pending.
        return response

    @get("/logout")
    async def confirm_logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """A page with a sign-out button: signing out is a POST, so no other site can trigger it."""
        session = await current_session(request)
        return Template(
            template_name="pages/sign_out.html",
            context={"session": session, "user": session.user if session else None},
            headers=NO_STORE,
        )

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        session = await current_session(request)
        target = "/auth/signed-out"
        if session is not None:
            await session_store(request).delete(session.id)
            await _audit(request, user_actor(session.user, request), SIGN_OUT, {})
            settings = runtime_of(request).settings
            back = settings.base_url.rstrip("/") + "/auth/signed-out"
            target = await provider(request).logout_url(session.id_token, back) or target
        response = Redirect(target, status_code=303, headers=NO_STORE)
        response.set_cookie(_cookie(request, "", max_age=0))
        return response

    @get("/signed-out")
    async def signed_out(self) -> Template:
        return Template(template_name="pages/signed_out.html", context={"user": None}, headers=NO_STORE)
