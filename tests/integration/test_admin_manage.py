"""Admin screens that manage: API keys made with chosen scopes and shown once, revoked; connections
enabled and disabled. Real web, worker, database and identity provider; every change audited."""

from __future__ import annotations

import contextlib
import re
import uuid

import httpx2
import pytest

from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow


def csrf(page: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def admin(stack: Stack) -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in("ada-admin"))


def create_key(client: httpx2.Client, name: str, *scopes: str) -> httpx2.Response:
    token = csrf(client.get("/admin/api-keys").text)
    fields = {"name": name, "_csrf_token": token, **{f"scope:{s}": "on" for s in scopes}}
    return client.post("/admin/api-keys", data=fields)


def audited(stack: Stack, action: str, target: str) -> list[tuple[str, str]]:
    return [
        (str(actor), str(details))
        for actor, details in db_rows(
            stack,
            "SELECT actor_id, details FROM audit_log WHERE action = ? AND target_id = ?",
            action,
            target,
        )
    ]


def test_an_admin_makes_a_key_with_chosen_scopes_sees_it_once_and_revokes_it(stack: Stack) -> None:
    name = f"returns-{uuid.uuid4().hex[:6]}"
    with admin(stack) as ada:
        made = create_key(ada, name, "refunds:read")
        assert made.status_code == 200, made.text[:500]
        assert made.headers["cache-control"] == "no-store"
        key = re.search(r'<code id="new-key" class="secret">([^<]+)</code>', made.text)
        assert key, made.text[:2000]
        secret = key.group(1)
        assert secret not in ada.get("/admin/api-keys").text  # shown once, never again
        (key_id,) = (row[0] for row in db_rows(stack, "SELECT id FROM api_keys WHERE name = ?", name))
    key_id = str(uuid.UUID(bytes=key_id) if isinstance(key_id, bytes) else key_id)
    with stack.api(secret) as client:
        assert client.get("/api/v1/refunds").status_code == 200
        refused = client.post("/api/v1/payments", json={})
        assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    ((actor, details),) = audited(stack, "admin:apikey:create", key_id)
    assert "ada" in actor
    assert "refunds:read" in details
    assert secret not in details

    with admin(stack) as ada:
        token = csrf(ada.get("/admin/api-keys").text)
        revoked = ada.post(f"/admin/api-keys/{key_id}/revoke", data={"_csrf_token": token})
        assert revoked.status_code == 303, revoked.text[:300]
    with stack.api(secret) as client:
        wait_until(
            lambda: client.get("/api/v1/refunds").status_code == 401, timeout=30, what="the key refused"
        )
    assert len(audited(stack, "admin:apikey:revoke", key_id)) == 1


@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [("no-scopes", (), "Choose at least one scope."), ("", ("refunds:read",), "1 to 128 characters")],
)
def test_a_key_without_a_name_or_scopes_is_refused_clearly(
    stack: Stack, name: str, scopes: tuple[str, ...], message: str
) -> None:
    with admin(stack) as ada:
        answer = create_key(ada, name, *scopes)
    assert answer.status_code == 400
    assert message in answer.text
    assert 'id="new-key"' not in answer.text


def test_only_admins_manage(stack: Stack) -> None:
    with contextlib.closing(stack.sign_in("amy-approver")) as amy:
        assert amy.get("/admin/api-keys").status_code == 403
        token = csrf(amy.get("/refunds").text)
        refused = amy.post(
            "/admin/api-keys", data={"name": "x", "scope:refunds:read": "on", "_csrf_token": token}
        )
        assert refused.status_code == 403
        refused = amy.post(
            "/admin/connections/stripe-test/enabled", data={"enabled": "false", "_csrf_token": token}
        )
        assert refused.status_code == 403
    rows = db_rows(stack, "SELECT enabled FROM connections WHERE name = ?", "stripe-test")
    assert [bool(row[0]) for row in rows] == [True]


def test_an_admin_disables_and_enables_a_connection(stack: Stack) -> None:
    stack.connect("adyen")
    with admin(stack) as ada:
        page = ada.get("/gateways")
        assert "Disable" in page.text
        token = csrf(page.text)
        off = ada.post(
            "/admin/connections/adyen-test/enabled", data={"enabled": "false", "_csrf_token": token}
        )
        assert off.status_code == 303, off.text[:300]
        assert [
            bool(r[0]) for r in db_rows(stack, "SELECT enabled FROM connections WHERE name = ?", "adyen-test")
        ] == [False]
        bad = ada.post(
            "/admin/connections/adyen-test/enabled", data={"enabled": "maybe", "_csrf_token": token}
        )
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_request")
        on = ada.post("/admin/connections/adyen-test/enabled", data={"enabled": "true", "_csrf_token": token})
        assert on.status_code == 303
    assert [
        bool(r[0]) for r in db_rows(stack, "SELECT enabled FROM connections WHERE name = ?", "adyen-test")
    ] == [True]
    assert len(audited(stack, "admin:connection:disable", "adyen-test")) == 1
    assert len(audited(stack, "admin:connection:enable", "adyen-test")) == 1


def credentials_blob(stack: Stack, name: str) -> str:
    ((blob,),) = db_rows(stack, "SELECT credentials_encrypted FROM connections WHERE name = ?", name)
    return str(blob)


def test_settings_change_at_once_and_a_new_secret_waits_for_a_second_admin(stack: Stack) -> None:
    stack.connect("adyen")
    assert stack.idp is not None
    stack.idp.add_user("eve-admin", groups=["refundwatch-admins"])
    page = "/admin/connections/adyen-test"
    with admin(stack) as ada:
        form = ada.get(page)
        assert form.status_code == 200, form.text[:300]
        token = csrf(form.text)
        saved = ada.post(
            f"{page}/settings",
            data={
                "_csrf_token": token,
                "timeout_seconds": "3",
                "option:live_prefix": "1797a841fbb37ca7-Acme",
            },
        )
        assert saved.status_code == 200, saved.text[:500]
        assert "Saved: live_prefix, timeout_seconds." in saved.text
        # The job timeout in this stack is 5 s: a call timeout of 5 would be killed mid-call.
        refused = ada.post(f"{page}/settings", data={"_csrf_token": token, "timeout_seconds": "5"})
        assert refused.status_code == 422
        assert "must be below the worker" in refused.text
        before = credentials_blob(stack, "adyen-test")
        asked = ada.post(
            f"{page}/credentials", data={"_csrf_token": token, "secret:api_key": "AQEnew-key-123"}
        )
        assert asked.status_code == 200, asked.text[:500]
        assert "AQEnew-key-123" not in asked.text
        assert "another admin must decide" in asked.text  # not for the one who asked
        assert credentials_blob(stack, "adyen-test") == before  # nothing applied yet
        ((change_id,),) = db_rows(
            stack, "SELECT id FROM connection_changes WHERE status = ? AND fields = ?", "pending", "api_key"
        )
        change = str(uuid.UUID(bytes=change_id) if isinstance(change_id, bytes) else change_id)
        self_approved = ada.post(
            f"/admin/connection-changes/{change}/approve",
            data={"_csrf_token": token, "connection": "adyen-test"},
        )
        assert self_approved.status_code == 403
        assert credentials_blob(stack, "adyen-test") == before
    rows = db_rows(stack, "SELECT timeout_seconds FROM connections WHERE name = ?", "adyen-test")
    assert rows == [(3,)]
    ((_actor, details),) = audited(stack, "admin:connection:update", "adyen-test")
    assert "timeout_seconds" in details
    assert "1797a841fbb37ca7-Acme" in details  # not a secret: old and new values are kept

    with contextlib.closing(stack.sign_in("eve-admin")) as eve:
        token = csrf(eve.get(page).text)
        approved = eve.post(
            f"/admin/connection-changes/{change}/approve",
            data={"_csrf_token": token, "connection": "adyen-test"},
        )
        assert approved.status_code == 303, approved.text[:500]
        again = eve.post(
            f"/admin/connection-changes/{change}/approve",
            data={"_csrf_token": token, "connection": "adyen-test"},
        )
        assert again.status_code == 409
    assert credentials_blob(stack, "adyen-test") != before
    requested = audited(stack, "admin:connection:credentials_requested", "adyen-test")
    approved_entries = audited(stack, "admin:connection:credentials_approved", "adyen-test")
    assert len(requested) == 1
    assert len(approved_entries) == 1
    assert "eve" in approved_entries[0][0]
    for _, details in requested + approved_entries:
        assert "AQEnew-key-123" not in details

    # Put the simulator's key back (approved by the other admin), and see a rejection need a reason.
    with admin(stack) as ada:
        token = csrf(ada.get(page).text)
        ada.post(
            f"{page}/credentials",
            data={"_csrf_token": token, "secret:api_key": "AQEadyen_refundwatch_tests_key"},
        )
    pending = db_rows(stack, "SELECT id FROM connection_changes WHERE status = ?", "pending")
    ids = [str(uuid.UUID(bytes=r[0]) if isinstance(r[0], bytes) else r[0]) for r in pending]
    with contextlib.closing(stack.sign_in("eve-admin")) as eve:
        token = csrf(eve.get(page).text)
        no_reason = eve.post(
            f"/admin/connection-changes/{ids[0]}/reject",
            data={"_csrf_token": token, "connection": "adyen-test"},
        )
        assert no_reason.status_code == 422
        assert (
            eve.post(
                f"/admin/connection-changes/{ids[0]}/approve",
                data={"_csrf_token": token, "connection": "adyen-test"},
            ).status_code
            == 303
        )


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9\u2070", "99999999999999999999999", "9" * 5000])
def test_a_setting_that_is_not_a_plain_number_is_refused_not_a_500(stack: Stack, value: str) -> None:
    """isdigit() takes superscript digits ("²") that int() refuses: that was a 500."""
    page = "/admin/connections/stripe-test"
    with admin(stack) as ada:
        token = csrf(ada.get(page).text)
        refused = ada.post(f"{page}/settings", data={"_csrf_token": token, "timeout_seconds": value})
    assert refused.status_code == 422, refused.text[:300]
    assert "must be a whole number" in refused.text


@pytest.mark.parametrize("before", ["\u00b2", "99999999999999999999999"])
def test_an_alerts_cursor_that_is_not_an_alert_number_is_refused_not_a_500(stack: Stack, before: str) -> None:
    with admin(stack) as ada:
        page = ada.get("/admin/alerts", params={"before": before})
    assert page.status_code == 422, page.text[:300]


def test_a_new_secret_the_connections_file_would_refuse_is_refused_when_asked(stack: Stack) -> None:
    """A credential asked for on the screen is checked as `connections import` checks the file: a key
    that cannot go into a request header, or an Adyen hmac_key that is not hex, is refused at once,
    naming the field and never the value, and no change waits for a second admin to apply it (applied,
    every refund on the connection would fail or wait in manual review)."""
    stack.connect("adyen")
    page = "/admin/connections/adyen-test"
    before = db_rows(stack, "SELECT COUNT(*) FROM connection_changes")
    with admin(stack) as ada:
        token = csrf(ada.get(page).text)
        for field, value in (
            ("api_key", "AQEkey with-a-space"),
            ("api_key", "AQEkey\x00nul"),
            ("hmac_key", "not-hex-at-all"),
        ):
            asked = ada.post(f"{page}/credentials", data={"_csrf_token": token, f"secret:{field}": value})
            assert asked.status_code == 422, (field, asked.status_code, asked.text[:300])
            assert f"{field} must be" in asked.text
            assert value not in asked.text
        # A good value still goes to a second admin.
        fine = ada.post(f"{page}/credentials", data={"_csrf_token": token, "secret:hmac_key": "00ff" * 16})
        assert fine.status_code == 200, fine.text[:300]
    ((count_before,),), ((count_after,),) = before, db_rows(stack, "SELECT COUNT(*) FROM connection_changes")
    assert count_after == count_before + 1
