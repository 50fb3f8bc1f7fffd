"""Staff sign-in, sessions, sign-out and the page guard, end to end (CONTRACT §5; issue 3 §1, §4, §6).

A real refundwatch (web + worker + simulator, per database backend) signs people in through the
session's real OpenID Connect provider over plain HTTP, with a browserless ``httpx2`` client that
keeps cookies and shows every redirect. ID-token-level attacks (tampered, expired, other audience,
unknown key, ...) cannot be provoked end to end, since the provider only issues good tokens and
the code exchange is server-side: those are in ``test_auth_oidc.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import httpx2
import pytest
import redis

from identity_provider import USERS, TestUser, query, with_query
from stack import Stack, db_rows

ROLE_USERS = [u for u in USERS.values() if u.role is not None]
#: CONTRACT §5 pages, with the role each needs at least.
PAGES = {
    "/": "viewer",
    "/refunds": "viewer",
    "/refunds/new": "initiator",
    "/approvals": "approver",
    "/gateways": "admin",
    "/audit": "admin",
}
ROLE_ORDER = ["viewer", "initiator", "approver", "admin"]

SIGN_IN = "user:auth:sign_in"
SIGN_IN_FAILED = "user:auth:sign_in_failed"
SIGN_OUT = "user:auth:sign_out"
DENIED = "user:access:denied"


# --------------------------------------------------------------------------------------------- helpers


def loopback_address() -> str:
    """A loopback source address of its own (Linux routes all of 127/8 to lo): every simulated
    browser is a different client for refundwatch's per-address sign-in rate limit, as real ones are."""
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(253) + 2}"


def browser(stack: Stack, **kwargs: Any) -> httpx2.Client:
    """A cookie-keeping client with its own User-Agent (so the audit rows it causes can be found) and
    its own source address."""
    return httpx2.Client(
        base_url=stack.web_url,
        follow_redirects=False,
        timeout=30,
        headers={"User-Agent": f"refundwatch-auth-tests/{uuid.uuid4().hex}"},
        transport=httpx2.HTTPTransport(local_address=loopback_address()),
        **kwargs,
    )


def user_agent(client: httpx2.Client) -> str:
    return str(client.headers["user-agent"])


def forget_provider_session(client: httpx2.Client) -> None:
    """Drop the provider's cookies (keep refundwatch's), so the next sign-in shows the login form."""
    for cookie in list(client.cookies.jar):
        if not cookie.name.startswith("rw_"):
            client.cookies.delete(cookie.name, domain=cookie.domain, path=cookie.path)


def authorize(stack: Stack, client: httpx2.Client, username: str, login_path: str = "/auth/login") -> str:
    """From ``login_path`` through the provider's login form: the callback URL, not yet requested."""
    assert stack.idp is not None
    return stack.idp.sign_in(client, f"{stack.web_url}{login_path}", username, "password")


def set_cookies(response: httpx2.Response) -> dict[str, dict[str, str]]:
    """The cookies a response sets: name -> {"value": ..., attribute (lower case): value or ""}."""
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        cookie = {"value": value}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            cookie[key.strip().lower()] = attr_value.strip()
        found[name.strip()] = cookie
    return found


def sign_in(stack: Stack, client: httpx2.Client, username: str, login_path: str = "/auth/login") -> str:
    """Signs ``client`` in; returns the new session cookie's value."""
    response = client.get(authorize(stack, client, username, login_path))
    assert response.status_code == 303, (response.status_code, response.text[:500])
    cookie = set_cookies(response).get("rw_session")
    assert cookie is not None, response.headers
    return cookie["value"]


def with_session(stack: Stack, session_id: str) -> httpx2.Client:
    """A fresh client that presents only this session cookie."""
    return browser(stack, cookies={"rw_session": session_id})


def who(stack: Stack, session_id: str) -> str | None:
    """The e-mail (on hover over the name) of this session on the dashboard; None when signed out."""
    with with_session(stack, session_id) as client:
        response = client.get("/")
    if response.status_code == 303:
        assert response.headers["location"].startswith("/auth/login"), response.headers
        return None
    assert response.status_code in (200, 403), (response.status_code, response.text[:500])
    match = re.search(r"[\w.+-]+@example\.test", response.text)
    return match.group(0) if match else "?"


def audit(stack: Stack, client: httpx2.Client, action: str | None = None) -> list[dict[str, Any]]:
    """The audit rows this client caused (matched by its User-Agent), oldest first."""
    rows = db_rows(
        stack,
        "SELECT action, actor_type, actor_id, target_type, target_id, details FROM audit_log"
        " WHERE user_agent = ? ORDER BY at, id",
        user_agent(client),
    )
    found = [
        {
            "action": r[0],
            "actor_type": r[1],
            "actor_id": r[2],
            "target_type": r[3],
            "target_id": r[4],
            "details": json.loads(r[5] or "{}"),
        }
        for r in rows
    ]
    return [r for r in found if action is None or r["action"] == action]


def login_target(path: str) -> str:
    return "/auth/login?next=" + quote(path, safe="")


def email(user: TestUser) -> str:
    return f"{user.username}@example.test"


def assert_sign_in_refused(response: httpx2.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:500])
    assert "Sign-in failed" in response.text
    assert "rw_session" not in set_cookies(response)
    assert "no-store" in response.headers.get("cache-control", "")


# ------------------------------------------------------------------------------------------- sign-in


@pytest.mark.parametrize("user", ROLE_USERS, ids=lambda u: u.username)
def test_each_role_signs_in_over_plain_http(stack: Stack, user: TestUser) -> None:
    assert stack.web_url.startswith("http://")
    assert stack.idp is not None
    with browser(stack) as client:
        start = client.get("/auth/login")
        assert start.status_code in (302, 303), start.text[:300]
        authorization = start.headers["location"]
        assert authorization.startswith(str(stack.idp.discovery()["authorization_endpoint"]) + "?")
        params = query(authorization)
        assert params["response_type"] == "code"
        assert params["redirect_uri"] == f"{stack.web_url}/auth/callback"
        assert params["code_challenge_method"] == "S256"
        assert params["code_challenge"]
        assert params["state"]
        assert params["nonce"]
        assert "code_verifier" not in params
        assert {"openid", "groups"} <= set(params["scope"].split())
        assert "rw_session" not in set_cookies(start)

        callback = stack.idp.sign_in(client, authorization, user.username, user.password)
        assert callback.startswith(f"{stack.web_url}/auth/callback?")
        response = client.get(callback)
        assert response.status_code == 303, response.text[:500]
        assert response.headers["location"] == "/"
        assert "no-store" in response.headers["cache-control"]

        cookie = set_cookies(response)["rw_session"]
        assert len(cookie["value"]) >= 32
        assert "httponly" in cookie
        assert cookie.get("samesite", "").lower() == "lax"
        assert "secure" not in cookie  # plain HTTP: a Secure cookie would never come back
        assert cookie.get("path") == "/"
        assert "domain" not in cookie  # host-only

        page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert email(user) in page.text
        assert user.role is not None
        assert user.role in page.text

        signed_in = audit(stack, client, SIGN_IN)
        assert len(signed_in) == 1, signed_in
        assert signed_in[0]["actor_type"] == "user"
        assert email(user) in signed_in[0]["actor_id"]
        assert signed_in[0]["details"].get("role") == user.role
        assert audit(stack, client, SIGN_IN_FAILED) == []


def test_session_id_changes_at_every_sign_in(stack: Stack) -> None:
    with browser(stack) as client:
        first = sign_in(stack, client, "alice-viewer")
        assert who(stack, first) == "alice-viewer@example.test"
        second = sign_in(stack, client, "alice-viewer")  # same browser, provider session still there
        assert second != first
        assert who(stack, second) == "alice-viewer@example.test"
        assert who(stack, first) is None  # the old id was ended, not merely replaced in the browser
        # A different person in the same browser: new id again, and the previous one is gone too.
        forget_provider_session(client)
        third = sign_in(stack, client, "ada-admin")
        assert len({first, second, third}) == 3
        assert who(stack, third) == "ada-admin@example.test"
        assert who(stack, second) is None
        assert len(audit(stack, client, SIGN_IN)) == 3


def test_a_planted_session_cookie_is_not_adopted(stack: Stack) -> None:
    planted = "planted-" + uuid.uuid4().hex + uuid.uuid4().hex
    with browser(stack) as client:
        client.cookies.set("rw_session", planted, domain="127.0.0.1", path="/")
        assert who(stack, planted) is None
        session_id = sign_in(stack, client, "ivan-initiator")
        assert session_id != planted
        assert who(stack, planted) is None
        assert who(stack, session_id) == "ivan-initiator@example.test"


def test_a_planted_real_session_id_is_replaced_not_reused(stack: Stack) -> None:
    """Session fixation with a live id: an attacker's own session id planted in the victim's browser
    is ended when the victim signs in, and the victim gets a different id."""
    with browser(stack) as attacker:
        attacker_id = sign_in(stack, attacker, "oscar-outsider")
    with browser(stack) as victim:
        victim.cookies.set("rw_session", attacker_id, domain="127.0.0.1", path="/")
        victim_id = sign_in(stack, victim, "amy-approver")
    assert victim_id != attacker_id
    assert who(stack, victim_id) == "amy-approver@example.test"
    assert who(stack, attacker_id) is None


# ------------------------------------------------------------------------------------------- next=


@pytest.mark.parametrize(
    "login_path",
    [
        pytest.param("/auth/login?next=%2Frefunds%3Fstatus%3Dfailed", id="encoded"),
        pytest.param("/auth/login?next=/refunds?status=failed", id="raw"),
    ],
)
def test_next_returns_to_the_page_asked_for(stack: Stack, login_path: str) -> None:
    with browser(stack) as client:
        response = client.get(authorize(stack, client, "alice-viewer", login_path))
        assert response.status_code == 303
        assert response.headers["location"] == "/refunds?status=failed"


def test_an_anonymous_page_view_comes_back_after_sign_in(stack: Stack) -> None:
    with browser(stack) as client:
        first = client.get("/refunds?status=failed")
        assert first.status_code == 303
        assert first.headers["location"] == login_target("/refunds?status=failed")
        response = client.get(authorize(stack, client, "alice-viewer", first.headers["location"]))
        assert response.status_code == 303
        assert response.headers["location"] == "/refunds?status=failed"
        page = client.get(response.headers["location"])
        assert page.status_code == 200, page.text[:500]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "https://evil.example/refunds",
        "//evil.example",
        "//evil.example/refunds",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http:evil.example",
        "evil.example",
        " //evil.example",
        "%2F%2Fevil.example",
        "",
    ],
)
def test_next_never_leaves_the_site(stack: Stack, target: str) -> None:
    with browser(stack) as client:
        login_path = "/auth/login?" + urlencode({"next": target})
        response = client.get(authorize(stack, client, "alice-viewer", login_path))
        assert response.status_code == 303, response.text[:300]
        assert response.headers["location"] == "/", (target, response.headers["location"])


# -------------------------------------------------------------------------------- refused sign-ins


def _callback_for(stack: Stack, client: httpx2.Client, username: str = "alice-viewer") -> str:
    forget_provider_session(client)
    return authorize(stack, client, username)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"state": "x" * 43}, id="unknown state"),
        pytest.param({"state": None}, id="no state"),
        pytest.param({"iss": "http://evil.example"}, id="other iss"),
        pytest.param({"iss": None}, id="no iss"),
        pytest.param({"code": "forged-authorization-code"}, id="forged code"),
        pytest.param({"code": None}, id="no code"),
        pytest.param({"code": None, "error": "access_denied"}, id="error answer"),
    ],
)
@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_a_bad_callback_is_refused_and_changes_no_session(
    stack: Stack, change: dict[str, str | None], signed_in: bool
) -> None:
    with browser(stack) as client:
        existing = sign_in(stack, client, "bob-approver") if signed_in else None
        callback = _callback_for(stack, client, "ada-admin")
        response = client.get(with_query(callback, **change))
        assert_sign_in_refused(response)
        failed = audit(stack, client, SIGN_IN_FAILED)
        assert len(failed) == 1, failed
        assert failed[0]["details"].get("reason")
        if existing is None:
            assert client.get("/").status_code == 303
        else:
            assert client.cookies.get("rw_session", domain="127.0.0.1") == existing
            assert who(stack, existing) == "bob-approver@example.test"
        if "state" in change:
            # A forged state does not use up the real one.
            assert client.get(callback).status_code == 303


def test_a_callback_cannot_be_used_twice(stack: Stack) -> None:
    """The same callback URL (state and authorization code) again: refused, and the session the first
    one made is still that person's."""
    with browser(stack) as client:
        callback = authorize(stack, client, "amy-approver")
        first = client.get(callback)
        assert first.status_code == 303
        session_id = set_cookies(first)["rw_session"]["value"]
        second = client.get(callback)
        assert_sign_in_refused(second)
        assert client.cookies.get("rw_session", domain="127.0.0.1") == session_id
        assert who(stack, session_id) == "amy-approver@example.test"
        assert len(audit(stack, client, SIGN_IN_FAILED)) == 1
    # From another browser (an attacker who got hold of the URL): refused as well.
    with browser(stack) as other:
        assert_sign_in_refused(other.get(callback))
        assert other.get("/").status_code == 303


def test_a_callback_from_another_browser_is_refused_after_use(stack: Stack) -> None:
    """A callback URL stolen before use and replayed after the owner used it gets nothing."""
    with browser(stack) as owner, browser(stack) as thief:
        callback = authorize(stack, owner, "ada-admin")
        assert owner.get(callback).status_code == 303
        response = thief.get(callback)
        assert_sign_in_refused(response)
        assert thief.get("/").status_code == 303


def test_a_callback_started_in_another_browser_is_refused(stack: Stack) -> None:
    """Login CSRF (RFC 6749 §10.12, RFC 9700 §4.7): an attacker starts a sign-in in their own browser,
    stops at the callback and gets the victim's browser to open that URL (a link or a top-level
    navigation: SameSite=Lax lets the cookie-less GET through). The state must be bound to the
    browser that started the sign-in, or the victim ends up working in the attacker's account."""
    with browser(stack) as attacker, browser(stack) as victim:
        victim_session = sign_in(stack, victim, "amy-approver")
        planted_callback = authorize(stack, attacker, "oscar-outsider")
        response = victim.get(planted_callback)
        current = victim.cookies.get("rw_session", domain="127.0.0.1")
        taken_over = response.status_code == 303 and current != victim_session
        assert not taken_over, (
            f"the victim's browser was signed in as the attacker: callback answered "
            f"{response.status_code} -> {response.headers.get('location')}, and the victim's session now "
            f"shows {who(stack, current) if current else None}"
        )
        assert_sign_in_refused(response)
        assert who(stack, victim_session) == "amy-approver@example.test"


def test_two_sign_ins_started_in_one_browser_both_complete(stack: Stack) -> None:
    """Two tabs whose session ended both go to /auth/login, then the person signs in in the first:
    the second start had replaced the browser's sign-in cookie, so the first was refused as
    "started in another browser". Both are this browser's, in either order, each returning to its
    own page; the login-CSRF test above still holds (another browser's start is refused)."""
    assert stack.idp is not None
    with browser(stack) as client:
        first = client.get("/auth/login", params={"next": "/refunds"})
        second = client.get("/auth/login", params={"next": "/approvals"})
        assert first.status_code == second.status_code == 302
        done = client.get(stack.idp.sign_in(client, first.headers["location"], "amy-approver", "password"))
        assert done.status_code == 303, done.text[:500]
        assert done.headers["location"] == "/refunds"
        session_id = set_cookies(done)["rw_session"]["value"]
        assert who(stack, session_id) == "amy-approver@example.test"
        forget_provider_session(client)  # the provider asks again: its form, then the callback
        again = client.get(stack.idp.sign_in(client, second.headers["location"], "amy-approver", "password"))
        assert again.status_code == 303, again.text[:500]
        assert again.headers["location"] == "/approvals"
        assert audit(stack, client, SIGN_IN_FAILED) == []


def test_a_person_without_groups_claim_is_not_signed_in(stack: Stack) -> None:
    with browser(stack) as client:
        response = client.get(authorize(stack, client, "nina-nogroups"))
        assert_sign_in_refused(response)
        assert "groups" in response.text
        assert client.get("/").status_code == 303
        failed = audit(stack, client, SIGN_IN_FAILED)
        assert len(failed) == 1, failed
        assert "groups" in failed[0]["details"]["reason"]
        assert audit(stack, client, SIGN_IN) == []


def test_a_person_without_groups_claim_does_not_replace_a_session(stack: Stack) -> None:
    with browser(stack) as client:
        existing = sign_in(stack, client, "alice-viewer")
        response = client.get(_callback_for(stack, client, "nina-nogroups"))
        assert_sign_in_refused(response)
        assert who(stack, existing) == "alice-viewer@example.test"


def test_a_person_whose_groups_map_to_no_role_has_no_access(stack: Stack) -> None:
    with browser(stack) as client:
        sign_in(stack, client, "oscar-outsider")
        signed_in = audit(stack, client, SIGN_IN)
        assert len(signed_in) == 1
        assert signed_in[0]["details"].get("role") is None
        for path in PAGES:
            response = client.get(path)
            assert response.status_code == 403, (path, response.status_code, response.text[:300])
            assert "No access" in response.text
            assert "no-store" in response.headers.get("cache-control", "")
        denied = audit(stack, client, DENIED)
        assert len(denied) == len(PAGES), denied
        assert all("oscar-outsider@example.test" in row["actor_id"] for row in denied)
        assert {row["target_id"] for row in denied} == {f"GET {path}" for path in PAGES}
        # Sign-out still works for them.
        assert client.get("/auth/logout").status_code == 200


@pytest.mark.parametrize("user", ROLE_USERS, ids=lambda u: u.username)
def test_each_role_sees_the_pages_of_its_role_only(stack: Stack, user: TestUser) -> None:
    assert user.role is not None
    rank = ROLE_ORDER.index(user.role)
    with browser(stack) as client:
        sign_in(stack, client, user.username)
        refused = []
        for path, needs in PAGES.items():
            response = client.get(path)
            if ROLE_ORDER.index(needs) <= rank:
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
            else:
                assert response.status_code == 403, (path, response.status_code, response.text[:300])
                assert "No access" not in response.text
                refused.append(f"GET {path}")
        denied = audit(stack, client, DENIED)
        assert sorted(r["target_id"] for r in denied) == sorted(refused)


def test_a_role_cannot_post_what_it_may_not_do(stack: Stack) -> None:
    """The guard covers actions as well as pages: a viewer cannot start a refund, an initiator
    cannot approve one (refused with 403 and audited, before the handler looks at the form)."""
    for username, path in (
        ("alice-viewer", "/refunds/new"),
        ("ivan-initiator", f"/refunds/{uuid.uuid4()}/approve"),
        ("alice-viewer", f"/refunds/{uuid.uuid4()}/cancel"),
    ):
        with browser(stack) as client:
            sign_in(stack, client, username)
            client.get("/auth/logout")  # a page view: the CSRF cookie
            response = client.post(
                path,
                headers={"x-csrftoken": client.cookies["rw_csrf"]},
                data={"payment_reference": "pi_x", "amount": "100", "currency": "EUR", "reason": "return"},
            )
            assert response.status_code == 403, (username, path, response.status_code, response.text[:300])
            denied = audit(stack, client, DENIED)
            assert [r["target_id"] for r in denied] == [f"POST {path}"], denied


def test_a_session_expires_when_idle_and_after_the_absolute_limit(stack: Stack) -> None:
    """Defaults (REFUNDWATCH_SESSION_IDLE_MINUTES=30, REFUNDWATCH_SESSION_ABSOLUTE_HOURS=12): the
    Redis record lives at most the idle time, the cookie at most the absolute time, and a session
    older than the absolute limit is refused even while it is in use."""
    with browser(stack) as client:
        response = client.get(authorize(stack, client, "alice-viewer"))
        cookie = set_cookies(response)["rw_session"]
        session_id = cookie["value"]
        assert 0 < int(cookie.get("max-age", "0")) <= 12 * 3600
    store = redis.Redis.from_url(stack.redis_url)
    try:
        keys = [
            k
            for k in store.scan_iter(match="*session*")
            if hashlib.sha256(session_id.encode()).hexdigest() in k.decode()
        ]
        assert len(keys) == 1, "the session record is not where it was (rw:session:<sha256 of the id>)"
        assert session_id.encode() not in b"".join(store.scan_iter(match="*session*"))
        assert 0 < store.ttl(keys[0]) <= 30 * 60
        # Twelve hours and a minute later (the record kept alive by use): refused, and removed.
        record = json.loads(store.get(keys[0]) or b"{}")
        record["signed_in_at"] = float(record["signed_in_at"]) - (12 * 3600 + 60)
        store.set(keys[0], json.dumps(record), keepttl=True)
        assert who(stack, session_id) is None
        assert not store.exists(keys[0])
    finally:
        store.close()


# ------------------------------------------------------------------------------------------ sign-out


def _csrf_token(page: str) -> str:
    match = re.search(r'<input[^>]*name="_csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'<input[^>]*value="([^"]+)"[^>]*name="_csrf_token"', page
    )
    assert match, page[:1000]
    return match.group(1)


def test_sign_out_needs_the_csrf_token(stack: Stack) -> None:
    with browser(stack) as client:
        session_id = sign_in(stack, client, "alice-viewer")
        confirm = client.get("/auth/logout")
        assert confirm.status_code == 200
        assert client.cookies.get("rw_csrf") is not None
        assert _csrf_token(confirm.text)

        no_token = client.post("/auth/logout")
        assert no_token.status_code == 403, no_token.text[:300]
        wrong = client.post("/auth/logout", data={"_csrf_token": "not-the-token"})
        assert wrong.status_code == 403, wrong.text[:300]
        assert who(stack, session_id) == "alice-viewer@example.test"
        assert audit(stack, client, SIGN_OUT) == []

    # The token alone, without the browser's rw_csrf cookie (a cross-site form post): refused.
    with browser(stack) as client:
        session_id = sign_in(stack, client, "alice-viewer")
        token = _csrf_token(client.get("/auth/logout").text)
        with with_session(stack, session_id) as bare:
            assert bare.post("/auth/logout", data={"_csrf_token": token}).status_code == 403
        assert who(stack, session_id) == "alice-viewer@example.test"


@pytest.mark.parametrize("how", ["form", "header"])
def test_sign_out_ends_the_session_and_the_provider_session(stack: Stack, how: str) -> None:
    assert stack.idp is not None
    with browser(stack) as client:
        session_id = sign_in(stack, client, "ada-admin")
        token = _csrf_token(client.get("/auth/logout").text)
        if how == "form":
            response = client.post("/auth/logout", data={"_csrf_token": token})
        else:
            response = client.post("/auth/logout", headers={"x-csrftoken": token})
        assert response.status_code == 303, response.text[:300]
        location = response.headers["location"]
        end_session = str(stack.idp.discovery()["end_session_endpoint"])
        assert location.startswith(end_session + "?"), location
        params = query(location)
        assert params["post_logout_redirect_uri"] == f"{stack.web_url}/auth/signed-out"
        assert params.get("id_token_hint") or params.get("client_id")
        cleared = set_cookies(response).get("rw_session")
        assert cleared is not None
        assert cleared["value"] in ("", '""')

        assert who(stack, session_id) is None
        old = with_session(stack, session_id)
        with old:
            again = old.get("/refunds")
            assert again.status_code == 303
            assert again.headers["location"] == login_target("/refunds")

        signed_out = audit(stack, client, SIGN_OUT)
        assert len(signed_out) == 1, signed_out
        assert "ada-admin@example.test" in signed_out[0]["actor_id"]

        # At the provider: confirm, and come back to refundwatch's signed-out page.
        back = stack.idp.sign_out(client, location)
        assert back is not None
        assert back.startswith(f"{stack.web_url}/auth/signed-out")
        final = client.get(back)
        assert final.status_code == 200
        # The provider session is gone too: the next sign-in asks for the password again.
        start = client.get("/auth/login")
        page = client.get(start.headers["location"], follow_redirects=True)
        assert 'name="password"' in page.text


def test_sign_out_without_a_session(stack: Stack) -> None:
    with browser(stack) as client:
        confirm = client.get("/auth/logout")
        assert confirm.status_code == 200
        response = client.post("/auth/logout", headers={"x-csrftoken": client.cookies["rw_csrf"]})
        assert response.status_code == 303
        assert response.headers["location"] == "/auth/signed-out"
        assert audit(stack, client, SIGN_OUT) == []


# ------------------------------------------------------------------------------------------ anonymous


ANONYMOUS_PAGES = [*PAGES, "/refunds?status=failed", "/refunds/{uuid}"]


def _concrete(path: str) -> str:
    return path.replace("{uuid}", str(uuid.uuid4()))


def _xfail_if_missing(response: httpx2.Response, path: str) -> None:
    if response.status_code == 404:
        pytest.xfail(f"{path} answers 404: the page does not exist yet")


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_an_anonymous_page_view_is_sent_to_sign_in(stack: Stack, path: str) -> None:
    path = _concrete(path)
    with browser(stack) as client:
        response = client.get(path)
        _xfail_if_missing(response, path)
        assert response.status_code == 303, (response.status_code, response.text[:300])
        assert response.headers["location"] == login_target(path)
        assert "no-store" in response.headers.get("cache-control", "")
        assert "rw_session" not in set_cookies(response)


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_an_anonymous_htmx_request_gets_401_and_hx_redirect(stack: Stack, path: str) -> None:
    path = _concrete(path)
    with browser(stack) as client:
        response = client.get(path, headers={"HX-Request": "true"})
        _xfail_if_missing(response, path)
        assert response.status_code == 401, (response.status_code, response.text[:300])
        assert response.headers["hx-redirect"] == login_target(path)
        # From inside a page, the fragment is not a page to come back to.
        response = client.get(
            path, headers={"HX-Request": "true", "HX-Current-URL": f"{stack.web_url}/refunds"}
        )
        assert response.status_code == 401
        assert response.headers["hx-redirect"].startswith("/auth/login")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/refunds"),
        ("GET", "/api/v1/refunds/{uuid}"),
        ("POST", "/api/v1/refunds"),
        ("POST", "/api/v1/payments"),
        ("POST", "/api/v1/refunds/{uuid}/cancel"),
    ],
)
def test_an_anonymous_api_call_gets_401(stack: Stack, method: str, path: str) -> None:
    with browser(stack) as client:
        response = client.request(method, _concrete(path), json={"anything": 1})
        assert response.status_code == 401, (response.status_code, response.text[:300])
        assert response.json()["code"] == "unauthenticated"
        # A session cookie is not an API credential.
        session_id = sign_in(stack, client, "ada-admin")
        with with_session(stack, session_id) as staff:
            response = staff.request(method, _concrete(path), json={"anything": 1})
        assert response.status_code == 401, (response.status_code, response.text[:300])


# --------------------------------------------------------------------------------- guard coverage

_ROUTES_SCRIPT = """
import json
from refundwatch.app import create_app
app = create_app()
print("ROUTES=" + json.dumps([
    {"path": route.path, "methods": sorted(getattr(route, "methods", None) or ["GET"])}
    for route in app.routes
]))
"""

#: Answer anyone: path prefix -> what a GET with made-up parameters may answer.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/static/", "/schema", "/auth/")


def _app_routes(stack: Stack) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-c", _ROUTES_SCRIPT],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=stack.workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("ROUTES="))
    routes: list[dict[str, Any]] = json.loads(line.removeprefix("ROUTES="))
    return routes


def _fill(path: str) -> str:
    def value(match: re.Match[str]) -> str:
        kind = match.group(2) or "str"
        return {"uuid": str(uuid.uuid4()), "int": "1", "path": "x/y"}.get(kind, "x")

    return re.sub(r"\{(\w+)(?::(\w+))?\}", value, path)


def test_every_route_is_guarded_or_explicitly_public(stack: Stack) -> None:
    routes = _app_routes(stack)
    paths = {r["path"] for r in routes}
    assert {
        "/",
        "/refunds",
        "/api/v1/refunds",
        "/auth/login",
        "/auth/callback",
        "/webhooks/{connection:str}",
    } <= (paths), paths

    problems: list[str] = []
    checked = 0
    with browser(stack) as client:
        # A CSRF cookie and its token, so unsafe methods reach the guard instead of stopping at CSRF.
        client.get("/auth/logout")
        csrf = client.cookies["rw_csrf"]
        for route in routes:
            template = route["path"]
            for method in route["methods"]:
                if method in ("OPTIONS", "HEAD"):
                    continue
                path = _fill(template)
                headers = {} if method == "GET" else {"x-csrftoken": csrf}
                body = None if method == "GET" else b"{}"
                response = client.request(method, path, headers=headers, content=body)
                checked += 1
                status, location = response.status_code, response.headers.get("location", "")
                seen = f"{method} {template} -> {status} {location}".strip()
                if status >= 500:
                    problems.append(f"{seen} (server error)")
                elif template.startswith("/api/"):
                    if status != 401:
                        problems.append(f"{seen} (API: expected 401)")
                elif template.startswith("/webhooks/"):
                    if method == "GET" or not 400 <= status < 500:
                        problems.append(f"{seen} (webhooks: POST only, unsigned must be 4xx)")
                elif template == "/metrics":
                    if status != 401:  # the stack sets REFUNDWATCH_METRICS_TOKEN
                        problems.append(f"{seen} (metrics: expected 401 without the token)")
                elif template.startswith(PUBLIC_PREFIXES) or template in ("/schema",):
                    pass  # public by design
                elif method == "GET":
                    if status != 303 or not location.startswith("/auth/login?next="):
                        problems.append(f"{seen} (page: expected 303 to /auth/login)")
                elif status != 401:
                    problems.append(f"{seen} (page action: expected 401)")
            if template.startswith("/webhooks/"):
                response = client.get(_fill(template))
                checked += 1
                if not 400 <= response.status_code < 500:
                    problems.append(f"GET {template} -> {response.status_code} (webhooks: GET must be 4xx)")
    assert checked >= len(routes)
    assert not problems, "\n".join(problems)
