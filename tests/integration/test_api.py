"""The HTTP API (CONTRACT §4 and §5 operations) against the real web server, worker and simulator."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import socket
import string
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from _services import TEST_REDIS_DB, free_port
from stack import Proc, Stack, wait_http, wait_until

REFUND_FIELDS = {
    "id",
    "status",
    "amount",
    "currency",
    "payment_reference",
    "connection",
    "reason",
    "gateway_refund_id",
    "attempts",
    "created_at",
    "updated_at",
    "events",
}
EVENT_FIELDS = {"at", "status", "source", "detail"}
STATUSES = {
    "pending_approval",
    "rejected",
    "queued",
    "submitting",
    "processing",
    "succeeded",
    "failed",
    "canceled",
    "reversed",
    "manual_review",
}


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def keys(stack: Stack) -> dict[str, str]:
    """Extra API keys: a read-only one and a second writing client (its own idempotency scope)."""
    read = stack.cli("apikeys", "create", "--name", "reader", "--scopes", "refunds:read").stdout.strip()
    other = stack.cli(
        "apikeys", "create", "--name", "other-client", "--scopes", "refunds:read,refunds:write"
    ).stdout.strip()
    assert read.startswith("rw_")
    assert other.startswith("rw_")
    return {"read": read, "other": other}


@pytest.fixture(autouse=True)
def _no_faults(stack: Stack) -> None:
    stack.faults()


def payment_body(**over: Any) -> dict[str, Any]:
    body = {
        "connection": "stripe-test",
        "payment_reference": f"pi_{uuid.uuid4().hex[:20]}",
        "amount": 10_000,
        "currency": "EUR",
        "captured_at": "2026-11-01T10:00:00Z",
    }
    body.update(over)
    return body


def refund_body(reference: str, amount: int = 1_000, **over: Any) -> dict[str, Any]:
    return {"payment_reference": reference, "amount": amount, "currency": "EUR", "reason": "return", **over}


def post_refund(
    stack: Stack, body: Any, *, key: str | None = None, api_key: str | None = None, **kwargs: Any
) -> httpx2.Response:
    with stack.api(api_key) as client:
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        if isinstance(body, (bytes, str)):
            return client.post(
                "/api/v1/refunds",
                content=body,
                headers={**headers, "Content-Type": "application/json"},
                **kwargs,
            )
        return client.post("/api/v1/refunds", json=body, headers=headers, **kwargs)


def error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body.get("message"), str), body
    assert body["message"], body
    return body


def list_all(stack: Stack, **params: Any) -> list[dict[str, Any]]:
    """Every refund matching the filters, walking the cursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    with stack.api() as client:
        for _ in range(1000):
            query = {**params, **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/refunds", params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            out.extend(page["data"])
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                return out
    raise AssertionError("pagination never ended")


# --------------------------------------------------------------------------------------------- payments


def test_payment_created_then_replayed_then_conflict(stack: Stack) -> None:
    body = payment_body(order_id="ord-1")
    with stack.api() as client:
        first = client.post("/api/v1/payments", json=body)
        assert first.status_code == 201, first.text
        created = first.json()
        assert created["payment_reference"] == body["payment_reference"]
        assert created["amount"] == 10_000
        assert created["currency"] == "EUR"
        assert created["connection"] == "stripe-test"
        assert created["refundable_amount"] == 10_000
        assert created["refunded_amount"] == 0

        again = client.post("/api/v1/payments", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == created["id"]
        # As a replayed refund says, and as the OpenAPI document's 200 for this operation promises.
        assert again.headers.get("idempotent-replayed") == "true", dict(again.headers)
        assert "idempotent-replayed" not in first.headers
        # The currency is case-insensitive on the way in: still the same payment.
        lower = client.post("/api/v1/payments", json={**body, "currency": "eur"})
        assert lower.status_code == 200, lower.text
        assert lower.json()["id"] == created["id"]

        for change in (
            {"amount": 9_999},
            {"currency": "USD"},
            {"order_id": "ord-2"},
            {"captured_at": "2026-11-02T10:00:00Z"},
        ):
            error(client.post("/api/v1/payments", json={**body, **change}), 409, "payment_conflict")


def test_a_payment_registered_with_an_offset_reads_back_the_same_in_every_answer(stack: Stack) -> None:
    """The 201 answer echoed captured_at with the offset it was sent with (+14:00), while the replay,
    GET /api/v1/payments/{reference} and every later read gave the stored UTC time: one payment, two
    texts for its capture time, depending on which answer a client kept."""
    body = payment_body(captured_at="2026-11-01T10:00:00+14:00")
    with stack.api() as client:
        first = client.post("/api/v1/payments", json=body)
        assert first.status_code == 201, first.text
        again = client.post("/api/v1/payments", json=body)
        read = client.get(f"/api/v1/payments/{body['payment_reference']}")
    assert first.json()["captured_at"] == "2026-10-31T20:00:00Z", first.json()
    assert again.json()["captured_at"] == read.json()["captured_at"] == "2026-10-31T20:00:00Z"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"connection": "no-such-connection"}, "unknown_connection", id="unknown-connection"),
        pytest.param({"currency": "XYZ"}, "invalid_currency", id="currency-XYZ"),
        pytest.param({"currency": "EURO"}, "invalid_currency", id="currency-EURO"),
        pytest.param({"currency": ""}, "invalid_currency", id="currency-empty"),
        pytest.param({"amount": 0}, "invalid_amount", id="amount-0"),
        pytest.param({"amount": -100}, "invalid_amount", id="amount-negative"),
        pytest.param({"amount": 10**16}, "invalid_amount", id="amount-huge"),
        pytest.param({"amount": "100"}, "invalid_amount", id="amount-string"),
        pytest.param({"amount": 12.5}, "invalid_amount", id="amount-float"),
        pytest.param({"amount": True}, "invalid_amount", id="amount-bool"),
        pytest.param({"amount": None}, "invalid_amount", id="amount-null"),
        pytest.param({"captured_at": "yesterday"}, "validation_error", id="captured-at-garbage"),
        pytest.param({"payment_reference": ""}, "validation_error", id="reference-empty"),
        pytest.param({"payment_reference": "x" * 256}, "validation_error", id="reference-too-long"),
        # It could be registered and refunded, but never read back at /api/v1/payments/{reference}.
        pytest.param({"payment_reference": "pi_a/b"}, "validation_error", id="reference-with-slash"),
        pytest.param({"surprise": 1}, "validation_error", id="unknown-field"),
        # Beyond what the databases store once in UTC: the insert raised OverflowError, a 500.
        pytest.param(
            {"captured_at": "0001-01-01T00:00:00+01:00"}, "validation_error", id="captured-at-year-1"
        ),
        pytest.param({"captured_at": "9999-12-31T23:59:59-01:00"}, "validation_error", id="captured-at-9999"),
        # Control characters in identifiers were stored (ANSI escapes reached logs and tables).
        pytest.param({"payment_reference": "pi_\x1b[31mred"}, "validation_error", id="reference-escape"),
        pytest.param({"order_id": "ord\n1"}, "validation_error", id="order-newline"),
        pytest.param({"invoice_id": "inv\x7f"}, "validation_error", id="invoice-delete"),
    ],
)
def test_payment_bad_input_is_422(stack: Stack, change: dict[str, Any], code: str) -> None:
    with stack.api() as client:
        error(client.post("/api/v1/payments", json=payment_body(**change)), 422, code)


def test_a_body_too_large_is_413_with_the_code_the_schema_names(stack: Stack) -> None:
    """The answer said ``request_too_large`` while the README and the OpenAPI document said
    ``http_error``: a client written from the document did not know the code it got."""
    documented = httpx2.get(f"{stack.web_url}/schema/openapi.json").json()["paths"]
    with stack.api() as client:
        for path in ("/api/v1/payments", "/api/v1/refunds"):
            response = client.post(
                path, content=b'{"metadata": "' + b"x" * 300_000 + b'"}', headers={"Idempotency-Key": "big"}
            )
            error(response, 413, "request_too_large")
            answer = documented[path]["post"]["responses"]["413"]
            assert "request_too_large" in json.dumps(answer), answer


def test_an_empty_body_says_it_is_empty(stack: Stack) -> None:
    """Litestar's words for a missing body were its KeyError's, "'data'"."""
    with stack.api() as client:
        for path in ("/api/v1/payments", "/api/v1/refunds"):
            body = error(client.post(path, headers={"Idempotency-Key": "empty"}), 422, "validation_error")
            assert body["message"].endswith("the request body is empty"), body
            assert body["errors"][0]["message"] == "a JSON object is required as the request body", body


@pytest.mark.parametrize("value", [20261101, 1.5, "1700000000", "0"])
def test_payment_captured_at_as_a_number_is_422_not_a_unix_time(stack: Stack, value: Any) -> None:
    """The body was decoded leniently: captured_at 20261101 (a date typed as a number) was taken as
    Unix seconds and stored as 1970-08-24, "0" as 1970-01-01; only an RFC 3339 text is a time."""
    with stack.api() as client:
        body = error(
            client.post("/api/v1/payments", json=payment_body(captured_at=value)), 422, "validation_error"
        )
    assert "captured_at" in body["message"], body


def test_payment_missing_field_is_422(stack: Stack) -> None:
    body = payment_body()
    del body["captured_at"]
    with stack.api() as client:
        error(client.post("/api/v1/payments", json=body), 422, "validation_error")


@pytest.mark.parametrize("field", ["order_id", "invoice_id"])
def test_payment_overlong_order_or_invoice_id_is_422(stack: Stack, field: str) -> None:
    with stack.api() as client:
        response = client.post("/api/v1/payments", json=payment_body(**{field: "o" * 300}))
    error(response, 422, "validation_error")


@pytest.mark.parametrize("field", ["order_id", "invoice_id"])
def test_an_empty_order_or_invoice_id_is_no_id(stack: Stack, field: str) -> None:
    """An empty id is no id, as in `payments import` (an empty column) and as a refund keeps it. A
    payment registered with "" kept it: the same payment from the CSV file, or again without the
    field, was a 409 payment_conflict, and every refund naming its real order or invoice a 422
    reference_mismatch "does not match the payment's ''". A refund sending "" for a payment with
    an id was refused the same way."""
    reference = stack.payment(10_000, **{field: ""})
    with stack.api() as client:
        shown = client.get(f"/api/v1/payments/{reference}").json()
        assert shown[field] is None, shown
        again = client.post("/api/v1/payments", json=payment_body(payment_reference=reference))
        assert again.status_code == 200, again.text
    named = post_refund(stack, refund_body(reference, 100, **{field: "A-1"}))
    assert named.status_code == 201, named.text
    assert named.json()[field] == "A-1"

    with_id = stack.payment(10_000, **{field: "B-1"})
    blank = post_refund(stack, refund_body(with_id, 100, **{field: ""}))
    assert blank.status_code == 201, blank.text
    assert blank.json()[field] == "B-1"  # the payment's, as when the field is left out


# --------------------------------------------------------------------------------------------- refund intake


def test_refund_201_carries_every_contract_field(stack: Stack) -> None:
    reference = stack.payment(10_000)
    response = post_refund(stack, refund_body(reference, 2_500, order_id="o-77", metadata={"rma": "R-1"}))
    assert response.status_code == 201, response.text
    assert "Idempotent-Replayed" not in response.headers
    refund = response.json()
    assert set(refund) >= REFUND_FIELDS, REFUND_FIELDS - set(refund)
    uuid.UUID(refund["id"])
    assert refund["status"] in STATUSES
    assert refund["amount"] == 2_500
    assert refund["currency"] == "EUR"
    assert refund["payment_reference"] == reference
    assert refund["connection"] == "stripe-test"
    assert refund["reason"] == "return"
    assert refund["attempts"] >= 0
    assert refund["created_at"]
    assert refund["updated_at"]
    assert refund["events"], refund
    for event in refund["events"]:
        assert set(event) >= EVENT_FIELDS, event
    assert refund["events"][0]["status"] == "queued"
    assert refund["events"][0]["source"] == "api"

    done = stack.wait_status(refund["id"], "succeeded")
    assert done["gateway_refund_id"]
    assert done["attempts"] >= 1
    assert [e["status"] for e in done["events"]][-1] == "succeeded"
    assert {"queued", "submitting", "succeeded"} <= {e["status"] for e in done["events"]}


def test_same_key_same_body_replays_without_creating_anything(stack: Stack) -> None:
    reference = stack.payment(10_000)
    key = f"replay-{uuid.uuid4().hex}"
    body = refund_body(reference, 1_200)
    first = post_refund(stack, body, key=key)
    assert first.status_code == 201, first.text
    before = list_all(stack, payment_reference=reference)
    assert len(before) == 1

    for _ in range(3):
        again = post_refund(stack, body, key=key)
        assert again.status_code == 200, again.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["id"] == first.json()["id"]
    assert len(list_all(stack, payment_reference=reference)) == 1

    stack.wait_status(first.json()["id"], "succeeded")
    # Replaying after it finished still answers the same refund, in its current state.
    late = post_refund(stack, body, key=key)
    assert late.status_code == 200
    assert late.json()["id"] == first.json()["id"]
    assert late.json()["status"] == "succeeded"
    rows = [r for r in stack.ledger() if r["payment_reference"] == reference]
    assert len(rows) == 1
    assert rows[0]["amount"] == 1_200
    with stack.api() as client:
        payment = client.post("/api/v1/payments", json=payment_body(payment_reference=reference))
    assert payment.status_code == 200
    assert payment.json()["refundable_amount"] == 10_000 - 1_200


def test_same_key_different_body_is_409(stack: Stack) -> None:
    reference = stack.payment(10_000)
    key = f"reuse-{uuid.uuid4().hex}"
    assert post_refund(stack, refund_body(reference, 1_000), key=key).status_code == 201
    for change in ({"amount": 1_001}, {"reason": "duplicate"}, {"metadata": {"a": "b"}}):
        error(
            post_refund(stack, refund_body(reference, **{"amount": 1_000, **change}), key=key),
            409,
            "idempotency_key_reused",
        )
    assert len(list_all(stack, payment_reference=reference)) == 1


def test_idempotency_keys_are_scoped_per_api_key(stack: Stack, keys: dict[str, str]) -> None:
    reference = stack.payment(10_000)
    key = f"shared-{uuid.uuid4().hex}"
    body = refund_body(reference, 1_000)
    mine = post_refund(stack, body, key=key)
    theirs = post_refund(stack, body, key=key, api_key=keys["other"])
    assert mine.status_code == 201, mine.text
    assert theirs.status_code == 201, theirs.text
    assert mine.json()["id"] != theirs.json()["id"]
    # Each client's replay finds its own refund.
    replay = post_refund(stack, body, key=key, api_key=keys["other"])
    assert replay.status_code == 200
    assert replay.json()["id"] == theirs.json()["id"]
    # A different body under the other client's key conflicts only there.
    error(
        post_refund(stack, refund_body(reference, 999), key=key, api_key=keys["other"]),
        409,
        "idempotency_key_reused",
    )
    assert len(list_all(stack, payment_reference=reference)) == 2


def test_idempotency_key_header_rules(stack: Stack) -> None:
    reference = stack.payment(10_000)
    body = refund_body(reference, 100)
    with stack.api() as client:
        error(client.post("/api/v1/refunds", json=body), 400, "idempotency_key_missing")
        error(
            client.post("/api/v1/refunds", json=body, headers={"Idempotency-Key": ""}),
            400,
            "idempotency_key_missing",
        )
        too_long = client.post("/api/v1/refunds", json=body, headers={"Idempotency-Key": "k" * 256})
        assert too_long.status_code == 400, too_long.text
        assert too_long.json()["code"].startswith("idempotency_key"), too_long.text
        assert list_all(stack, payment_reference=reference) == []
        longest = client.post("/api/v1/refunds", json=body, headers={"Idempotency-Key": "k" * 255})
        assert longest.status_code == 201, longest.text


def test_refund_business_rule_errors_are_422(stack: Stack) -> None:
    reference = stack.payment(10_000)
    error(post_refund(stack, refund_body(f"pi_missing_{uuid.uuid4().hex}")), 422, "unknown_payment")
    error(post_refund(stack, refund_body(reference, currency="USD")), 422, "currency_mismatch")
    # Not ISO 4217 at all: the payments API's code, not "not the payment's" (it was currency_mismatch).
    error(post_refund(stack, refund_body(reference, currency="QQQ")), 422, "invalid_currency")
    error(post_refund(stack, refund_body(reference, 0)), 422, "invalid_amount")
    error(post_refund(stack, refund_body(reference, -500)), 422, "invalid_amount")
    error(post_refund(stack, refund_body(reference, 10**16)), 422, "invalid_amount")
    error(post_refund(stack, refund_body(reference, connection="nope")), 422, "unknown_connection")
    over = error(post_refund(stack, refund_body(reference, 10_001)), 422, "amount_exceeds_refundable")
    assert over.get("refundable_amount") == 10_000
    assert post_refund(stack, refund_body(reference, 6_000)).status_code == 201
    over = error(post_refund(stack, refund_body(reference, 4_001)), 422, "amount_exceeds_refundable")
    assert over.get("refundable_amount") == 4_000
    assert post_refund(stack, refund_body(reference, 4_000, connection="stripe-test")).status_code == 201
    error(post_refund(stack, refund_body(reference, 1)), 422, "amount_exceeds_refundable")
    # Lower-case currency is the same currency.
    other = stack.payment(500)
    assert post_refund(stack, refund_body(other, 100, currency="eur")).status_code == 201
    # Nothing above was created except the three accepted refunds.
    assert len(list_all(stack, payment_reference=reference)) == 2


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        pytest.param("25.00", "got a string", id="decimal-string"),
        pytest.param("2500", "got a string", id="digit-string"),
        pytest.param(25.0, "got a number with a fraction", id="float-whole"),
        pytest.param(12.5, "got a number with a fraction", id="float"),
        pytest.param(True, "got a boolean", id="true"),
        pytest.param(None, "got null", id="null"),
        pytest.param([100], "got an array", id="array"),
        pytest.param(10**30, "", id="beyond-bigint"),
        pytest.param(2**63, "", id="int64-overflow"),
    ],
)
def test_only_a_json_integer_is_a_refund_amount(stack: Stack, amount: Any, why: str) -> None:
    """``"amount": "25.00"`` once became a refund of 25 minor units (0.25 EUR): anything but a JSON
    integer is 422 invalid_amount, with a message saying why, and creates nothing."""
    reference = stack.payment(10_000)
    body = error(post_refund(stack, refund_body(reference, amount)), 422, "invalid_amount")
    assert "JSON integer in minor units" in body["message"], body
    assert why in body["message"], body
    assert list_all(stack, payment_reference=reference) == []


def _refund_json(**over: Any) -> dict[str, Any]:
    return {"payment_reference": "pi_x", "amount": 100, "currency": "EUR", "reason": "return", **over}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'"a string"', id="string"),
        pytest.param({"amount": 100, "currency": "EUR", "reason": "return"}, id="missing-reference"),
        pytest.param(_refund_json(payment_reference=12), id="reference-number"),
        pytest.param(_refund_json(currency=978), id="currency-number"),
        pytest.param(_refund_json(reason="because"), id="reason-unknown"),
        pytest.param(_refund_json(reason=None), id="reason-null"),
        pytest.param(_refund_json(extra=1), id="unknown-field"),
        pytest.param(_refund_json(metadata=[1]), id="metadata-list"),
        pytest.param(_refund_json(metadata={"k": 1}), id="metadata-number-value"),
    ],
)
def test_malformed_refund_requests_are_422_validation_error(stack: Stack, body: Any) -> None:
    error(post_refund(stack, body), 422, "validation_error")


def test_metadata_limits_are_422(stack: Stack) -> None:
    reference = stack.payment(10_000)
    for metadata in ({"": "x"}, {"k" * 41: "x"}, {"k": "v" * 501}, {f"k{i}": "v" for i in range(21)}):
        error(post_refund(stack, refund_body(reference, 100, metadata=metadata)), 422, "validation_error")
    error(post_refund(stack, refund_body(reference, 100, order_id="o" * 256)), 422, "validation_error")


def test_authentication_and_scopes(stack: Stack, keys: dict[str, str]) -> None:
    reference = stack.payment(10_000)
    body = refund_body(reference, 100)
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    url = f"{stack.web_url}/api/v1/refunds"
    error(httpx2.post(url, json=body, headers=headers), 401, "unauthenticated")
    error(httpx2.get(url), 401, "unauthenticated")
    for auth in ("Basic dXNlcjpwYXNz", "Bearer", "", stack.api_key):
        error(httpx2.post(url, json=body, headers={**headers, "Authorization": auth}), 401, "unauthenticated")
    for token in ("rw_not-a-real-key", "not-even-prefixed", "rw_" + "x" * 200, stack.api_key + "x"):
        response = httpx2.post(url, json=body, headers={**headers, "Authorization": f"Bearer {token}"})
        error(response, 401, "invalid_token")
    # Authentication comes before body parsing: garbage from an anonymous caller is still a 401.
    error(httpx2.post(url, content=b"{garbage", headers=headers), 401, "unauthenticated")

    with stack.api(keys["read"]) as reader:
        error(reader.post("/api/v1/refunds", json=body, headers=headers), 403, "insufficient_scope")
        error(reader.post("/api/v1/payments", json=payment_body()), 403, "insufficient_scope")
        assert reader.get("/api/v1/refunds", params={"payment_reference": reference}).json()["data"] == []
    assert list_all(stack, payment_reference=reference) == []
    with stack.api(keys["other"]) as other:  # refunds:write but not payments:write
        error(other.post("/api/v1/payments", json=payment_body()), 403, "insufficient_scope")
    created = post_refund(stack, body)
    assert created.status_code == 201
    with stack.api(keys["read"]) as reader:
        refund_id = created.json()["id"]
        assert reader.get(f"/api/v1/refunds/{refund_id}").status_code == 200
        for action in ("cancel", "retry", "sync"):
            error(reader.post(f"/api/v1/refunds/{refund_id}/{action}"), 403, "insufficient_scope")


def test_get_unknown_refund_is_404(stack: Stack) -> None:
    with stack.api() as client:
        error(client.get(f"/api/v1/refunds/{uuid.uuid4()}"), 404, "refund_not_found")
        for action in ("cancel", "retry", "sync"):
            error(client.post(f"/api/v1/refunds/{uuid.uuid4()}/{action}"), 404, "refund_not_found")
        response = client.get("/api/v1/refunds/not-a-uuid")
        assert response.status_code == 404, response.text
        assert response.json()["code"], response.text


# --------------------------------------------------------------------------------------------- lists


def test_list_filters(stack: Stack) -> None:
    reference = stack.payment(10_000)
    other = stack.payment(10_000)
    ids = [post_refund(stack, refund_body(reference, 1_000)).json()["id"] for _ in range(3)]
    other_id = post_refund(stack, refund_body(other, 1_000)).json()["id"]
    for refund_id in [*ids, other_id]:
        stack.wait_status(refund_id, "succeeded")
    refunds = {r["id"]: r for r in list_all(stack, payment_reference=reference)}
    assert set(refunds) == set(ids)
    assert all(r["payment_reference"] == reference for r in refunds.values())

    assert {r["id"] for r in list_all(stack, payment_reference=reference, status="succeeded")} == set(ids)
    assert list_all(stack, payment_reference=reference, status="queued") == []
    assert {r["id"] for r in list_all(stack, payment_reference=reference, connection="stripe-test")} == set(
        ids
    )
    everything = {r["id"] for r in list_all(stack, connection="stripe-test", limit=200)}
    assert {*ids, other_id} <= everything

    first, middle, last = (refunds[i] for i in ids)
    after = {
        r["id"] for r in list_all(stack, payment_reference=reference, created_after=middle["created_at"])
    }
    assert after == {middle["id"], last["id"]}
    before = {
        r["id"] for r in list_all(stack, payment_reference=reference, created_before=middle["created_at"])
    }
    assert before == {first["id"]}
    window = list_all(
        stack,
        payment_reference=reference,
        created_after=first["created_at"],
        created_before=last["created_at"],
    )
    assert {r["id"] for r in window} == {first["id"], middle["id"]}
    # The same instant written with another UTC offset selects the same refunds.
    shifted = (
        dt.datetime.fromisoformat(middle["created_at"].replace("Z", "+00:00"))
        .astimezone(dt.timezone(dt.timedelta(hours=2)))
        .isoformat()
    )
    assert "+02:00" in shifted
    assert {r["id"] for r in list_all(stack, payment_reference=reference, created_after=shifted)} == after
    assert {r["id"] for r in list_all(stack, payment_reference=reference, created_before=shifted)} == before
    future = list_all(stack, payment_reference=reference, created_after="2999-01-01T00:00:00+00:00")
    assert future == []

    with stack.api() as client:
        error(client.get("/api/v1/refunds", params={"status": "bogus"}), 422, "validation_error")
        error(client.get("/api/v1/refunds", params={"connection": "nope"}), 422, "unknown_connection")
        error(client.get("/api/v1/refunds", params={"cursor": "not-a-cursor"}), 422, "invalid_cursor")
        for limit in ("0", "201", "-1", "many"):
            error(client.get("/api/v1/refunds", params={"limit": limit}), 422, "validation_error")
        error(
            client.get("/api/v1/refunds", params={"created_after": "last tuesday"}), 422, "validation_error"
        )


def test_list_naive_datetime_filter_is_not_a_500(stack: Stack) -> None:
    with stack.api() as client:
        response = client.get("/api/v1/refunds", params={"created_after": "2020-01-01T00:00:00"})
    assert response.status_code in (200, 422), response.text


@pytest.mark.parametrize(
    ("name", "value"),
    [("created_after", "0001-01-01T00:00:00+01:00"), ("created_before", "9999-12-31T23:59:59-01:00")],
)
def test_list_time_filter_past_the_calendar_in_utc_is_a_422(stack: Stack, name: str, value: str) -> None:
    """A valid RFC 3339 time whose offset takes it before year 1 or past 9999 in UTC answered 500
    (OverflowError while the database layer converted it to UTC)."""
    with stack.api() as client:
        body = error(client.get("/api/v1/refunds", params={name: value}), 422, "validation_error")
    assert name in body["message"], body


def test_an_amount_stripe_cannot_take_is_refused_at_intake_and_never_sent(stack: Stack) -> None:
    """Stripe takes its three-decimal currencies only in amounts ending in 0: 1.234 KWD was accepted
    (201, its amount reserved) and then failed in the worker as "not sent to Stripe"; it is refused at
    intake as PayPal's whole-unit amounts are, and nothing is reserved."""
    reference = stack.payment(100_000, "KWD")
    body = error(stack.refund(reference, 1_234, currency="KWD"), 422, "amount_not_supported")
    assert "KWD" in body["message"], body
    with stack.api() as client:
        ledger = client.get(f"/api/v1/payments/{reference}").json()
    assert (ledger["in_flight"], ledger["refundable"], ledger["refunds"]) == (0, 100_000, [])
    response = stack.refund(reference, 1_230, currency="KWD")
    assert response.status_code == 201, response.text
    assert stack.wait_status(response.json()["id"], "succeeded")["amount"] == 1_230


def test_cursor_pagination_walks_every_refund_once(stack: Stack) -> None:
    reference = stack.payment(10_000)
    created = [post_refund(stack, refund_body(reference, 100)).json()["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    with stack.api() as client:
        while True:
            params: dict[str, Any] = {"payment_reference": reference, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/refunds", params=params).json()
            pages += 1
            assert len(page["data"]) <= 2
            seen.extend(r["id"] for r in page["data"])
            cursor = page["next_cursor"]
            assert page["has_more"] is (cursor is not None)
            if cursor is None:
                break
            assert pages < 10
    assert pages == 4
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == set(created)
    assert seen == sorted(created, reverse=True)  # newest first (time-ordered ids)


# --------------------------------------------------------------------------------------------- commands


def test_cancel_queued_refund_releases_its_amount(stack: Stack) -> None:
    reference = stack.payment(10_000)
    stack.stop_worker()
    try:
        queued = post_refund(stack, refund_body(reference, 10_000))
        assert queued.status_code == 201, queued.text
        refund_id = queued.json()["id"]
        assert stack.get(refund_id)["status"] == "queued"
        error(post_refund(stack, refund_body(reference, 1)), 422, "amount_exceeds_refundable")

        with stack.api() as client:
            canceled = client.post(f"/api/v1/refunds/{refund_id}/cancel")
            assert canceled.status_code == 200, canceled.text
            assert canceled.json()["status"] == "canceled"
            assert canceled.json()["events"][-1]["status"] == "canceled"
            error(client.post(f"/api/v1/refunds/{refund_id}/cancel"), 409, "invalid_transition")
            error(client.post(f"/api/v1/refunds/{refund_id}/retry"), 409, "invalid_transition")
        again = post_refund(stack, refund_body(reference, 10_000))
        assert again.status_code == 201, again.text
    finally:
        stack.start_worker()
    assert stack.wait_status(again.json()["id"], "succeeded")["amount"] == 10_000
    assert stack.get(refund_id)["status"] == "canceled"
    rows = [r for r in stack.ledger() if r["payment_reference"] == reference]
    assert [r["amount"] for r in rows] == [10_000]


def test_retry_or_cancel_of_a_refund_that_is_not_failed_is_409(stack: Stack) -> None:
    reference = stack.payment(10_000)
    refund_id = post_refund(stack, refund_body(reference, 1_000)).json()["id"]
    with stack.api() as client:
        error(client.post(f"/api/v1/refunds/{refund_id}/retry"), 409, "invalid_transition")
        stack.wait_status(refund_id, "succeeded")
        error(client.post(f"/api/v1/refunds/{refund_id}/retry"), 409, "invalid_transition")
        error(client.post(f"/api/v1/refunds/{refund_id}/cancel"), 409, "invalid_transition")
        synced = client.post(f"/api/v1/refunds/{refund_id}/sync")
        assert synced.status_code == 200, synced.text
        assert synced.json()["status"] == "succeeded"
    assert stack.get(refund_id)["status"] == "succeeded"


def test_retry_of_a_failed_refund_past_the_refundable_balance_says_how_much_is_left(stack: Stack) -> None:
    """A failed refund released its amount; another then took most of it. Retrying the failed one
    answered 422 amount_exceeds_refundable without ``refundable_amount`` (which the README promises
    with that code), and the OpenAPI document listed only validation_error for the retry's 422."""
    reference = stack.payment(10_000, simulator_amount=5_000)  # the processor refuses over 5000
    failed = post_refund(stack, refund_body(reference, 6_000)).json()["id"]
    assert stack.wait_status(failed, "failed", "succeeded", "manual_review")["status"] == "failed"
    other = post_refund(stack, refund_body(reference, 5_000)).json()["id"]
    assert stack.wait_status(other, "failed", "succeeded", "manual_review")["status"] == "succeeded"
    with stack.api() as client:
        body = error(client.post(f"/api/v1/refunds/{failed}/retry"), 422, "amount_exceeds_refundable")
        document = client.get("/schema/openapi.json").json()
    assert body["refundable_amount"] == 5_000, body
    assert stack.get(failed)["status"] == "failed"
    answers = document["paths"]["/api/v1/refunds/{refund_id}/retry"]["post"]["responses"]["422"]
    assert "amount_exceeds_refundable" in json.dumps(answers)


def test_refund_at_the_approval_threshold_waits_for_a_second_person(stack: Stack) -> None:
    reference = stack.payment(100_000)
    response = post_refund(stack, refund_body(reference, 50_000))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending_approval"


# --------------------------------------------------------------------------------------------- robustness

_NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "pi_\x00x",
    "é",
    "💸" * 50,
    "\u202e",
    "' OR 1=1 --",
    "%s%n",
    "{}",
    "null",
    "x" * 300,
    "y" * 5000,
    "\ud7ff",
    "EUR",
    "return",
    "stripe-test",
]


def _garbage(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(11 if depth < 3 else 7)
    if kind == 0:
        return rng.choice(_NASTY_STRINGS)
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 40)))
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, 2**64 + 1, -(2**63) - 1, 10**30, 10**15, 10**15 + 1])
    if kind == 3:
        return rng.choice([0.0, -0.5, 1.5, 1e308, -1e308, 1e-9])
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.randrange(-10_000, 100_000)
    if kind == 6:
        return rng.choice(
            ["2026-01-01T00:00:00Z", "2026-13-45T99:99:99", "2026-01-01", "0001-01-01T00:00:00"]
        )
    if kind in (7, 8):
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {
        rng.choice([*_NASTY_STRINGS[:12], "amount", "reason"]): _garbage(rng, depth + 1)
        for _ in range(rng.randrange(0, 4))
    }


def _mutated(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(3)
        if action == 0 and body:
            body[rng.choice(list(body))] = _garbage(rng)
        elif action == 1 and body:
            del body[rng.choice(list(body))]
        else:
            body[rng.choice(["metadata", "order_id", "invoice_id", "connection", "x", "amount"])] = _garbage(
                rng
            )
    return body


def _raw_body(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"",
            b"{",
            b"}",
            b"NaN",
            b"Infinity",
            b'{"amount": NaN}',
            b'{"amount": 1e999}',
            b"[" * 50 + b"]" * 50,  # deeper nesting: see test_deeply_nested_json_is_not_a_500
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
            b"\xff\xfe{\x00}",
            b'{"payment_reference": "\\ud800", "amount": 1, "currency": "EUR", "reason": "return"}',
            b'{"payment_reference": "a", "payment_reference": "b"}',
            b"x" * (300 * 1024),
        ]
    )


def _fuzz_requests(
    rng: random.Random, stack: Stack, reference: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    refund_base = refund_body(reference, 1)
    payment_base = payment_body(payment_reference=reference)
    for _ in range(200):
        headers: dict[str, str] = {}
        roll = rng.random()
        if roll < 0.85:
            headers["Authorization"] = f"Bearer {stack.api_key}"
        elif roll < 0.95:
            headers["Authorization"] = rng.choice(
                ["Bearer", "Bearer rw_", "Basic Og==", "rw_x", "Bearer  x y"]
            )
        headers["Idempotency-Key"] = rng.choice(
            [
                uuid.uuid4().hex,
                uuid.uuid4().hex,
                "",
                "k" * 256,
                "fixed-key",
                "".join(rng.choice(string.printable.strip()) for _ in range(rng.randrange(1, 80))),
            ]
        )
        if rng.random() < 0.3:
            headers["Content-Type"] = rng.choice(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "multipart/form-data",
                    "application/json;x",
                    "application/xml",
                    "",
                ]
            )
        target = rng.random()
        kwargs: dict[str, Any] = {"headers": headers}
        if target < 0.6:
            choice = rng.random()
            if choice < 0.6:
                kwargs["content"] = json.dumps(_mutated(rng, refund_base)).encode()
            elif choice < 0.8:
                kwargs["content"] = json.dumps(_garbage(rng)).encode()
            else:
                kwargs["content"] = _raw_body(rng)
            yield "POST", "/api/v1/refunds", kwargs
        elif target < 0.8:
            body = _mutated(rng, payment_base) if rng.random() < 0.7 else _garbage(rng)
            kwargs["content"] = json.dumps(body).encode()
            yield "POST", "/api/v1/payments", kwargs
        elif target < 0.93:
            params = {
                name: str(_garbage(rng))
                for name in rng.sample(
                    [
                        "status",
                        "connection",
                        "payment_reference",
                        "created_after",
                        "created_before",
                        "cursor",
                        "limit",
                    ],
                    rng.randrange(1, 4),
                )
            }
            kwargs["params"] = params
            yield "GET", "/api/v1/refunds", kwargs
        else:
            path = rng.choice([str(uuid.uuid4()), "x", "%00", "..%2f..", "0" * 40])
            yield "POST", f"/api/v1/refunds/{path}/{rng.choice(['cancel', 'retry', 'sync', 'nope'])}", kwargs


def test_never_a_500(stack: Stack) -> None:
    """~200 garbage requests: every answer is below 500 and JSON carrying a machine-readable code."""
    reference = stack.payment(1_000_000)
    rng = random.Random(20261101)
    failures: list[str] = []
    with httpx2.Client(base_url=stack.web_url, timeout=30) as client:
        for method, path, kwargs in _fuzz_requests(rng, stack, reference):
            response = client.request(method, path, **kwargs)
            described = f"{method} {path} {kwargs!r:.300} -> {response.status_code} {response.text[:200]}"
            if response.status_code >= 500:
                failures.append(described)
                continue
            try:
                body = response.json()
            except ValueError:
                failures.append("not JSON: " + described)
                continue
            if response.status_code >= 400 and not (isinstance(body, dict) and body.get("code")):
                failures.append("no code: " + described)
    assert stack.procs["web"].alive
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "raw", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000], ids=["arrays", "objects"]
)
def test_deeply_nested_json_is_not_a_500(stack: Stack, raw: bytes) -> None:
    error(post_refund(stack, raw), 422, "validation_error")


def test_nul_characters_are_refused_not_a_500(stack: Stack) -> None:
    """NUL is valid JSON (\\u0000) but PostgreSQL text cannot hold it: it must be a 4xx, never a 500."""
    reference = stack.payment(10_000)
    failures = []
    with stack.api() as client:
        attempts = [
            ("POST", "/api/v1/refunds", refund_body("pi_\x00x", 1)),
            ("POST", "/api/v1/refunds", refund_body(reference, 1, order_id="a\x00b")),
            ("POST", "/api/v1/refunds", refund_body(reference, 1, metadata={"k": "a\x00b"})),
            ("POST", "/api/v1/payments", payment_body(payment_reference="pi_\x00")),
            ("POST", "/api/v1/payments", payment_body(order_id="\x00")),
            ("GET", "/api/v1/refunds", None),
        ]
        for method, path, body in attempts:
            if body is None:
                response = client.get(path, params={"payment_reference": "a\x00"})
            else:
                response = client.request(
                    method, path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
                )
            if response.status_code >= 500 or (response.status_code >= 400 and "code" not in response.json()):
                failures.append(f"{method} {path} {body!r} -> {response.status_code} {response.text}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------------------------- operations


def test_options_lists_every_method_of_the_path(stack: Stack) -> None:
    """Litestar's automatic OPTIONS answered ``Allow: OPTIONS, POST`` for /api/v1/refunds, which
    has GET too (found by schemathesis' allow_header_conformance)."""
    with stack.api() as client:
        for path, methods in (
            ("/api/v1/refunds", "GET, OPTIONS, POST"),
            ("/api/v1/payments", "OPTIONS, POST"),
            (f"/api/v1/refunds/{uuid.uuid4()}", "GET, OPTIONS"),
        ):
            response = client.options(path)
            assert response.status_code == 204, response.text
            assert response.headers["allow"] == methods, (path, response.headers["allow"])


def test_a_method_the_path_does_not_take_has_its_own_code(stack: Stack) -> None:
    """405 answered ``http_error``, a code the README's list of every code did not have."""
    with stack.api() as client:
        for method, path in (("GET", f"/api/v1/refunds/{uuid.uuid4()}/sync"), ("DELETE", "/api/v1/refunds")):
            response = client.request(method, path)
            assert response.status_code == 405, response.text
            assert response.json()["code"] == "method_not_allowed", response.text
    answer = httpx2.get(f"{stack.web_url}/webhooks/stripe-test", headers={"Accept": "application/json"})
    assert answer.status_code == 405
    assert answer.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_web_server_started_before_its_redis_runs_and_says_not_ready(stack: Stack, tmp_path: Path) -> None:
    """A web process whose Redis does not answer at start-up (Redis restarting, a deployment's
    ordering) stopped with a traceback, so /healthz and /readyz never answered and a container
    platform saw a crash loop. It now starts, /readyz says 503 naming Redis, and once Redis answers
    it is ready without a restart."""
    redis_port, web_port = free_port(), free_port()
    # Held (bound, not listening: a connection is refused) until Redis takes it, so no other test
    # process picks it meanwhile: it stays unbound for the seconds the web process takes to start.
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", redis_port))
    env = {**stack.env, "REFUNDWATCH_REDIS_URL": f"redis://127.0.0.1:{redis_port}/{TEST_REDIS_DB}"}
    web = Proc("web-no-redis", ["refundwatch", "serve", "--port", str(web_port)], env, tmp_path / "web.log")
    redis: subprocess.Popen[bytes] | None = None
    try:
        web.start()
        wait_http(f"http://127.0.0.1:{web_port}/healthz", web)
        not_ready = httpx2.get(f"http://127.0.0.1:{web_port}/readyz")
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["database"] == "ok"
        assert not_ready.json()["redis"].startswith("down"), not_ready.text
        # What needs Redis (sign-in keeps its state there) says so: 503 and when to come back, not a
        # 500 with a traceback in the log.
        for accept, kind in (("text/html", "text/html"), ("application/json", "application/json")):
            answer = httpx2.get(f"http://127.0.0.1:{web_port}/auth/login", headers={"Accept": accept})
            assert answer.status_code == 503, answer.text[:300]
            assert answer.headers["retry-after"] == "30"
            assert answer.headers["content-type"].startswith(kind)
        assert (
            httpx2.get(
                f"http://127.0.0.1:{web_port}/auth/login", headers={"Accept": "application/json"}
            ).json()["code"]
            == "unavailable"
        )
        assert "Traceback" not in (tmp_path / "web.log").read_text()
        held.close()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready = wait_until(
            lambda: (
                r if (r := httpx2.get(f"http://127.0.0.1:{web_port}/readyz")).status_code == 200 else None
            ),
            timeout=15,
            what="the web process ready once its Redis answers",
        )
        assert ready.json() == {"database": "ok", "redis": "ok"}
        # The live broadcaster said once that Redis was away (it used to log a traceback every
        # second or two for as long as the outage lasted), and says when it is back.
        wait_until(
            lambda: "live broadcaster: Redis answers again" in (tmp_path / "web.log").read_text(),
            timeout=10,
            what="the broadcaster's recovery line",
        )
        assert (tmp_path / "web.log").read_text().count("live broadcaster: Redis does not answer") == 1
        assert "Traceback" not in (tmp_path / "web.log").read_text()
    finally:
        held.close()
        web.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)


def _too_many_clients(listener: socket.socket) -> None:
    """A PostgreSQL server that is out of connections: each connection is told so at start-up
    (ErrorResponse FATAL 53300, as the real server says it once max_connections are taken)."""
    fields = b"".join(
        tag + text.encode() + b"\0"
        for tag, text in (
            (b"S", "FATAL"),
            (b"V", "FATAL"),
            (b"C", "53300"),
            (b"M", "sorry, too many clients already"),
        )
    )
    refusal = b"E" + (len(fields) + 5).to_bytes(4, "big") + fields + b"\0"
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the test closed the listener
        with client:
            try:
                first = client.recv(8)
                if first[4:8] == (80877103).to_bytes(4, "big"):  # SSLRequest: no SSL here
                    client.sendall(b"N")
                    client.recv(4096)  # the start-up message
                else:
                    client.recv(4096)
                client.sendall(refusal)
            except OSError:
                continue


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
@pytest.mark.parametrize("database", ["refused", "too_many_clients"])
def test_the_api_says_unavailable_while_its_database_does_not_answer(
    stack: Stack, tmp_path: Path, database: str
) -> None:
    """A web process whose PostgreSQL refuses connections (restarting, failing over) or has none left
    (max_connections taken by other processes) answered every API call 500 internal_error ("a bug") and
    logged each as an unhandled error with a traceback. /readyz already said 503; the API now says the
    same: 503 unavailable with Retry-After."""
    db_port, web_port = free_port(), free_port()
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # bound, not listening: refused
    held.bind(("127.0.0.1", db_port))
    if database == "too_many_clients":
        held.listen(16)
        threading.Thread(target=_too_many_clients, args=(held,), daemon=True).start()
    url = re.sub(r"@[^/]+/", f"@127.0.0.1:{db_port}/", stack.database_url)
    env = {**stack.env, "REFUNDWATCH_DATABASE_URL": url}
    web = Proc("web-no-db", ["refundwatch", "serve", "--port", str(web_port)], env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{web_port}"
    try:
        web.start()
        wait_http(f"{base}/healthz", web)
        assert httpx2.get(f"{base}/readyz").status_code == 503
        headers = {"Authorization": f"Bearer {stack.api_key}", "Idempotency-Key": uuid.uuid4().hex}
        token = stack.env.get("REFUNDWATCH_METRICS_TOKEN", "")
        for method, path, body, extra in (
            ("GET", "/api/v1/refunds", None, {}),
            ("POST", "/api/v1/refunds", refund_body("pi_x", 100), {}),
            ("POST", "/api/v1/payments", payment_body(), {}),
            ("GET", "/metrics", None, {"Authorization": f"Bearer {token}"}),
        ):
            answer = httpx2.request(method, f"{base}{path}", json=body, headers={**headers, **extra})
            assert answer.status_code == 503, (path, answer.status_code, answer.text)
            assert answer.json()["code"] == "unavailable", answer.text
            assert int(answer.headers["retry-after"]) > 0
        assert "unhandled error" not in (tmp_path / "web.log").read_text()
    finally:
        held.close()
        web.stop()


def test_health_readiness_metrics_and_schema(stack: Stack) -> None:
    healthz = httpx2.get(f"{stack.web_url}/healthz")
    assert healthz.status_code == 200
    readyz = httpx2.get(f"{stack.web_url}/readyz")
    assert readyz.status_code == 200, readyz.text
    assert readyz.json()["database"] == "ok"
    assert readyz.json()["redis"] == "ok"
    # HEAD as well as GET (RFC 9110 9.1): a monitor probing with HEAD got 405 and saw the service down.
    for path in ("/healthz", "/readyz"):
        probed = httpx2.head(f"{stack.web_url}{path}")
        assert probed.status_code == 200, (path, probed.status_code, probed.text)
        assert probed.content == b""

    reference = stack.payment(1_000)
    stack.wait_status(post_refund(stack, refund_body(reference, 100)).json()["id"], "succeeded")
    # the worker folds the outcome into the rollups a moment after the refund succeeds
    metrics = wait_until(
        lambda: (
            response
            if 'refundwatch_refunds_total{connection="stripe-test",error_code="",outcome="succeeded"}'
            in (response := stack.metrics()).text
            else None
        ),
        timeout=10,
        what="the succeeded counter",
    )
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")

    schema = httpx2.get(f"{stack.web_url}/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/refunds" in paths
    assert "/api/v1/payments" in paths
    assert "post" in paths["/api/v1/refunds"]
    assert "get" in paths["/api/v1/refunds"]
