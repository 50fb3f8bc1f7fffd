"""A person's role follows the identity provider while they are signed in (issue 11 §2).

A refundwatch web process with ``REFUNDWATCH_ROLE_REFRESH_MINUTES`` at a few seconds, on the stack's
database and Redis, signs people in through the session's real provider process; the test then
changes their groups in the running provider (its ``/__test/users/<name>`` hook) and watches the
next requests: another role takes effect, no mapped group or a disabled person ends the session.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import redis

from _services import free_port
from identity_provider import IdentityProvider
from stack import Proc, Stack, db_rows, wait_http, wait_until

INTERVAL_MINUTES = 0.05  # three seconds
PATIENCE = 60.0  # seconds a change may take to show, generously above the interval under load


@dataclass
class Web:
    url: str
    idp: IdentityProvider
    stack: Stack


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[Web]:
    assert stack.idp is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = stack.idp.register_web_client(url)
    env = {
        **stack.env,
        **stack.idp.refundwatch_env(client),
        "REFUNDWATCH_BASE_URL": url,
        "REFUNDWATCH_ROLE_REFRESH_MINUTES": str(INTERVAL_MINUTES),
    }
    proc = Proc(
        "web-roles", ["refundwatch", "serve", "--port", str(port)], env, stack.workdir / "web-roles.log"
    )
    proc.start()
    try:
        wait_http(f"{url}/healthz", proc)
        yield Web(url, stack.idp, stack)
    finally:
        proc.stop()


def person(web: Web, groups: list[str]) -> str:
    username = f"rc-{uuid.uuid4().hex[:10]}"
    web.idp.add_user(username, groups=groups)
    return username


def signed_in(web: Web, username: str) -> httpx2.Client:
    agent = f"role-refresh-tests/{uuid.uuid4().hex}"
    client = httpx2.Client(
        base_url=web.url, follow_redirects=False, timeout=30, headers={"User-Agent": agent}
    )
    callback = web.idp.sign_in(client, f"{web.url}/auth/login", username, "password")
    response = client.get(callback)
    assert response.status_code == 303, (response.status_code, response.text[:300])
    return client


def audit(web: Web, client: httpx2.Client, action: str) -> list[dict[str, Any]]:
    rows = db_rows(
        web.stack,
        "SELECT details FROM audit_log WHERE user_agent = ? AND action = ? ORDER BY id",
        str(client.headers["user-agent"]),
        action,
    )
    return [json.loads(r[0] or "{}") for r in rows]


def signed_out(response: httpx2.Response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/auth/login")


def test_a_demoted_approver_loses_approvals_within_the_interval(web: Web) -> None:
    username = person(web, ["refundwatch-approvers"])
    with contextlib.closing(signed_in(web, username)) as client:
        assert client.get("/approvals").status_code == 200
        web.idp.update_user(username, groups=["refundwatch-viewers"])

        wait_until(
            lambda: client.get("/approvals").status_code == 403,
            timeout=PATIENCE,
            interval=0.5,
            what="the demotion to take effect",
        )
        assert client.get("/refunds").status_code == 200  # still signed in, as a viewer
        assert audit(web, client, "user:auth:role_changed")[-1]["from"] == "approver"
        assert audit(web, client, "user:auth:role_changed")[-1]["to"] == "viewer"

        web.idp.update_user(username, groups=["refundwatch-approvers"])  # and back: no new sign-in
        wait_until(
            lambda: client.get("/approvals").status_code == 200,
            timeout=PATIENCE,
            interval=0.5,
            what="the promotion to take effect",
        )


def test_no_mapped_group_any_more_ends_the_session(web: Web) -> None:
    username = person(web, ["refundwatch-approvers"])
    with contextlib.closing(signed_in(web, username)) as client:
        assert client.get("/approvals").status_code == 200
        web.idp.update_user(username, groups=["marketing"])

        wait_until(
            lambda: signed_out(client.get("/approvals")),
            timeout=PATIENCE,
            interval=0.5,
            what="the session to end",
        )
        # Ended for good, for pages and htmx requests alike.
        assert signed_out(client.get("/"))
        htmx = client.get("/refunds", headers={"HX-Request": "true"})
        assert htmx.status_code == 401
        assert htmx.headers["hx-redirect"].startswith("/auth/login")
        (ended,) = audit(web, client, "user:auth:session_ended")
        assert ended["role"] == "approver"
        assert "maps to a role" in ended["reason"]


def test_a_disabled_person_is_signed_out(web: Web) -> None:
    username = person(web, ["refundwatch-initiators"])
    with contextlib.closing(signed_in(web, username)) as client:
        assert client.get("/refunds/new").status_code == 200
        web.idp.update_user(username, disabled=True)

        wait_until(
            lambda: signed_out(client.get("/refunds/new")),
            timeout=PATIENCE,
            interval=0.5,
            what="the session to end",
        )
        (ended,) = audit(web, client, "user:auth:session_ended")
        assert "refused" in ended["reason"]


def test_the_provider_tokens_are_kept_encrypted_and_never_reach_the_browser(web: Web) -> None:
    from refundwatch.config import Settings
    from refundwatch.lib.crypto import FieldCipher, sha256_hex

    username = person(web, ["refundwatch-viewers"])
    with contextlib.closing(signed_in(web, username)) as client:
        page = client.get("/")
        assert page.status_code == 200
        session_id = client.cookies.get("rw_session", domain="127.0.0.1")
        assert session_id
        cookies = " ".join(str(c.value) for c in client.cookies.jar)
    store = redis.Redis.from_url(web.stack.redis_url)
    try:
        record = json.loads(store.get(f"rw:session:{sha256_hex(session_id)}") or b"{}")
    finally:
        store.close()
    assert "refresh_token" not in record
    assert "access_token" not in record
    keys = Settings(encryption_keys=web.stack.env.get("REFUNDWATCH_ENCRYPTION_KEYS", "")).encryption_key_list
    tokens = json.loads(FieldCipher(keys).decrypt(record["tokens"]))
    assert tokens["refresh_token"], "the provider's refresh token is kept for the re-reads"
    for token in tokens.values():
        assert token not in json.dumps(record)
        assert token not in cookies
        assert token not in page.text


@contextlib.contextmanager
def web_with_own_provider(stack: Stack, minutes: float) -> Iterator[tuple[Web, Proc]]:
    """A web process signing in through a provider of its own, which the test may stop."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    idp = IdentityProvider(rp_base_url=url, log_path=stack.workdir / f"idp-{port}.log").start()
    env = {
        **stack.env,
        **idp.refundwatch_env(),
        "REFUNDWATCH_BASE_URL": url,
        "REFUNDWATCH_ROLE_REFRESH_MINUTES": str(minutes),
    }
    proc = Proc(
        "web-own-idp", ["refundwatch", "serve", "--port", str(port)], env, stack.workdir / f"web-{port}.log"
    )
    proc.start()
    try:
        wait_http(f"{url}/healthz", proc)
        yield Web(url, idp, stack), proc
    finally:
        proc.stop()
        idp.stop()


def test_a_provider_outage_keeps_sessions_for_a_bounded_grace(stack: Stack) -> None:
    """The provider goes away: the first failed re-read signs nobody out; once the grace (one more
    interval, here six seconds) has passed without an answer, the session ends."""
    with web_with_own_provider(stack, 0.1) as (web, proc):
        username = person(web, ["refundwatch-approvers"])
        with contextlib.closing(signed_in(web, username)) as client:
            assert client.get("/approvals").status_code == 200
            web.idp.stop()

            def postponed() -> bool:
                assert client.get("/approvals").status_code == 200  # never signed out before it
                return "role re-read postponed" in proc.tail(100_000)

            wait_until(postponed, timeout=PATIENCE, interval=0.5, what="a failed re-read")
            wait_until(
                lambda: signed_out(client.get("/approvals")),
                timeout=PATIENCE,
                interval=0.5,
                what="the grace to run out",
            )
            (ended,) = audit(web, client, "user:auth:session_ended")
            assert "did not answer" in ended["reason"]


def test_a_session_from_before_the_upgrade_ends_at_its_first_check(web: Web) -> None:
    """Sessions written before role re-reads existed hold no provider tokens: nothing can vouch for
    their role any more, so the first check ends them (one sign-in again)."""
    from refundwatch.lib.crypto import sha256_hex

    username = person(web, ["refundwatch-approvers"])
    with contextlib.closing(signed_in(web, username)) as client:
        session_id = client.cookies.get("rw_session", domain="127.0.0.1")
        assert session_id
        store = redis.Redis.from_url(web.stack.redis_url)
        try:
            key = f"rw:session:{sha256_hex(session_id)}"
            record = json.loads(store.get(key) or b"{}")
            for name in ("tokens", "roles_checked_at", "retry_at"):
                record.pop(name)
            store.set(key, json.dumps(record), keepttl=True)
        finally:
            store.close()
        assert signed_out(client.get("/approvals"))
        (ended,) = audit(web, client, "user:auth:session_ended")
        assert "no token" in ended["reason"]
    with contextlib.closing(signed_in(web, username)) as again:
        assert again.get("/approvals").status_code == 200
