"""The admin screens for outgoing webhooks: register (the secret shown once), list, edit, disable and
enable, rotate, delete; an endpoint's deliveries and a delivery's attempts, re-sending one or every one
since a moment; a refund's deliveries on its page; refusals for other roles and for bad input.
A real receiver on 127.0.0.1 answers the running worker. One stack per backend for the module."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from refundwatch import demo_receiver
from refundwatch.audit.actions import Actor
from refundwatch.config import Settings
from refundwatch.outgoing import endpoints
from refundwatch.outgoing.endpoints import EndpointOut
from refundwatch.outgoing.events import EVENT_TYPES
from refundwatch.runtime import Runtime
from stack import Stack, db_rows, wait_until
from webhook_receiver import Receiver

pytestmark = pytest.mark.slow

LIST = "/admin/webhooks"
HOOK_ENV = {
    "REFUNDWATCH_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "REFUNDWATCH_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    "REFUNDWATCH_WEBHOOK_RETRY_MAX_SECONDS": "1",
    "REFUNDWATCH_WEBHOOK_SWEEP_SECONDS": "0.5",
}
SECRET = re.compile(r'<code id="new-secret" class="secret">(whsec_[^<]+)</code>')


@dataclass
class Hooks:
    stack: Stack
    receiver: Receiver


@pytest.fixture(scope="module")
def hooks(stack: Stack) -> Iterator[Hooks]:
    stack.restart_with(HOOK_ENV)
    receiver = Receiver()
    try:
        yield Hooks(stack, receiver)
    finally:
        receiver.close()


def signed_in(stack: Stack, user: str = "ada-admin") -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in(user))


def csrf(page: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def submit(
    client: httpx2.Client, path: str, fields: dict[str, str], page: str = LIST, **headers: str
) -> httpx2.Response:
    return client.post(path, data={**fields, "_csrf_token": csrf(client.get(page).text)}, headers=headers)


def register(client: httpx2.Client, url: str, *events: str, **extra: str) -> httpx2.Response:
    return submit(client, LIST, {"url": url, **{f"event:{e}": "on" for e in events}, **extra})


def registered(client: httpx2.Client, url: str, *events: str) -> tuple[str, str]:
    """(endpoint id, its secret) of an endpoint registered through the page."""
    answer = register(client, url, *events)
    assert answer.status_code == 200, answer.text[:1000]
    secret = SECRET.search(answer.text)
    link = re.search(r'<a href="/admin/webhooks/([0-9a-f-]{36})" id="created-link">', answer.text)
    assert secret, answer.text[:2000]
    assert link, answer.text[:2000]
    return link.group(1), secret.group(1)


def uuid_param(stack: Stack, value: str) -> Any:
    """A UUID as each backend's column holds it (SQLite: its 16 bytes)."""
    return uuid.UUID(value).bytes if stack.backend == "sqlite" else uuid.UUID(value)


def actions_on(stack: Stack, endpoint_id: str) -> list[str]:
    rows = db_rows(
        stack, "SELECT action, actor_id FROM audit_log WHERE target_id = ? ORDER BY id", endpoint_id
    )
    assert all("ada" in str(actor) for _, actor in rows), rows
    return [str(action) for action, _ in rows]


def test_register_shows_the_secret_once_and_refuses_bad_input(hooks: Hooks) -> None:
    stack, url = hooks.stack, hooks.receiver.url("/registered")
    with signed_in(stack) as ada:
        page = ada.get(LIST)
        assert page.status_code == 200, page.text[:300]
        assert page.headers["cache-control"] == "no-store"
        assert '<a href="/admin/webhooks">Webhooks</a>' in page.text  # in the admin navigation
        endpoint_id, secret = registered(ada, url, "refund.created", "refund.succeeded")
        listed = ada.get(LIST).text
        assert secret not in listed  # shown once, never again
        assert secret not in ada.get(f"{LIST}/{endpoint_id}").text
        assert url in listed
        assert "none yet" in listed  # no delivery so far

        for fields, message in (
            ({"url": url}, "Choose at least one event type."),
            ({"url": "https://10.1.2.3/hook", "event:refund.created": "on"}, "10.1.2.3"),
            ({"url": "ftp://example.com/x", "event:refund.created": "on"}, "ftp"),
            ({"url": url, "event:refund.created": "on", "connection": "nowhere"}, "nowhere"),
            ({"url": url, "event:refund.created": "on", "description": "x" * 501}, "description"),
        ):
            refused = submit(ada, LIST, fields)
            assert refused.status_code == 422, (fields, refused.status_code)
            assert 'id="form-error"' in refused.text
            assert message in refused.text, (message, refused.text[:3000])
            assert "new-secret" not in refused.text
            assert 'value="' + fields["url"] + '"' in refused.text  # what was typed stays
        # Under htmx the refusal is a 2xx (htmx swaps only those), with the same message.
        boosted = submit(ada, LIST, {"url": url}, **{"HX-Request": "true"})
        assert boosted.status_code == 200
        assert "Choose at least one event type." in boosted.text
    assert actions_on(stack, endpoint_id) == ["admin:webhook_endpoint:create"]


def test_edit_disable_enable_rotate_and_delete(hooks: Hooks) -> None:
    stack = hooks.stack
    with signed_in(stack) as ada:
        endpoint_id, secret = registered(ada, hooks.receiver.url("/edited"), "refund.created")
        page = f"{LIST}/{endpoint_id}"
        edit = {"url": hooks.receiver.url("/edited"), "event:refund.failed": "on", "description": "ops"}
        saved = submit(ada, page, {**edit, "event:gateway.down": "on"}, page=page)
        assert saved.status_code == 200, saved.text[:500]
        assert "Saved." in saved.text
        assert saved.headers["hx-push-url"] == page  # the address bar shows the page, not the action
        facts = ada.get(page).text
        assert "<code>refund.failed</code>, <code>gateway.down</code>" in facts
        assert "ops" in facts
        refused = submit(ada, page, {**edit, "url": "https://192.168.1.5/x"}, page=page)
        assert (refused.status_code, 'id="form-error"' in refused.text) == (422, True)

        off = submit(ada, f"{page}/enabled", {"enabled": "false", "reason": "receiver moving"}, page=page)
        assert off.status_code == 200
        assert "disabled by Ada" in off.text
        assert "receiver moving" in off.text
        assert "disabled" in ada.get(LIST).text
        bad = submit(ada, f"{page}/enabled", {"enabled": "maybe"}, page=page)
        assert (bad.status_code, "enabled must be true or false" in bad.text) == (422, True)
        on = submit(ada, f"{page}/enabled", {"enabled": "true"}, page=page)
        assert "Enabled" in on.text

        rotated = submit(ada, f"{page}/rotate-secret", {"overlap_hours": "2"}, page=page)
        assert rotated.status_code == 200, rotated.text[:500]
        new = SECRET.search(rotated.text)
        assert new
        assert new.group(1) != secret
        assert "also signs until" in rotated.text
        assert new.group(1) not in ada.get(page).text
        for overlap in ("soon", "-1", "1000"):
            refused = submit(ada, f"{page}/rotate-secret", {"overlap_hours": overlap}, page=page)
            assert refused.status_code == 422, overlap
            assert "overlap_hours" in refused.text
            assert "new-secret" not in refused.text

        unconfirmed = submit(ada, f"{page}/delete", {}, page=page)
        assert unconfirmed.status_code == 422
        assert "Tick the box" in unconfirmed.text
        deleted = submit(ada, f"{page}/delete", {"confirm": "yes"}, page=page)
        assert deleted.status_code == 200
        assert "Deleted" in deleted.text
        assert ada.get(page).status_code == 404
    verbs = [a.rsplit(":", 1)[1] for a in actions_on(stack, endpoint_id)]
    assert verbs == ["create", "update", "disable", "enable", "rotate_secret", "delete"]


def test_deliveries_attempts_and_resending(hooks: Hooks) -> None:
    stack, path = hooks.stack, "/history"
    with signed_in(stack) as ada:
        endpoint_id, secret = registered(ada, hooks.receiver.url(path), "refund.created", "refund.succeeded")
    hooks.receiver.plan(path, 500)
    refund = stack.refund(stack.payment(10_000), 1_000)
    assert refund.status_code == 201, refund.text
    refund_id = refund.json()["id"]
    stack.wait_status(refund_id, "succeeded")
    query = "SELECT id, status FROM webhook_deliveries WHERE refund_id = ? AND endpoint_id = ? ORDER BY id"
    ids = [uuid_param(stack, refund_id), uuid_param(stack, endpoint_id)]
    rows = wait_until(
        lambda: (r := db_rows(stack, query, *ids)) and [s for _, s in r] == ["succeeded"] * 2 and r,
        timeout=30,
        what="both deliveries to succeed",
    )
    created, succeeded = (int(r[0]) for r in rows)
    page = f"{LIST}/{endpoint_id}"
    with signed_in(stack) as ada:
        listing = ada.get(page).text
        assert listing.index(f'id="delivery-{succeeded}"') < listing.index(f'id="delivery-{created}"')
        assert f'href="/refunds/{refund_id}"' in listing
        assert "Delivered" in listing
        assert "No deliveries" in ada.get(page, params={"before": str(created)}).text
        assert f'id="delivery-{created}"' not in ada.get(page, params={"status": "pending"}).text
        assert "refund.succeeded" in ada.get(LIST).text  # the newest delivery, on the list

        one = ada.get(f"{page}/deliveries/{created}")
        assert one.status_code == 200, one.text[:500]
        attempts = one.text[one.text.index('id="attempts"') :]
        assert attempts.index(">500<") < attempts.index(">200<")  # oldest first
        assert '<pre class="excerpt">ok</pre>' in attempts  # the receiver's answer, kept
        assert refund_id in one.text[one.text.index('id="delivery-body"') :]
        assert secret not in one.text
        assert ada.get(f"{LIST}/{uuid.uuid4()}/deliveries/{created}").status_code == 404

        again = submit(ada, f"{page}/deliveries/{created}/resend", {}, page=page)
        assert again.status_code == 200, again.text[:500]
        assert "sent again" in again.text
        message = f"msg_{created}"
        wait_until(
            lambda: sum(r.message_id == message for r in hooks.receiver.delivered(path)) >= 2,
            timeout=30,
            what="the re-sent delivery",
        )
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%MZ")
        resent = submit(ada, f"{page}/resend-since", {"since": since}, page=page)
        assert resent.status_code == 200
        assert "2 deliveries will be sent again." in resent.text
        for bad in ("yesterday", ""):
            refused = submit(ada, f"{page}/resend-since", {"since": bad}, page=page)
            assert (refused.status_code, "since: give a date and time" in refused.text) == (422, True)
        shown = ada.get(f"/refunds/{refund_id}").text
        assert f'href="/admin/webhooks/{endpoint_id}"' in shown
    for request in hooks.receiver.delivered(path):
        request.verified(secret)
    with signed_in(stack, "alice-viewer") as alice:  # a viewer sees the deliveries, not the admin links
        shown = alice.get(f"/refunds/{refund_id}").text
        section = shown[shown.index('id="refund-deliveries"') :]
        assert f"127.0.0.1:{hooks.receiver.port}" in section
        assert "refund.succeeded" in section
        assert "refund.created" in section
        assert "/admin/webhooks" not in shown
        fragment = alice.get(f"/refunds/{refund_id}/deliveries")
        assert fragment.status_code == 200
        assert fragment.text.lstrip().startswith('<section class="refund-deliveries" id="refund-deliveries"')
    verbs = [a.rsplit(":", 1)[1] for a in actions_on(stack, endpoint_id)]
    assert verbs == ["create", "resend", "resend"]


def test_only_admins_manage_webhooks(hooks: Hooks) -> None:
    stack = hooks.stack
    with signed_in(stack) as ada:
        endpoint_id, _ = registered(ada, hooks.receiver.url("/guarded"), "refund.created")
    with signed_in(stack, "amy-approver") as amy:
        assert amy.get(LIST).status_code == 403
        assert amy.get(f"{LIST}/{endpoint_id}").status_code == 403
        assert '<a href="/admin/webhooks">' not in amy.get("/refunds").text
        token = csrf(amy.get("/refunds").text)
        for path, fields in (
            (LIST, {"url": hooks.receiver.url("/x"), "event:refund.created": "on"}),
            (f"{LIST}/{endpoint_id}/enabled", {"enabled": "false"}),
            (f"{LIST}/{endpoint_id}/rotate-secret", {"overlap_hours": "0"}),
            (f"{LIST}/{endpoint_id}/delete", {"confirm": "yes"}),
            (f"{LIST}/{endpoint_id}/resend-since", {"since": "2026-01-01T00:00Z"}),
        ):
            assert amy.post(path, data={**fields, "_csrf_token": token}).status_code == 403, path
    assert actions_on(stack, endpoint_id) == ["admin:webhook_endpoint:create"]
    enabled = db_rows(
        stack, "SELECT enabled FROM webhook_endpoints WHERE url = ?", hooks.receiver.url("/guarded")
    )
    assert [bool(r[0]) for r in enabled] == [True]


def test_a_page_cursor_that_is_not_a_number_shows_the_newest_deliveries(hooks: Hooks) -> None:
    """``?before=²``: isdigit() takes a superscript digit that int() refuses (it was a 500)."""
    with signed_in(hooks.stack) as ada:
        endpoint_id, _ = registered(ada, hooks.receiver.url("/cursor"), "refund.created")
        for before in ("\u00b2", "99999999999999999999999", "-1", "abc"):
            page = ada.get(f"{LIST}/{endpoint_id}", params={"before": before})
            assert page.status_code == 200, (before, page.text[:300])


def test_the_demo_registers_its_receiver_once(hooks: Hooks) -> None:
    """A database kept from an earlier demo has the receiver's endpoint: it is pointed at this run's
    receiver with a new secret, not registered twice."""
    stack, actor = hooks.stack, Actor("system", "demo")

    async def register_twice() -> tuple[str, str, list[EndpointOut]]:
        settings = Settings(
            mode="test",
            database_url=stack.database_url,
            redis_url=stack.redis_url,
            webhook_allowed_hosts="127.0.0.1",
        )
        rt = await Runtime.build(settings).open(redis=False, http=False)
        try:
            first = await demo_receiver.register(rt, hooks.receiver.url("/demo-1"), actor)
            second = await demo_receiver.register(rt, hooks.receiver.url("/demo-2"), actor)
            ours = [
                e for e in await endpoints.list_endpoints(rt) if e.description == demo_receiver.DESCRIPTION
            ]
            return first, second, ours
        finally:
            await rt.close()

    first, second, ours = asyncio.run(register_twice())
    assert first.startswith("whsec_")
    assert second != first
    (endpoint,) = ours
    assert endpoint.url == hooks.receiver.url("/demo-2")
    assert endpoint.events == list(EVENT_TYPES)
    assert endpoint.enabled
