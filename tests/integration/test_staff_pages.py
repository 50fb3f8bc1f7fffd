"""Staff screens against the real identity provider: each role's work, four eyes, and the refusals."""

from __future__ import annotations

import contextlib
import re
import uuid

import httpx2
import pytest

from refundwatch.lib.money import to_decimal_string
from stack import Stack, db_rows, wait_until

THRESHOLD = 50_000  # the default REFUNDWATCH_APPROVAL_THRESHOLD (minor units)


def signed_in(stack: Stack, user: str) -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in(user))


def csrf(page: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def post_form(
    client: httpx2.Client, path: str, fields: dict[str, str], *, page: str = "/refunds"
) -> httpx2.Response:
    token = csrf(client.get(page).text)
    return client.post(path, data={**fields, "_csrf_token": token})


def create_via_form(
    client: httpx2.Client, reference: str, amount: int, currency: str = "EUR", **extra: str
) -> httpx2.Response:
    """The form as a person fills it: ``amount`` (minor units) typed in major units."""
    page = client.get("/refunds/new", params={"q": reference})
    assert page.status_code == 200, page.text[:300]
    key = re.search(r'name="form_key" value="([^"]+)"', page.text)
    assert key
    fields = {
        "payment_reference": reference,
        "amount": to_decimal_string(amount, currency),
        "currency": currency,
        "reason": "return",
        "form_key": key.group(1),
        "_csrf_token": csrf(page.text),
        **extra,
    }
    return client.post("/refunds/new", data=fields)


def typed_inline(
    client: httpx2.Client, reference: str, *, amount: str, reason: str = "return"
) -> httpx2.Response:
    """The form sent through htmx with ``amount`` typed as it is: errors come back swapped in place."""
    fields = {"payment_reference": reference, "amount": amount, "currency": "EUR", "reason": reason}
    fields["_csrf_token"] = csrf(client.get("/refunds/new").text)
    return client.post("/refunds/new", data=fields, headers={"HX-Request": "true"})


def refund_id_from(response: httpx2.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response.headers["location"].rsplit("/", 1)[1]


def test_initiator_creates_and_the_payment_shows_what_is_refundable(stack: Stack) -> None:
    reference = stack.payment(10_000)
    with signed_in(stack, "ivan-initiator") as ivan:
        page = ivan.get("/refunds/new", params={"q": reference})
        assert "Still refundable" in page.text
        assert "100.00 EUR" in page.text
        refund_id = refund_id_from(create_via_form(ivan, reference, 2_500, note="box damaged"))
        detail = ivan.get(f"/refunds/{refund_id}")
        assert detail.status_code == 200
        assert "box damaged" in detail.text
    final = wait_until(lambda: stack.get(refund_id)["status"] == "succeeded", timeout=30, what="executed")
    assert final
    (created_by,) = db_rows(stack, "SELECT created_by FROM refunds WHERE id = ?", _id(stack, refund_id))[0]
    assert created_by.startswith("user:")


def _id(stack: Stack, refund_id: str) -> object:
    return refund_id if stack.backend == "postgresql" else uuid.UUID(refund_id).bytes


def test_form_errors_come_back_inline_from_the_same_rules_as_the_api(stack: Stack) -> None:
    reference = stack.payment(1_000)
    with signed_in(stack, "ivan-initiator") as ivan:
        too_much = create_via_form(ivan, reference, 5_000)
        assert too_much.status_code == 422
        assert 'data-code="amount_exceeds_refundable"' in too_much.text
        # In the form's terms: what is left, in the currency (it said "amount 5000 exceeds ...").
        assert "(50.00 EUR) exceeds the 1000 (10.00 EUR) still refundable" in too_much.text
        htmx = create_via_form(ivan, reference, 5_000, **{})  # same, through htmx: swapped in place (200)
        assert htmx.status_code == 422
        inline = typed_inline(ivan, reference, amount="0")
        assert inline.status_code == 200
        assert 'data-code="invalid_amount"' in inline.text
        assert "type an amount above 0, like 600.00" in inline.text  # not the API's "JSON integer"
        assert "JSON" not in inline.text
        no_reason = typed_inline(ivan, reference, amount="1.00", reason="")
        assert "reason: choose one of requested_by_customer" in no_reason.text  # not "Invalid enum value"


def test_a_form_sent_again_with_other_values_says_so_in_the_forms_terms(stack: Stack) -> None:
    """The form's key makes a double submit one refund. The same form sent again with another amount
    (back to a form already sent, changed, sent) was refused in the API's words, "this
    Idempotency-Key was already used with a different request body", and the form came back with the
    same key, so every further try was refused the same way."""
    reference = stack.payment(10_000)
    with signed_in(stack, "ivan-initiator") as ivan:
        page = ivan.get("/refunds/new", params={"q": reference})
        fields = {
            "payment_reference": reference,
            "amount": "25.00",
            "currency": "EUR",
            "reason": "return",
            "form_key": re.search(r'name="form_key" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
            "_csrf_token": csrf(page.text),
        }
        first = refund_id_from(ivan.post("/refunds/new", data=fields))
        assert refund_id_from(ivan.post("/refunds/new", data=fields)) == first  # a double submit
        changed = ivan.post("/refunds/new", data={**fields, "amount": "30.00"})
        assert changed.status_code == 422, changed.text[:300]
        assert 'data-code="idempotency_key_reused"' in changed.text
        assert "Idempotency-Key" not in changed.text
        assert "already sent" in changed.text
        assert f"/refunds/{first}" in changed.text  # where the first one is
        fresh = re.search(r'name="form_key" value="([^"]+)"', changed.text)
        assert fresh
        assert fresh.group(1) != fields["form_key"]
        # Sent again as it now stands, it is a new refund: the person saw the first one and chose.
        second = refund_id_from(
            ivan.post("/refunds/new", data={**fields, "amount": "30.00", "form_key": fresh.group(1)})
        )
        assert second != first
        assert stack.get(second)["amount"] == 3_000


def test_four_eyes_over_the_threshold(stack: Stack) -> None:
    reference = stack.payment(THRESHOLD * 2)
    with signed_in(stack, "amy-approver") as amy, signed_in(stack, "bob-approver") as bob:
        refund_id = refund_id_from(create_via_form(amy, reference, THRESHOLD))
        assert stack.get(refund_id)["status"] == "pending_approval"
        # Amy may not approve her own refund: not offered, and refused when forced.
        assert f"/refunds/{refund_id}/approve" not in amy.get(f"/refunds/{refund_id}").text
        forced = post_form(amy, f"/refunds/{refund_id}/approve", {})
        assert forced.status_code == 403
        assert "second person" in forced.text
        assert stack.get(refund_id)["status"] == "pending_approval"
        # Audited as every denied access is (it left no trace).
        denied = db_rows(
            stack, "SELECT actor_id, details FROM audit_log WHERE action = ? AND target_id = ?",
            "user:access:denied", refund_id,
        )  # fmt: skip
        ((who, details),) = denied
        assert who.startswith("amy-approver@"), denied
        assert "self_approval" in str(details), denied
        assert "approve" in str(details), denied
        # Bob sees it in his queue and approves it: it is executed.
        assert refund_id in bob.get("/approvals").text
        approved = post_form(bob, f"/refunds/{refund_id}/approve", {"reason": "checked the RMA"})
        assert approved.status_code == 303
    wait_until(lambda: stack.get(refund_id)["status"] == "succeeded", timeout=30, what="approved refund runs")
    actions = [r[0] for r in db_rows(stack, "SELECT action FROM audit_log WHERE target_id = ?", refund_id)]
    assert "user:refund:transition" in actions


def test_reject_needs_a_reason_and_releases_the_amount(stack: Stack) -> None:
    reference = stack.payment(THRESHOLD)
    with signed_in(stack, "amy-approver") as amy, signed_in(stack, "bob-approver") as bob:
        refund_id = refund_id_from(create_via_form(amy, reference, THRESHOLD))
        no_reason = post_form(bob, f"/refunds/{refund_id}/reject", {})
        assert no_reason.status_code == 422
        assert post_form(bob, f"/refunds/{refund_id}/reject", {"reason": "not a return"}).status_code == 303
    refund = stack.get(refund_id)
    assert refund["status"] == "rejected"
    assert "not a return" in refund["events"][-1]["detail"]


def test_a_nul_character_in_a_form_is_refused_on_the_page(stack: Stack) -> None:
    """PostgreSQL cannot store NUL: the form said so as a bare JSON answer (the database's safety net),
    SQLite stored it. Both now refuse it on the page, with the form, before anything is written."""
    reference = stack.payment(THRESHOLD)
    with signed_in(stack, "amy-approver") as amy, signed_in(stack, "bob-approver") as bob:
        for field in ("note", "payment_reference", "form_key"):
            refused = create_via_form(amy, reference, 1_000, **{field: "a\x00b"})
            assert refused.status_code == 422, (field, refused.text[:300])
            assert refused.headers["content-type"].startswith("text/html"), field
            assert "NUL" in refused.text, field
        refund_id = refund_id_from(create_via_form(amy, reference, THRESHOLD))
        for action in ("reject", "approve"):
            refused = post_form(bob, f"/refunds/{refund_id}/{action}", {"reason": "no\x00pe"})
            assert refused.status_code == 422, (action, refused.text[:300])
            assert refused.headers["content-type"].startswith("text/html"), action
            assert "NUL" in refused.text, action
        search = amy.get("/refunds/new", params={"q": "a\x00b"})
        assert search.status_code == 200, search.text[:300]
    assert stack.get(refund_id)["status"] == "pending_approval"
    rows = db_rows(stack, "SELECT count(*) FROM refunds WHERE payment_reference = ?", reference)
    assert rows == [(1,)]


def test_api_refund_over_the_threshold_waits_for_a_person(stack: Stack) -> None:
    reference = stack.payment(THRESHOLD)
    created = stack.refund(reference, THRESHOLD).json()
    assert created["status"] == "pending_approval"
    with signed_in(stack, "bob-approver") as bob:
        assert post_form(bob, f"/refunds/{created['id']}/approve", {}).status_code == 303
    wait_until(lambda: stack.get(created["id"])["status"] == "succeeded", timeout=30, what="executed")


@pytest.mark.parametrize(
    ("user", "path", "expected"),
    [
        ("alice-viewer", "/refunds", 200),
        ("alice-viewer", "/refunds/new", 403),
        ("alice-viewer", "/approvals", 403),
        ("alice-viewer", "/gateways", 403),
        ("ivan-initiator", "/refunds/new", 200),
        ("ivan-initiator", "/approvals", 403),
        ("ivan-initiator", "/audit", 403),
        ("amy-approver", "/approvals", 200),
        ("amy-approver", "/gateways", 403),
        ("ada-admin", "/gateways", 200),
        ("ada-admin", "/audit", 200),
        ("oscar-outsider", "/", 403),
    ],
)
def test_pages_by_role(stack: Stack, user: str, path: str, expected: int) -> None:
    with signed_in(stack, user) as client:
        assert client.get(path).status_code == expected


def test_initiator_amount_limit_and_viewer_cannot_act(stack: Stack) -> None:
    reference = stack.payment(THRESHOLD * 4)
    with signed_in(stack, "ivan-initiator") as ivan:
        over = create_via_form(ivan, reference, 100_001)  # default initiator limit: 100000
        assert over.status_code == 422
        assert "amount_over_role_limit" in over.text
    created = stack.refund(reference, 1_000).json()
    with signed_in(stack, "alice-viewer") as alice:
        token = csrf(alice.get("/refunds").text)
        refused = alice.post(f"/refunds/{created['id']}/cancel", data={"_csrf_token": token})
        assert refused.status_code == 403


ACTIONS = ("cancel", "retry", "approve", "reject", "close", "new")
ALLOWED = {
    "alice-viewer": set(),
    "ivan-initiator": {"cancel", "retry", "new"},
    "amy-approver": set(ACTIONS),
    "ada-admin": set(ACTIONS),
}


@pytest.mark.parametrize("user", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_role_action_matrix_for_everything_that_changes_state(stack: Stack, user: str, action: str) -> None:
    """Each state-changing staff route, for each role: refused with 403, or let through to the rules
    (which may still say no, e.g. 409 for a transition the refund's status does not allow)."""
    created = stack.refund(stack.payment(THRESHOLD), THRESHOLD).json()  # an API client's refund
    with signed_in(stack, user) as client:
        if action == "new":
            response = (
                create_via_form(client, stack.payment(1_000), 100)
                if action in ALLOWED[user]
                else (post_form(client, "/refunds/new", {"payment_reference": "x", "amount": "1"}))
            )
        else:
            response = post_form(client, f"/refunds/{created['id']}/{action}", {"reason": "matrix"})
    if action in ALLOWED[user]:
        assert response.status_code != 403, (user, action, response.text[:300])
    else:
        assert response.status_code == 403, (user, action, response.status_code)
        assert stack.get(created["id"])["status"] == "pending_approval"
