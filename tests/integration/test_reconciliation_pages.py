"""The staff side of reconciliation on a running refundwatch, on both databases: the /reconciliation
page (filters in the URL, summary, keyset pages, audited CSV export), the drill-down to a refund and a
raw settlement line, resolving a break (who may, with what), the admin upload, the dashboard panel
(live) and the /metrics gauges. Breaks come from a Stripe report written in Stripe's own format for
refunds the stack really executed (tests/stripe_reports.py)."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from test_dashboard import SseReader
from test_metrics import scrape

from stack import Stack, db_rows, wait_until
from stripe_reports import imported, line, report, succeeded

pytestmark = pytest.mark.slow
BREAK_ROW = re.compile(r'<tr id="break-([0-9a-f-]{36})"')
FOREIGN = 3  # refunds made outside refundwatch in the report: breaks to resolve
UNMAPPED = 52  # lines of an unknown type: enough breaks for a second page


@contextlib.contextmanager
def signed_in(stack: Stack, user: str) -> Iterator[httpx2.Client]:
    client = stack.sign_in(user)
    try:
        yield client
    finally:
        client.close()


def csrf(page: str) -> str:
    found = re.search(r'name="_csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def rows_of(page: str) -> list[str]:
    return BREAK_ROW.findall(page)


def older_link(page: str) -> str | None:
    found = re.search(r'<a href="(/reconciliation\?[^"]*)" rel="next">', page)
    return found.group(1).replace("&amp;", "&") if found else None


@dataclass(frozen=True)
class World:
    changed: dict[str, Any]  # a refund the processor settled for 1 cent less
    mismatch: str  # its break
    foreign: list[str]  # missing_local breaks, one per refund made outside refundwatch
    report_name: str


def break_ids(stack: Stack, kind: str, status: str = "open") -> list[str]:
    rows = db_rows(
        stack, "SELECT id FROM reconciliation_breaks WHERE kind = ? AND status = ? ORDER BY id", kind, status
    )
    return [str(uuid.UUID(bytes=r[0]) if isinstance(r[0], bytes) else uuid.UUID(str(r[0]))) for r in rows]


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    ok, changed = succeeded(stack, 2_000), succeeded(stack, 3_000)
    rows = [
        line(ok),
        line(changed, gross="-29.99", net="-29.99"),
        *(
            line(gross="-12.34", net="-12.34", source_id=f"re_foreign{i}{uuid.uuid4().hex[:6]}")
            for i in range(3)
        ),
        *(line(category=f"mystery_{i}", gross="-1.00", net="-1.00") for i in range(UNMAPPED)),
    ]
    path = report(stack, rows)
    out = imported(stack, path)
    assert out.startswith(
        f"{path.name}: {len(rows)} lines read, 1 matched, {FOREIGN + UNMAPPED + 1} breaks"
    ), out
    (mismatch,) = break_ids(stack, "amount_mismatch")
    foreign = break_ids(stack, "missing_local")
    assert len(foreign) == FOREIGN
    return World(changed, mismatch, foreign, path.name)


# ---------------------------------------------------------------------------------------- the list


def test_the_page_lists_open_breaks_with_their_summary_and_pages_by_keyset(
    stack: Stack, world: World
) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        first = alice.get("/reconciliation")
        assert first.status_code == 200, first.text[:500]
        page = first.text
        assert '<a href="/reconciliation">Reconciliation</a>' in page  # in the menu for a viewer
        assert "Different amount" in page  # the label, with the machine word on hover
        assert 'title="amount_mismatch"' in page
        # Unreconciled in EUR: 0.01 (the mismatch) + 3 x 12.34 (foreign) + nothing for unmapped lines
        assert re.search(r'data-currency="EUR">37\.03 EUR<', page), page
        assert 'id="settlement-upload"' not in page  # upload is for admins
        assert "Resolve</a>" not in page  # a viewer reads; resolving is an approver's
        seen = rows_of(page)
        assert len(seen) == 50
        nxt = older_link(page)
        assert nxt is not None
        rest = alice.get(nxt).text
        assert not set(rows_of(rest)) & set(seen)
        seen += rows_of(rest)
        assert older_link(rest) is None
        everything = db_rows(stack, "SELECT count(*) FROM reconciliation_breaks WHERE status = 'open'")[0][0]
        assert len(seen) == everything
        assert world.mismatch in seen
        assert seen == sorted(seen, reverse=True)  # newest first


def test_filters_live_in_the_url_and_bad_ones_are_refused(stack: Stack, world: World) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        only = alice.get("/reconciliation", params={"kind": "missing_local", "connection": "stripe-test"})
        assert only.status_code == 200
        assert sorted(rows_of(only.text)) == sorted(world.foreign)
        assert "kind=missing_local" in only.text  # export and links keep the filter
        assert (
            alice.get("/reconciliation", params={"currency": "eur", "kind": "amount_mismatch"}).text.count(
                'data-kind="amount_mismatch"'
            )
            == 1
        )
        assert rows_of(alice.get("/reconciliation", params={"currency": "JPY"}).text) == []
        assert rows_of(alice.get("/reconciliation", params={"age": "over_30d"}).text) == []
        assert (
            len(rows_of(alice.get("/reconciliation", params={"age": "under_1d", "kind": "unmapped"}).text))
            == 50
        )
        for bad in (
            {"kind": "nope"},
            {"status": "maybe"},
            {"currency": "EURO"},
            {"age": "1y"},
            {"connection": "x"},
        ):
            refused = alice.get("/reconciliation", params=bad)
            assert refused.status_code == 422, bad
            assert 'id="filter-error"' in refused.text
            assert rows_of(refused.text) == []


def test_the_export_is_the_filter_in_csv_and_is_audited(stack: Stack, world: World) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        response = alice.get("/reconciliation/breaks.csv", params={"kind": "missing_local"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert sorted(r["id"] for r in rows) == sorted(world.foreign)
        assert {(r["unreconciled"], r["unreconciled_decimal"], r["currency"]) for r in rows} == {
            ("1234", "12.34", "EUR")
        }
        assert all(r["connection"] == "stripe-test" for r in rows)
        assert alice.get("/reconciliation/breaks.csv", params={"kind": "nope"}).status_code == 422
    audited = db_rows(
        stack, "SELECT details FROM audit_log WHERE action = ? ORDER BY id DESC", "user:reconciliation:export"
    )
    assert audited
    assert "missing_local" in audited[0][0]


def test_a_break_drills_down_to_its_refund_and_raw_line(stack: Stack, world: World) -> None:
    with signed_in(stack, "alice-viewer") as alice:
        page = alice.get(f"/reconciliation/breaks/{world.mismatch}")
        assert page.status_code == 200
        assert f'href="/refunds/{world.changed["id"]}"' in page.text
        assert "30.00 EUR" in page.text
        assert "29.99 EUR" in page.text
        assert "0.01 EUR" in page.text
        assert world.report_name in page.text
        assert 'id="resolve-form"' not in page.text  # viewers do not resolve
        line_id = re.search(r'href="/reconciliation/lines/(\d+)"', alice.get("/reconciliation").text)
        assert line_id
        line_page = alice.get(f"/reconciliation/lines/{line_id.group(1)}")
        assert line_page.status_code == 200
        raw, row_number = db_rows(
            stack, "SELECT raw, row_number FROM settlement_lines WHERE id = ?", int(line_id.group(1))
        )[0]
        assert f'<dd class="row-number">{row_number}</dd>' in line_page.text
        assert world.report_name in line_page.text
        assert raw.split(",")[2] in line_page.text  # the raw row (its balance transaction id)
        assert alice.get("/reconciliation/lines/999999999").status_code == 404
        assert alice.get(f"/reconciliation/breaks/{uuid.uuid4()}").status_code == 404


# ---------------------------------------------------------------------------------------- resolving


def test_resolving_needs_an_approver_a_reason_and_a_real_refund_on_that_connection(
    stack: Stack, world: World
) -> None:
    target, other = world.foreign[0], world.foreign[1]
    raw_before = db_rows(stack, "SELECT raw, match, refund_id FROM settlement_lines ORDER BY id")
    for user in ("alice-viewer", "ivan-initiator"):
        with signed_in(stack, user) as client:
            token = csrf(client.get(f"/reconciliation/breaks/{target}").text)
            refused = client.post(
                f"/reconciliation/breaks/{target}/resolve",
                data={"resolution": "accepted", "reason": "fine", "_csrf_token": token},
            )
            assert refused.status_code == 403, user
    adyen_refund = stack.refund(stack.payment(5_000, processor="adyen"), 1_000).json()["id"]
    with signed_in(stack, "amy-approver") as amy:
        page = amy.get(f"/reconciliation/breaks/{target}").text
        assert 'id="resolve-form"' in page
        token = csrf(page)

        def attempt(**form: str) -> httpx2.Response:
            return amy.post(f"/reconciliation/breaks/{target}/resolve", data={**form, "_csrf_token": token})

        cases = [
            ({"resolution": "accepted", "reason": "  "}, "A reason is required"),
            ({"resolution": "forgotten", "reason": "x"}, "resolution must be one of"),
            ({"resolution": "linked", "reason": "x"}, "linking needs the refund"),
            ({"resolution": "linked", "reason": "x", "refund_id": "abc"}, "is not a refund id"),
            ({"resolution": "linked", "reason": "x", "refund_id": str(uuid.uuid4())}, "no refund"),
            ({"resolution": "linked", "reason": "x", "refund_id": adyen_refund}, "not on this break"),
        ]
        for form, message in cases:
            refused = attempt(**form)
            assert refused.status_code == 422, form
            assert message.lower() in refused.text.lower(), (form, refused.text[:800])
        assert break_ids(stack, "missing_local").count(target) == 1  # still open
        done = attempt(
            resolution="linked", reason="made in the Dashboard for order 77", refund_id=world.changed["id"]
        )
        assert done.status_code == 303, done.text[:500]
        again = attempt(resolution="accepted", reason="twice")
        assert again.status_code == 409
        assert "resolved already" in again.text
        shown = amy.get(f"/reconciliation/breaks/{target}").text
        assert "Linked to a refund" in shown
        assert "made in the Dashboard for order 77" in shown
        assert f'href="/refunds/{world.changed["id"]}"' in shown
        assert target not in rows_of(amy.get("/reconciliation", params={"kind": "missing_local"}).text)
        assert target in rows_of(amy.get("/reconciliation", params={"status": "resolved"}).text)
    with signed_in(stack, "ada-admin") as ada:  # admins resolve too
        token = csrf(ada.get(f"/reconciliation/breaks/{other}").text)
        written = ada.post(
            f"/reconciliation/breaks/{other}/resolve",
            data={"resolution": "written_off", "reason": "below the threshold", "_csrf_token": token},
        )
        assert written.status_code == 303
    assert db_rows(stack, "SELECT raw, match, refund_id FROM settlement_lines ORDER BY id") == raw_before
    entries = db_rows(
        stack,
        "SELECT actor_id, target_type, details FROM audit_log WHERE action = ? AND target_id IN (?, ?)",
        "reconciliation:break:resolve",
        target,
        other,
    )
    assert len(entries) == 2
    linked = next(e for e in entries if "linked" in e[2])
    assert linked[1] == "reconciliation_break"
    assert world.changed["id"] in linked[2]
    assert "made in the Dashboard" in linked[2]


# ---------------------------------------------------------------------------------------- upload


def test_an_admin_uploads_a_report_and_bad_files_get_a_clear_message(stack: Stack, world: World) -> None:
    refund = succeeded(stack, 4_200)
    path = report(
        stack, [line(refund), line(gross="-5.00", net="-5.00", source_id=f"re_up{uuid.uuid4().hex[:8]}")]
    )
    body = path.read_bytes()
    with signed_in(stack, "ada-admin") as ada:
        page = ada.get("/reconciliation").text
        assert 'id="settlement-upload"' in page
        token = csrf(page)

        def upload(content: bytes, name: str = path.name, connection: str = "stripe-test") -> httpx2.Response:
            return ada.post(
                "/reconciliation/upload",
                data={"connection": connection, "_csrf_token": token},
                files={"file": (name, content, "text/csv")},
            )

        done = upload(body)
        assert done.status_code == 200, done.text[:500]
        said = " ".join(done.text.split())
        assert f"<strong>{path.name}</strong>: 2 lines read, 1 matched, 1 break found." in said, said
        again = upload(body)
        assert "already imported (2 lines); nothing added" in again.text
        bad = upload(b"automatic_payout_id,reporting_category\npo_1,refund\n", "broken.csv")
        assert bad.status_code == 422
        assert 'id="upload-error"' in bad.text
        assert "broken.csv" in bad.text
        assert "Traceback" not in bad.text
        assert upload(b"", "empty.csv").status_code == 422
        assert "no connection" in upload(body, connection="nope").text
        big = upload(b"x" * (21 * 1024 * 1024), "huge.csv")
        assert big.status_code == 413
    lines = db_rows(stack, "SELECT count(*) FROM settlement_lines WHERE raw LIKE ?", f"%{refund['id']}%")
    assert lines == [(1,)]
    assert db_rows(stack, "SELECT count(*) FROM settlement_files WHERE name = ?", "broken.csv") == [(0,)]
    assert stack.get(refund["id"])["status"] == "succeeded"
    with signed_in(stack, "amy-approver") as amy:
        token = csrf(amy.get("/reconciliation").text)
        refused = amy.post(
            "/reconciliation/upload",
            data={"connection": "stripe-test", "_csrf_token": token},
            files={"file": (path.name, body, "text/csv")},
        )
        assert refused.status_code == 403


# ---------------------------------------------------------------------------------------- dashboard, metrics


def test_the_dashboard_panel_and_metrics_show_the_same_figures_and_the_panel_is_live(
    stack: Stack, world: World
) -> None:
    def figures() -> tuple[int, int, int]:
        lines, matched = db_rows(
            stack,
            "SELECT count(*), sum(CASE WHEN match = 'matched' THEN 1 ELSE 0 END) FROM settlement_lines "
            "WHERE kind IN ('refund', 'refund_failure') AND match IS NOT NULL",
        )[0]
        opened = db_rows(stack, "SELECT count(*) FROM reconciliation_breaks WHERE status = 'open'")[0][0]
        return int(lines), int(matched), int(opened)

    lines, matched, opened = figures()
    with signed_in(stack, "alice-viewer") as alice:
        panel = alice.get("/dashboard/panels/reconciliation").text
        assert f'<td class="num" id="recon-open-breaks">{opened}</td>' in panel
        assert f"{matched} of {lines} refund lines" in panel
        assert f"{100 * matched / lines:.1f}%" in panel
        assert 'id="panel-reconciliation"' in alice.get("/").text
        result = scrape(stack)
        assert result.types["refundwatch_reconciliation_open_breaks"] == "gauge"
        assert (
            sum(v for (n, _), v in result.samples.items() if n == "refundwatch_reconciliation_open_breaks")
            == opened
        )
        assert result.value("refundwatch_reconciliation_refund_lines", connection="stripe-test") == lines
        assert (
            result.value("refundwatch_reconciliation_matched_refund_lines", connection="stripe-test")
            == matched
        )
        assert result.value("refundwatch_reconciliation_matched_ratio") == pytest.approx(matched / lines)
        assert result.value("refundwatch_reconciliation_open_breaks_oldest_seconds") > 0

        reader = SseReader(alice, f"{stack.web_url}/dashboard/stream?range=1h")
        try:
            target = break_ids(stack, "unmapped")[0]
            with signed_in(stack, "amy-approver") as amy:
                token = csrf(amy.get(f"/reconciliation/breaks/{target}").text)
                resolved = amy.post(
                    f"/reconciliation/breaks/{target}/resolve",
                    data={"resolution": "accepted", "reason": "a test row", "_csrf_token": token},
                )
                assert resolved.status_code == 303
            wanted = f'id="recon-open-breaks">{figures()[2]}</td>'
            wait_until(
                lambda: reader.seen("reconciliation", wanted), timeout=20, what="the panel redrawn live"
            )
        finally:
            reader.stop()
