"""The staff refunds list (/refunds) and its CSV export (/refunds.csv), against the real stack.

One set of refunds per database backend (the ``data`` fixture) is shared by the filter tests; each
test narrows to that set through the search box or a filter nobody else's refunds match.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import html
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from stack import Stack, db_rows

HEADER = [
    "id",
    "created_at",
    "updated_at",
    "status",
    "connection",
    "payment_reference",
    "order_id",
    "invoice_id",
    "amount",
    "amount_decimal",
    "currency",
    "reason",
    "error_code",
    "processor_code",
    "gateway_refund_id",
    "attempts",
    "accepted_at",
    "finalized_at",
]
FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


@dataclass
class Data:
    tag: str
    ref: str  # payment A: most refunds
    order: str  # payment A's order id, inherited by its refunds
    invoice: str
    bare_ref: str = ""  # a payment without order or invoice: its refund names its own
    ids: dict[str, str] = field(default_factory=dict)  # name -> refund id
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> API view
    yen_ref: str = ""
    formula_ref: str = ""

    def of(self, *names: str) -> set[str]:
        return {self.ids[n] for n in names}

    @property
    def on_a(self) -> set[str]:
        return self.of("ten", "exact", "above", "big")


def _create(stack: Stack, reference: str, amount: int, **extra: Any) -> dict[str, Any]:
    response = stack.refund(reference, amount, **extra)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture(scope="module")
def data(stack: Stack) -> Data:
    stack.faults()
    tag = uuid.uuid4().hex[:10]
    d = Data(tag, "", f"ord_{tag}", f"inv_{tag}")
    d.ref = stack.payment(200_000, order_id=d.order, invoice_id=d.invoice)
    plan = {
        "ten": (d.ref, 1_000, {"reason": "return", "metadata": {"note": f"secret-{tag}"}}),
        "exact": (d.ref, 1_250, {"reason": "duplicate"}),
        "above": (d.ref, 1_251, {"reason": "fraudulent"}),
        "big": (d.ref, 50_000, {"reason": "other"}),  # at the approval threshold: waits
    }
    d.bare_ref = stack.payment(10_000)
    plan["own_order"] = (d.bare_ref, 999, {"order_id": f"rord_{tag}", "invoice_id": f"rinv_{tag}"})
    # refundwatch believes 6000 were captured, the processor 1000: the processor refuses (failed).
    failing = stack.payment(6_000, simulator_amount=1_000)
    plan["failed"] = (failing, 5_000, {})
    d.yen_ref = stack.payment(10_000, "JPY")
    plan["yen"] = (d.yen_ref, 500, {"currency": "JPY"})
    d.formula_ref = stack.payment(10_000)
    plan["formula1"] = (d.formula_ref, 100, {"order_id": "=1+2", "invoice_id": "@SUM(A1)"})
    plan["formula2"] = (d.formula_ref, 101, {"order_id": "-2+3", "invoice_id": "+33 cmd"})
    plan["formula3"] = (d.formula_ref, 102, {"order_id": "\tpad", "invoice_id": "\rpad"})
    for name, (reference, amount, extra) in plan.items():
        d.ids[name] = _create(stack, reference, amount, **extra)["id"]
    for name, refund_id in d.ids.items():
        wanted = ("pending_approval",) if name == "big" else FINAL
        d.refunds[name] = stack.wait_status(refund_id, *wanted)
    assert d.refunds["failed"]["status"] == "failed"
    assert d.refunds["ten"]["status"] == "succeeded"
    return d


@pytest.fixture(scope="module")
def alice(stack: Stack) -> Iterator[httpx2.Client]:
    """A viewer: the lowest role, and enough for the list, every filter and the export."""
    client = stack.sign_in("alice-viewer")
    yield client
    client.close()


def listed(client: httpx2.Client, params: Any, *, status: int = 200) -> set[str]:
    """The refund ids the list shows for ``params`` (a dict or a list of pairs)."""
    response = client.get("/refunds", params=params)
    assert response.status_code == status, (response.status_code, response.text[:500])
    return set(re.findall(r'href="/refunds/([0-9a-f-]{36})"', response.text))


def exported(client: httpx2.Client, params: Any) -> list[dict[str, str]]:
    response = client.get("/refunds.csv", params=params)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


def link(page: str, text: str) -> str | None:
    match = re.search(rf'<a href="([^"]+)"[^>]*>{re.escape(text)}</a>', page)
    return html.unescape(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------- filters


def test_search_box_matches_payment_order_or_invoice_exactly(alice: httpx2.Client, data: Data) -> None:
    assert listed(alice, {"q": data.ref}) == data.on_a
    # Refunds carry their payment's order and invoice, or (payment without them) their own.
    assert listed(alice, {"q": data.order}) == data.on_a
    assert listed(alice, {"q": data.invoice}) == data.on_a
    assert listed(alice, {"q": data.bare_ref}) == data.of("own_order")
    assert listed(alice, {"q": f"rord_{data.tag}"}) == data.of("own_order")
    assert listed(alice, {"q": f"rinv_{data.tag}"}) == data.of("own_order")
    assert listed(alice, {"q": f"  {data.ref}  "}) == data.on_a  # pasted with spaces
    assert listed(alice, {"q": data.ref[:-1]}) == set()  # exact, not a prefix
    assert listed(alice, {"payment": data.ref}) == data.on_a  # the old parameter still works


def test_status_one_or_several(alice: httpx2.Client, data: Data) -> None:
    done = data.of("ten", "exact", "above")
    assert listed(alice, {"q": data.ref, "status": "succeeded"}) == done
    assert listed(alice, {"q": data.ref, "status": "pending_approval"}) == data.of("big")
    assert listed(alice, [("q", data.ref), ("status", "succeeded"), ("status", "pending_approval")]) == (
        data.on_a
    )
    assert listed(alice, {"q": data.ref, "status": "failed"}) == set()
    page = alice.get("/refunds", params=[("status", "succeeded"), ("status", "failed"), ("q", data.ref)]).text
    assert re.search(r'value="succeeded" checked', page)
    assert re.search(r'value="failed" checked', page)
    assert not re.search(r'value="queued" checked', page)


def test_dashboard_failure_link_matches_our_code_or_the_processors(
    stack: Stack, alice: httpx2.Client, data: Data
) -> None:
    failed = data.ids["failed"]
    (row,) = db_rows(stack, "SELECT error_code, processor_code FROM refunds WHERE id = ?", _id(stack, failed))
    error_code, processor_code = row
    assert error_code == "amount_exceeds_refundable"
    assert processor_code
    assert processor_code != error_code
    # What the dashboard's "failures by reason" panel links to, with either code.
    for code in (error_code, processor_code):
        response = alice.get(f"/refunds?status=failed&status=reversed&error={code}&connection=stripe-test")
        assert response.status_code == 200
        assert failed in response.text
    assert failed in listed(alice, {"status": "failed", "error": error_code})
    assert failed not in listed(alice, {"status": "succeeded", "error": error_code})
    assert failed not in listed(alice, {"status": "failed", "error": "declined"})
    assert listed(alice, {"q": data.ref, "error": error_code}) == set()


def test_connection_and_reason(alice: httpx2.Client, data: Data) -> None:
    assert listed(alice, {"q": data.ref, "connection": "stripe-test"}) == data.on_a
    assert listed(alice, {"q": data.ref, "reason": "duplicate"}) == data.of("exact")
    assert listed(alice, {"q": data.ref, "reason": "return"}) == data.of("ten")
    assert listed(alice, {"q": data.ref, "reason": "other", "status": "pending_approval"}) == data.of("big")
    assert listed(alice, {"q": data.ref, "reason": "other", "status": "succeeded"}) == set()


def test_amount_range_in_major_units_inclusive(alice: httpx2.Client, data: Data) -> None:
    def between(low: str | None, high: str | None) -> set[str]:
        params = {"q": data.ref, "min_amount": low or "", "max_amount": high or ""}
        return listed(alice, params)

    assert between("12.50", None) == data.of("exact", "above", "big")
    assert between("12.5", None) == data.of("exact", "above", "big")
    assert between("12.51", None) == data.of("above", "big")
    assert between(None, "12.50") == data.of("ten", "exact")
    assert between(None, "12.49") == data.of("ten")
    assert between(None, "10") == data.of("ten")
    assert between(None, "9.99") == set()
    assert between("12.50", "12.50") == data.of("exact")
    assert between("10", "12.51") == data.of("ten", "exact", "above")
    assert between("0", "1000000") == data.on_a
    assert between("500", "500") == data.of("big")
    assert between("500.01", None) == set()


def test_currency_filter_sets_the_amount_exponent(alice: httpx2.Client, data: Data) -> None:
    yen = data.of("yen")
    assert listed(alice, {"q": data.yen_ref, "currency": "JPY", "min_amount": "500"}) == yen
    assert listed(alice, {"q": data.yen_ref, "currency": "jpy", "max_amount": "499"}) == set()
    assert listed(alice, {"q": data.yen_ref, "currency": "EUR"}) == set()
    # Without a currency, amounts are read with exponent 2 (lib/money's default): 5.00 -> 500.
    assert listed(alice, {"q": data.yen_ref, "min_amount": "5.00", "max_amount": "5"}) == yen
    refused = alice.get("/refunds", params={"currency": "JPY", "min_amount": "5.5"})
    assert refused.status_code == 422
    assert "no decimals" in refused.text
    page = alice.get("/refunds", params={"q": data.yen_ref}).text
    assert "500 JPY" in page
    assert "12.50 EUR" in alice.get("/refunds", params={"q": data.ref}).text


def _created(refund: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(refund["created_at"].replace("Z", "+00:00")).astimezone(dt.UTC)


def test_created_range_by_day_or_minute(alice: httpx2.Client, data: Data) -> None:
    mine = {n: _created(data.refunds[n]) for n in ("ten", "exact", "above", "big")}
    day = mine["ten"].date()
    one_day = dt.timedelta(days=1)
    assert listed(alice, {"q": data.ref, "from": day.isoformat()}) == data.on_a
    assert listed(alice, {"q": data.ref, "to": day.isoformat()}) == data.on_a  # the whole day
    assert listed(alice, {"q": data.ref, "from": (day + one_day).isoformat()}) == set()
    assert listed(alice, {"q": data.ref, "to": (day - one_day).isoformat()}) == set()
    both = {"q": data.ref, "from": day.isoformat(), "to": day.isoformat()}
    assert listed(alice, both) == data.on_a
    # Minutes: "to" includes the minute typed, "from" starts at it.
    minute = mine["exact"].replace(second=0, microsecond=0)
    typed = minute.strftime("%Y-%m-%dT%H:%M")
    upto = {data.ids[n] for n, at in mine.items() if at < minute + dt.timedelta(minutes=1)}
    since = {data.ids[n] for n, at in mine.items() if at >= minute}
    assert listed(alice, {"q": data.ref, "to": typed}) == upto
    assert listed(alice, {"q": data.ref, "from": typed}) == since
    assert listed(alice, {"q": data.ref, "from": typed, "to": typed}) == upto & since


def test_every_filter_at_once(alice: httpx2.Client, data: Data) -> None:
    day = _created(data.refunds["exact"]).date().isoformat()
    params = [
        ("q", data.order),
        ("status", "succeeded"),
        ("status", "failed"),
        ("connection", "stripe-test"),
        ("reason", "duplicate"),
        ("currency", "EUR"),
        ("min_amount", "12.50"),
        ("max_amount", "12.50"),
        ("from", day),
        ("to", day),
    ]
    assert listed(alice, params) == data.of("exact")
    assert [r["id"] for r in exported(alice, params)] == [data.ids["exact"]]


BAD = [
    ({"status": "bogus"}, "unknown status"),
    ({"connection": "nope"}, "unknown connection"),
    ({"reason": "bored"}, "unknown reason"),
    ({"currency": "XXX"}, "unknown currency"),
    ({"min_amount": "abc"}, "min_amount must be an amount"),
    ({"min_amount": "-1"}, "min_amount must be an amount"),
    ({"max_amount": "1e3"}, "max_amount must be an amount"),
    ({"max_amount": "12.505"}, "at most 2 decimals"),
    ({"min_amount": "99999999999999999999"}, "min_amount must be an amount"),
    ({"min_amount": "20", "max_amount": "10"}, "min_amount is above max_amount"),
    ({"from": "last tuesday"}, "from must be a UTC date"),
    ({"to": "2026-13-01"}, "to must be a UTC date"),
    ({"to": "9999-12-31"}, "to must be a UTC date"),
    ({"from": "2026-11-02", "to": "2026-11-01"}, "from is after to"),
    ({"cursor": "not-a-cursor"}, "cursor is not valid"),
    # An amount cursor beyond any amount overflowed the database's integer (SQLite: a 500).
    (
        {"sort": "amount_desc", "cursor": "99999999999999999999999.01a2517c-5543-701f-ae59-a8a8327f88c0"},
        "cursor is not valid",
    ),
    ({"sort": "amount_asc", "cursor": "-1.01a2517c-5543-701f-ae59-a8a8327f88c0"}, "cursor is not valid"),
    (
        {"sort": "amount_asc", "cursor": "9" * 5000 + ".01a2517c-5543-701f-ae59-a8a8327f88c0"},
        "cursor is not valid",
    ),
    ({"q": "pi_\x00"}, "not allowed"),
    ({"q": "x" * 256}, "q is too long"),
    ({"error": "e" * 129}, "error is too long"),
]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_filter_is_an_inline_error_never_a_500(alice: httpx2.Client, params: Any, message: str) -> None:
    plain = alice.get("/refunds", params=params)
    assert plain.status_code == 422, plain.text[:300]
    found = re.search(r'<p class="error" role="alert" id="filter-error">([^<]*)</p>', plain.text)
    assert found, plain.text[:2000]
    assert message in html.unescape(found.group(1))
    assert "Traceback" not in plain.text
    assert 'href="/refunds.csv' not in plain.text  # nothing to export from a refused filter
    htmx = alice.get("/refunds", params=params, headers={"HX-Request": "true"})
    assert htmx.status_code == 200  # swapped in place
    assert 'id="filter-error"' in htmx.text
    export = alice.get("/refunds.csv", params=params)
    assert export.status_code == 422
    assert 'id="filter-error"' in export.text


def test_typed_values_come_back_escaped(alice: httpx2.Client) -> None:
    page = alice.get("/refunds", params={"q": '<b>"x', "min_amount": "<i>"})
    assert page.status_code == 422
    assert "<b>" not in page.text
    assert "<i>" not in page.text
    assert 'value="&lt;b&gt;&#34;x"' in page.text
    assert 'value="&lt;i&gt;"' in page.text


# --------------------------------------------------------------------------------------------- pages


def test_pagination_carries_every_filter(stack: Stack, alice: httpx2.Client) -> None:
    reference = stack.payment(10_000)
    created = [_create(stack, reference, 100)["id"] for _ in range(52)]
    params = [("q", reference), ("reason", "return"), ("min_amount", "1.00"), ("max_amount", "1")]
    first = alice.get("/refunds", params=params)
    assert first.status_code == 200
    first_ids = re.findall(r'href="/refunds/([0-9a-f-]{36})"', first.text)
    assert first_ids == sorted(created, reverse=True)[:50]  # newest first
    assert link(first.text, "Newest") is None
    older = link(first.text, "Older refunds")
    assert older is not None
    query = parse_qsl(urlsplit(older).query)
    assert [p for p in query if p[0] != "cursor"] == params
    assert dict(query)["cursor"] == first_ids[-1]

    second = alice.get(older)
    second_ids = re.findall(r'href="/refunds/([0-9a-f-]{36})"', second.text)
    assert second_ids == sorted(created, reverse=True)[50:]
    assert link(second.text, "Older refunds") is None
    newest = link(second.text, "Newest")
    assert newest is not None
    assert parse_qsl(urlsplit(newest).query) == params
    export = link(second.text, "Export CSV")
    assert export is not None
    assert urlsplit(export).path == "/refunds.csv"
    assert parse_qsl(urlsplit(export).query) == params  # the whole filter, not this page
    assert len(exported(alice, params)) == 52


def test_list_shows_badges_and_a_tidy_form(alice: httpx2.Client, data: Data) -> None:
    page = alice.get("/refunds", params={"q": data.ref, "status": "succeeded"}).text
    # A label people read, the machine word on hover.
    assert '<td><span class="status status-succeeded" title="succeeded">Refunded</span>' in page
    assert "<fieldset" in page
    assert link(page, "Clear") == "/refunds"
    assert f"order {data.order}" in page
    export = link(page, "Export CSV")
    assert export is not None
    assert 'hx-boost="false"' in page  # a download must not be swapped into the page by htmx


# --------------------------------------------------------------------------------------------- CSV


def test_csv_export_of_the_current_filter(alice: httpx2.Client, data: Data) -> None:
    response = alice.get("/refunds.csv", params={"q": data.ref})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert re.fullmatch(
        r'attachment; filename="refunds-\d{8}T\d{6}Z\.csv"', response.headers["content-disposition"]
    )
    assert "no-store" in response.headers["cache-control"]
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == HEADER
    by_id = {r["id"]: r for r in csv.DictReader(io.StringIO(response.text, newline=""))}
    assert set(by_id) == data.on_a
    assert list(by_id) == sorted(by_id, reverse=True)  # newest first, like the list
    exact = by_id[data.ids["exact"]]
    api = data.refunds["exact"]
    assert exact["amount"] == "1250"
    assert exact["amount_decimal"] == "12.50"
    assert exact["currency"] == "EUR"
    assert exact["connection"] == "stripe-test"
    assert exact["status"] == "succeeded"
    assert exact["reason"] == "duplicate"
    assert exact["payment_reference"] == data.ref
    assert (exact["order_id"], exact["invoice_id"]) == (data.order, data.invoice)
    assert exact["gateway_refund_id"] == api["gateway_refund_id"]
    assert exact["attempts"] == str(api["attempts"])
    assert dt.datetime.fromisoformat(exact["created_at"]) == _created(api)
    assert exact["finalized_at"]
    assert by_id[data.ids["big"]]["finalized_at"] == ""
    # Metadata is personal data, encrypted at rest: never in an export.
    assert f"secret-{data.tag}" not in response.text
    assert "metadata" not in response.text
    # The filter applies: several statuses, amount range.
    picked = exported(alice, [("q", data.ref), ("status", "pending_approval"), ("status", "failed")])
    assert [r["id"] for r in picked] == [data.ids["big"]]
    assert [r["id"] for r in exported(alice, {"q": data.ref, "max_amount": "10"})] == [data.ids["ten"]]
    yen = exported(alice, {"q": data.yen_ref})
    assert [(r["amount"], r["amount_decimal"], r["currency"]) for r in yen] == [("500", "500", "JPY")]


def test_csv_defuses_spreadsheet_formulas(alice: httpx2.Client, data: Data) -> None:
    rows = {r["id"]: r for r in exported(alice, {"q": data.formula_ref})}
    assert set(rows) == data.of("formula1", "formula2", "formula3")
    cells = {
        (rows[data.ids[n]]["order_id"], rows[data.ids[n]]["invoice_id"]) for n in ("formula1", "formula2")
    }
    assert cells == {("'=1+2", "'@SUM(A1)"), ("'-2+3", "'+33 cmd")}
    third = rows[data.ids["formula3"]]
    assert (third["order_id"], third["invoice_id"]) == ("'\tpad", "'\rpad")
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def _exports(stack: Stack) -> list[tuple[Any, ...]]:
    return db_rows(
        stack,
        "SELECT actor_type, actor_id, target_type, details FROM audit_log WHERE action = ? ORDER BY id",
        "user:refunds:export",
    )


def test_csv_export_is_audited_with_its_filter(stack: Stack, alice: httpx2.Client, data: Data) -> None:
    before = len(_exports(stack))
    params = [("q", data.ref), ("status", "succeeded"), ("status", "failed"), ("min_amount", "10")]
    exported(alice, params)
    entries = _exports(stack)
    assert len(entries) == before + 1
    actor_type, actor_id, target_type, details = entries[-1]
    assert (actor_type, target_type) == ("user", "refunds")
    assert "alice" in actor_id
    assert json.loads(details) == {
        "filter": {"q": data.ref, "status": ["succeeded", "failed"], "min_amount": "10"}
    }
    # A refused filter exports nothing and records nothing.
    assert alice.get("/refunds.csv", params={"status": "bogus"}).status_code == 422
    assert len(_exports(stack)) == before + 1
    verified = stack.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr


@pytest.mark.parametrize(
    ("user", "expected"), [("alice-viewer", 200), ("ivan-initiator", 200), ("oscar-outsider", 403)]
)
def test_csv_export_needs_the_same_role_as_the_list(stack: Stack, user: str, expected: int) -> None:
    with contextlib.closing(stack.sign_in(user)) as client:
        assert client.get("/refunds.csv", params={"q": "none"}).status_code == expected
        assert client.get("/refunds").status_code == expected


def test_csv_export_needs_a_session(stack: Stack) -> None:
    with httpx2.Client(base_url=stack.web_url, follow_redirects=False, timeout=30) as anonymous:
        response = anonymous.get("/refunds.csv", params={"status": "failed"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?next=")


async def test_export_walks_every_row_in_keyset_batches(stack: Stack, data: Data) -> None:
    """The batches the export streams: every matching refund once, newest first, whatever the size."""
    from types import SimpleNamespace

    from refundwatch.db.engine import Database
    from refundwatch.db.models import Refund
    from refundwatch.refunds.queries import walk_rows

    db = Database(stack.database_url, pool_size=2)
    rt: Any = SimpleNamespace(db=db)
    terms = [Refund.payment_reference == data.ref]
    try:
        for batch, sizes in ((2, [2, 2]), (3, [3, 1]), (4, [4]), (100, [4])):
            batches = [rows async for rows in walk_rows(rt, terms, [Refund.amount], batch=batch)]
            assert [len(b) for b in batches] == sizes
            ids = [str(row.id) for rows in batches for row in rows]
            assert ids == sorted(data.on_a, reverse=True)
    finally:
        await db.dispose()


# --------------------------------------------------------------------------------------------- API


def test_api_list_keeps_its_own_parameters(stack: Stack, data: Data) -> None:
    """CONTRACT §4: the API's filters are unchanged; the page's new ones are not API parameters."""
    with stack.api() as client:
        body = client.get("/api/v1/refunds", params={"payment_reference": data.ref, "limit": 200}).json()
        assert {r["id"] for r in body["data"]} == data.on_a
        assert body["has_more"] is False
        succeeded = client.get(
            "/api/v1/refunds", params={"payment_reference": data.ref, "status": "succeeded"}
        ).json()
        assert {r["id"] for r in succeeded["data"]} == data.of("ten", "exact", "above")
        bad = client.get("/api/v1/refunds", params={"status": "bogus"})
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")


def _id(stack: Stack, refund_id: str) -> object:
    return refund_id if stack.backend == "postgresql" else uuid.UUID(refund_id).bytes
