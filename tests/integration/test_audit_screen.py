"""The audit screen on a running refundwatch: filters, search, keyset pages, CSV and JSON Lines exports,
readable details, the chain's state, and who may see it."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import re
import uuid

import httpx2
import pytest

from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow
ENTRY = re.compile(r'<tr id="entry-(\d+)">')


def signed_in(stack: Stack, user: str) -> contextlib.closing[httpx2.Client]:
    return contextlib.closing(stack.sign_in(user))


def entry_ids(page: str) -> list[int]:
    return [int(i) for i in ENTRY.findall(page)]


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="(/audit\?[^"]*)" rel="next">Older entries</a>', page)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture(scope="module")
def refunds(stack: Stack) -> list[str]:
    """A few refunds run to the end: each writes a creation and its transitions to the log."""
    created = [stack.refund(stack.payment(5_000), 1_250).json()["id"] for _ in range(3)]
    for refund_id in created:
        stack.wait_status(refund_id, "succeeded")
    return created


def test_details_are_readable_and_rows_link_to_their_filters(stack: Stack, refunds: list[str]) -> None:
    with signed_in(stack, "ada-admin") as ada:
        page = ada.get("/audit", params={"target": refunds[0]})
    assert page.status_code == 200
    ids = entry_ids(page.text)
    expected = db_rows(stack, "SELECT id FROM audit_log WHERE target_id = ? ORDER BY id DESC", refunds[0])
    assert ids == [row[0] for row in expected]
    assert "\\u2192" not in page.text
    assert "queued → submitting" in page.text or "submitting → processing" in page.text
    assert "<dt>amount</dt>" in page.text  # the creation's amount, with its currency
    assert '"from"' not in page.text  # no raw JSON
    assert "action=api%3Arefund%3Acreate" in page.text  # each action narrows the list


def test_filters_by_action_actor_and_search(stack: Stack, refunds: list[str]) -> None:
    with signed_in(stack, "ada-admin") as ada:
        created = ada.get("/audit", params={"action": "api:refund:create"})
        by_worker = ada.get("/audit", params={"actor": "worker", "actor_type": "system"})
        search = ada.get("/audit", params={"q": refunds[1][-12:]})
    created_ids = {
        row[0] for row in db_rows(stack, "SELECT id FROM audit_log WHERE action = 'api:refund:create'")
    }
    assert set(entry_ids(created.text)) == created_ids
    worker_ids = {
        row[0]
        for row in db_rows(
            stack, "SELECT id FROM audit_log WHERE actor_id = 'worker' AND actor_type = 'system'"
        )
    }
    assert worker_ids
    assert set(entry_ids(by_worker.text)) <= worker_ids
    assert len(entry_ids(by_worker.text)) == min(100, len(worker_ids))
    target_ids = {
        row[0] for row in db_rows(stack, "SELECT id FROM audit_log WHERE target_id = ?", refunds[1])
    }
    assert target_ids <= set(entry_ids(search.text))


def test_the_search_finds_people_by_the_name_the_page_shows(stack: Stack) -> None:
    """Staff by the name from their sign-in (not in their actor id), clients by their key's name."""
    stack.sign_in("amy-approver").close()  # her sign-in is on record, with "Amy Approver" from the ID token
    key_name = f"Returns Desk {uuid.uuid4().hex[:6]}"
    key = stack.cli("apikeys", "create", "--name", key_name, "--scopes", "refunds:write").stdout.strip()
    reference = stack.payment(4_000)
    with stack.api(key) as client:
        answer = client.post(
            "/api/v1/refunds",
            headers={"Idempotency-Key": uuid.uuid4().hex},
            json={"payment_reference": reference, "amount": 1_000, "currency": "EUR", "reason": "return"},
        )
    assert answer.status_code in (201, 202), answer.text
    refund_id = answer.json()["id"]
    amy = {row[0] for row in db_rows(stack, "SELECT id FROM audit_log WHERE actor_id LIKE 'amy-approver@%'")}
    with signed_in(stack, "ada-admin") as ada:
        by_name = ada.get("/audit", params={"q": "amy APPROVER"})  # any case, as shown on the page
        by_key = ada.get("/audit", params={"q": key_name.lower()})
        export = ada.get("/audit/export.jsonl", params={"q": "Amy Approver"})
    assert amy
    assert amy <= set(entry_ids(by_name.text))
    assert "Amy Approver" in by_name.text
    assert {line["id"] for line in map(json.loads, export.text.splitlines())} >= amy  # the export too
    created = db_rows(
        stack, "SELECT id FROM audit_log WHERE target_id = ? AND action = 'api:refund:create'", refund_id
    )
    assert created[0][0] in entry_ids(by_key.text)


def test_time_range_and_refused_filters(stack: Stack, refunds: list[str]) -> None:
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    with signed_in(stack, "ada-admin") as ada:
        later = ada.get("/audit", params={"since": future})
        everything = ada.get("/audit", params={"until": future, "action": "api:refund:create"})
        bad = ada.get("/audit", params={"since": "yesterday"})
        backwards = ada.get("/audit", params={"since": future, "until": "2020-01-01T00:00"})
    assert later.status_code == 200
    assert entry_ids(later.text) == []
    assert "No entries match these filters" in later.text
    assert len(entry_ids(everything.text)) >= len(refunds)
    assert bad.status_code == 422
    assert "is not a date and time" in bad.text
    assert backwards.status_code == 422
    assert "ends before it starts" in backwards.text


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"before": "99999999999999999999999"}, id="cursor beyond any id"),
        pytest.param({"before": "9" * 5000}, id="cursor past int()'s digit limit"),
        pytest.param({"before": "9223372036854775808"}, id="cursor one past the largest id"),
        pytest.param({"before": "\u00b2"}, id="cursor a superscript digit"),
        pytest.param({"since": "0001-01-01T00:00:00+14:00"}, id="from before year 1 in UTC"),
        pytest.param({"until": "9999-12-31T23:59:59-14:00"}, id="until after year 9999 in UTC"),
    ],
)
def test_a_cursor_or_time_out_of_range_is_refused_not_a_500(stack: Stack, params: dict[str, str]) -> None:
    with signed_in(stack, "ada-admin") as ada:
        page = ada.get("/audit", params=params)
        exports = [ada.get(f"/audit/export.{kind}", params=params) for kind in ("csv", "jsonl")]
    assert page.status_code == 422, page.text[:300]
    assert "not valid" in page.text or "is not a date and time" in page.text
    for export in exports:  # exports ignore the page cursor; a bad time is refused as on the page
        assert export.status_code in (200, 422), export.text[:300]


def test_keyset_pages_cover_the_filter_once(stack: Stack) -> None:
    count = "SELECT count(*) FROM audit_log WHERE action = 'api:payment:create'"
    for _ in range(110 - db_rows(stack, count)[0][0]):  # more than one page (100) of payment creations
        stack.payment(1_000)
    expected = [
        row[0]
        for row in db_rows(
            stack, "SELECT id FROM audit_log WHERE action = 'api:payment:create' ORDER BY id DESC"
        )
    ]
    assert len(expected) > 100
    seen: list[int] = []
    with signed_in(stack, "ada-admin") as ada:
        url: str | None = "/audit?action=api%3Apayment%3Acreate"
        while url is not None:
            page = ada.get(url)
            assert page.status_code == 200
            seen.extend(entry_ids(page.text))
            url = older_link(page.text)
    assert seen == expected


def test_exports_carry_the_filter_in_utc_and_are_audited(stack: Stack, refunds: list[str]) -> None:
    with signed_in(stack, "ada-admin") as ada:
        as_csv = ada.get("/audit/export.csv", params={"target": refunds[2]})
        as_jsonl = ada.get("/audit/export.jsonl", params={"target": refunds[2]})
    expected = [
        row[0]
        for row in db_rows(stack, "SELECT id FROM audit_log WHERE target_id = ? ORDER BY id DESC", refunds[2])
    ]
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert re.match(r'attachment; filename="audit-\d{8}T\d{6}Z\.csv"', as_csv.headers["content-disposition"])
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["id"]) for r in rows] == expected
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["at"]) for r in rows)
    assert as_jsonl.status_code == 200
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [line["id"] for line in lines] == expected
    assert all(line["at"].endswith("Z") for line in lines)
    assert any(line["details"].get("to") == "succeeded" for line in lines)  # details as JSON, not a string
    exports = db_rows(stack, "SELECT details FROM audit_log WHERE action = 'user:audit:export' ORDER BY id")
    assert [json.loads(row[0])["format"] for row in exports][-2:] == ["csv", "jsonl"]


def test_the_chain_state_shows_how_far_it_is_verified_and_the_last_anchor(
    stack: Stack, refunds: list[str]
) -> None:
    stack.cli("audit", "seal")
    anchored = stack.cli("audit", "anchor").stdout
    seq = int(re.search(r"at seq (\d+)", anchored).group(1))  # type: ignore[union-attr]
    with signed_in(stack, "ada-admin") as ada:

        def verified() -> int:
            found = re.search(r"seq 1 to <strong>(\d+)</strong>", ada.get("/audit").text)
            return int(found.group(1)) if found else 0

        wait_until(lambda: verified() >= seq, timeout=30, what="the worker verifies the sealed chain")
        page = ada.get("/audit").text
    chain = page[page.index('id="audit-chain"') : page.index("</section>")]
    # The worker anchors on its own schedule too: the last anchor is this one or a later one.
    shown = re.search(r"seq <strong>(\d+)</strong>", chain[chain.index("Last anchor") :])
    assert shown is not None, chain
    assert int(shown.group(1)) >= seq, chain
    assert "matches the chain" in chain
    assert "broken" not in chain


@pytest.mark.parametrize("user", ["alice-viewer", "ivan-initiator", "amy-approver"])
def test_only_admins_see_the_log_and_its_exports(stack: Stack, user: str) -> None:
    with signed_in(stack, user) as client:
        for path in ("/audit", "/audit/export.csv", "/audit/export.jsonl"):
            assert client.get(path).status_code == 403, (user, path)


def test_the_chain_state_names_an_entry_changed_before_the_worker_checked_it(stack: Stack) -> None:
    from test_audit import bypassing_guards  # the superuser's way around the guards

    stack.stop_worker()
    try:  # one new entry, sealed here and changed while the worker is away
        reference = stack.payment(1_000)
        stack.cli("audit", "seal")
        (entry_id, seq, details) = db_rows(
            stack,
            "SELECT id, seq, details FROM audit_log WHERE action = 'api:payment:create' AND details LIKE ?",
            f"%{reference}%",
        )[0]
        assert seq is not None, (
            f"entry #{entry_id} was not sealed: {stack.cli('audit', 'verify', check=False)}"
        )
        bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", '{"forged":true}', entry_id)
    finally:
        stack.start_worker()
        stack.wait_worker_ready()
    broken = f"broken after seq {seq - 1}: audit entry #{entry_id} (seq {seq}): content was changed"
    try:
        with signed_in(stack, "ada-admin") as ada:

            def chain() -> str:
                page = ada.get("/audit").text
                return page[page.index('id="audit-chain"') : page.index("</section>")]

            shown = wait_until(lambda: chain() if broken in chain() else None, timeout=30, what="found")
            assert "seq 1 to" not in shown
    finally:
        bypassing_guards(stack, "UPDATE audit_log SET details = ? WHERE id = ?", details, entry_id)
    with signed_in(stack, "ada-admin") as ada:

        def verified() -> int:
            found = re.search(r"seq 1 to <strong>(\d+)</strong>", ada.get("/audit").text)
            return int(found.group(1)) if found else 0

        wait_until(lambda: verified() >= seq, timeout=30, what="restored: verified past it again")
