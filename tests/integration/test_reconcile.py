"""Reconciliation from the command line and the API (CONTRACT §3, §4), on both databases: a Stripe
itemized payout reconciliation report, written in Stripe's own format for refunds the stack really
executed, imported with ``refundwatch reconcile import`` and matched line by line."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import uuid
from typing import Any

import pytest
from test_staff_pages import signed_in

from refundwatch.audit.actions import Actor
from refundwatch.config import Settings
from refundwatch.reconciliation.checks import IMPORTER_GRACE, check
from refundwatch.reconciliation.importing import import_report
from refundwatch.runtime import Runtime
from refundwatch.simulator.stripe.settlement import COLUMNS
from stack import Stack, db_rows, db_write, wait_until
from stripe_reports import imported, line, report, succeeded

pytestmark = pytest.mark.slow


def breaks(stack: Stack, **params: str) -> list[dict[str, Any]]:
    with stack.api() as client:
        response = client.get("/api/v1/reconciliation/breaks", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def about(found: list[dict[str, Any]], refund_id: str) -> list[str]:
    return [b["kind"] for b in found if b["refund_id"] == refund_id]


def test_a_report_that_agrees_gives_no_breaks_and_importing_it_again_adds_nothing(stack: Stack) -> None:
    refunds = [succeeded(stack, amount) for amount in (1_250, 990, 5_000)]
    path = report(stack, [*(line(r) for r in refunds), line(category="charge", gross="100.00", net="97.10")])
    assert imported(stack, path) == f"{path.name}: 4 lines read, 3 matched, 0 breaks found"
    again = imported(stack, path)
    assert again.splitlines()[0] == f"{path.name}: already imported (4 lines); nothing added"
    rows = db_rows(stack, "SELECT count(*) FROM settlement_lines WHERE raw LIKE ?", f"%{refunds[0]['id']}%")
    assert rows == [(1,)]
    for refund in refunds:
        assert about(breaks(stack), refund["id"]) == []


def test_each_discrepancy_is_found_as_its_own_kind(stack: Stack) -> None:
    ok, changed, failed_later = (succeeded(stack, amount) for amount in (2_000, 3_000, 4_000))
    first = line(ok)
    rows = [
        first,
        line(changed, gross="-29.99", net="-29.99"),  # the processor refunded 1 cent less
        line(failed_later),
        line(failed_later, category="refund_failure"),  # the bank sent it back
        line(
            gross="-12.34", net="-12.34", source_id=f"re_foreign{uuid.uuid4().hex[:8]}"
        ),  # made in the Dashboard
        dict(first),  # the same balance transaction twice
        line(category="mystery_category", gross="-1.00", net="-1.00"),
    ]
    path = report(stack, rows)
    out = imported(stack, path)
    assert out.startswith(f"{path.name}: 7 lines read, 2 matched, 5 breaks found"), out
    open_breaks = breaks(stack, status="open")
    assert about(open_breaks, changed["id"]) == ["amount_mismatch"]
    (mismatch,) = [b for b in open_breaks if b["refund_id"] == changed["id"]]
    assert (mismatch["expected"], mismatch["actual"], mismatch["currency"]) == (3_000, 2_999, "EUR")
    assert about(open_breaks, failed_later["id"]) == ["reversed_after_success"]
    reversed_now = stack.get(failed_later["id"])
    assert reversed_now["status"] == "reversed"
    assert reversed_now["events"][-1]["source"] == "reconciliation"
    kinds = {b["kind"] for b in open_breaks}
    assert {"missing_local", "duplicate_line", "unmapped"} <= kinds
    (foreign,) = [b for b in open_breaks if b["kind"] == "missing_local" and b["actual"] == 1_234]
    assert foreign["gateway_refund_id"].startswith("re_foreign")
    assert about(open_breaks, ok["id"]) == ["duplicate_line"]  # its line came twice: the break names it
    only = breaks(stack, kind="unmapped")
    assert only
    assert {b["kind"] for b in only} == {"unmapped"}
    check = stack.cli("reconcile", "check")
    assert check.returncode == 0
    assert check.stdout.startswith("open breaks: ")
    for kind in ("amount_mismatch", "reversed_after_success", "missing_local", "duplicate_line", "unmapped"):
        assert kind in check.stdout, check.stdout


def test_the_same_lines_in_another_form_open_nothing_twice(stack: Stack) -> None:
    """A report run again with its columns in another order (or the API's answer for what a file
    brought) is the same processor lines in another text. Compared by raw text, each was "matched
    afresh": an unknown refund's missing_local and a duplicated line's duplicate_line were opened a
    second time, counting the unreconciled money twice. A duplicate_line break now names its refund."""
    ok, doubled = succeeded(stack, 1_300), succeeded(stack, 1_700)
    foreign = line(gross="-4.56", net="-4.56", source_id=f"re_foreign{uuid.uuid4().hex[:8]}")
    twice = line(doubled)
    rows = [line(ok), twice, dict(twice), foreign]  # the same balance transaction twice
    first = imported(stack, report(stack, rows))
    assert "4 lines read, 2 matched, 2 breaks found" in first, first
    (duplicate,) = [b for b in breaks(stack, kind="duplicate_line") if b["refund_id"] == doubled["id"]]
    assert duplicate["actual"] == 1_700
    before = breaks(stack, status="open")
    again = report(stack, rows, columns=list(reversed(COLUMNS)))
    assert "4 lines read, 2 matched, 0 breaks found" in imported(stack, again)
    assert breaks(stack, status="open") == before


def test_a_bad_file_is_refused_in_one_line_and_nothing_of_it_is_kept(stack: Stack) -> None:
    refund = succeeded(stack, 1_500)
    before = db_rows(stack, "SELECT count(*) FROM settlement_lines")
    bad = report(stack, [line(refund), line(refund, gross="-15.001")])  # three decimals for EUR
    result = stack.cli("reconcile", "import", "--connection", "stripe-test", str(bad), check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "row 3" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count(bad.name) == 1, result.stderr  # it once read "x.csv: x.csv: row 3: …"
    # An amount no payment has: it overflowed BIGINT in matching, which then failed every later
    # import and check of the connection (SQLite), or lost the file's breaks (PostgreSQL).
    huge = report(stack, [line(refund), line(gross="-99999999999999.99", net="-99999999999999.99")])
    result = stack.cli("reconcile", "import", "--connection", "stripe-test", str(huge), check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "row 3" in result.stderr
    assert "minor units" in result.stderr, result.stderr
    assert stack.cli("reconcile", "check").returncode == 0
    adyen = stack.workdir / "settlement_detail_report_batch_1.csv"
    adyen.write_text(
        "Company Account,Merchant Account,Psp Reference,Merchant Reference,Type\nA,B,C,D,Refunded\n"
    )
    result = stack.cli("reconcile", "import", "--connection", "stripe-test", str(adyen), check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert db_rows(stack, "SELECT count(*) FROM settlement_lines") == before
    assert db_rows(stack, "SELECT count(*) FROM settlement_files WHERE status <> 'imported'") == [(0,)]


def test_a_refund_missing_from_reports_is_a_break_after_the_delay_and_closes_when_reported(
    stack: Stack,
) -> None:
    refund = succeeded(stack, 700)
    report_without = report(stack, [line(category="charge", gross="7.00", net="7.00")])
    imported(stack, report_without)
    # Within the settlement delay it is expected, not a break.
    stack.cli("reconcile", "check")
    assert about(breaks(stack), refund["id"]) == []
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    (missing,) = [b for b in breaks(stack) if b["refund_id"] == refund["id"]]
    assert (missing["kind"], missing["status"], missing["expected"]) == ("missing_settlement", "open", 700)
    imported(stack, report(stack, [line(refund)]))
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    (closed,) = [b for b in breaks(stack) if b["refund_id"] == refund["id"]]
    assert (closed["status"], closed["resolution"]) == ("resolved", "matched")


def test_an_accounts_report_imported_for_another_of_its_connections_matches_its_refunds(
    stack: Stack,
) -> None:
    """CONTRACT §6 ``account``: a processor account's settlement report covers every connection that
    reaches it. Imported for another connection of the account than the one the refunds were made
    through, its lines were ``missing_local`` and the refunds ``missing_settlement``."""
    stack.share_stripe_account("stripe-sibling", "whsec_refundwatch_sibling")
    refunds = [succeeded(stack, amount) for amount in (1_100, 2_200)]
    # One found by the processor's refund id, one by refundwatch's id in its metadata alone; and one the
    # account made elsewhere (missing_local).
    foreign = line(gross="-12.34", net="-12.34", source_id=f"re_foreign{uuid.uuid4().hex[:8]}")
    path = report(stack, [line(refunds[0]), line(refunds[1], source_id=""), foreign])
    found = imported(stack, path, connection="stripe-sibling")
    assert found.endswith("3 lines read, 2 matched, 1 breaks found (missing_local 1)"), found
    with signed_in(stack, "alice-viewer") as alice:  # the payment's page shows the sibling's lines
        # (once the web process's connections cache holds the new account: within its 10 s)
        wait_until(
            lambda: (
                'data-match="matched">Matched<'
                in alice.get(f"/payments/{refunds[0]['payment_reference']}").text
            ),
            timeout=15,
            what="the payment page showing the line imported for the sibling",
        )
    # Each connection of the account pulls the account's report: the same lines again are repeats, not
    # breaks opened twice (review of the first version of this change).
    again = imported(stack, path)
    assert again.endswith("3 lines read, 2 matched, 0 breaks found"), again
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    for refund in refunds:
        assert about(breaks(stack), refund["id"]) == []
    assert len([b for b in breaks(stack) if b["gateway_refund_id"] == foreign["source_id"]]) == 1


def test_a_cumulative_report_brings_earlier_lines_again_without_new_breaks(stack: Stack) -> None:
    """A processor's report "so far" repeats what an earlier file brought: the same key with the same
    content is that line again. A line twice within one report is a duplicate, once, even when the
    next report repeats both copies; a line whose content changed since is matched afresh."""
    kept, twice, changed, later = (succeeded(stack, amount) for amount in (1_100, 1_200, 1_300, 1_400))
    kept_line, twice_line, changed_line = line(kept), line(twice), line(changed)
    first = report(stack, [kept_line, twice_line, dict(twice_line), changed_line])
    expected = f"{first.name}: 4 lines read, 3 matched, 1 breaks found (duplicate_line 1)"
    assert imported(stack, first) == expected
    now_less = dict(changed_line, gross="-12.99", net="-12.99")  # the processor reports it otherwise now
    second = report(stack, [kept_line, twice_line, dict(twice_line), now_less, line(later)])
    expected = f"{second.name}: 5 lines read, 3 matched, 1 breaks found (amount_mismatch 1)"
    assert imported(stack, second) == expected
    found = breaks(stack)
    assert about(found, kept["id"]) == []
    assert about(found, later["id"]) == []
    assert about(found, changed["id"]) == ["amount_mismatch"]
    duplicates = [
        b
        for b in found
        if b["kind"] == "duplicate_line" and b["gateway_refund_id"] == twice["gateway_refund_id"]
    ]
    assert len(duplicates) == 1, duplicates
    # Reported with another amount is still reported: not a missing settlement on top.
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    assert about(breaks(stack), changed["id"]) == ["amount_mismatch"]


def test_a_settled_refund_that_failed_here_goes_to_manual_review_with_the_line_as_its_source(
    stack: Stack,
) -> None:
    """The processor's report is money truth: a refund line for a refund refundwatch recorded as failed
    (found by the reference refundwatch sent, the processor's id being unknown here) is matched, and
    the state table moves the refund to manual review with its amount reserved again."""
    stack.faults()
    # refundwatch believes 6000 were captured, the processor only 1000: Stripe refuses the refund.
    refund_id = stack.refund(stack.payment(6_000, simulator_amount=1_000), 5_000).json()["id"]
    failed = stack.wait_status(refund_id, "failed")
    assert failed["status"] == "failed", failed
    settled = line(failed, source_id=f"re_settled{uuid.uuid4().hex[:8]}")
    path = report(stack, [settled, line(succeeded(stack, 800))])
    assert imported(stack, path) == f"{path.name}: 2 lines read, 2 matched, 0 breaks found"
    now = stack.get(refund_id)
    assert now["status"] == "manual_review", now
    assert now["events"][-1]["source"] == "reconciliation"
    assert "settled this refund" in now["events"][-1]["detail"]
    rows = db_rows(stack, "SELECT match FROM settlement_lines WHERE raw LIKE ?", f"%{refund_id}%")
    assert rows == [("matched",)]


def test_the_same_file_imported_twice_at_once_is_stored_once_and_never_half_removed(stack: Stack) -> None:
    """Two people (or a person and the worker) import the same report at the same moment. Before the
    heartbeat, the second took the first's file, still ``importing``, for a crashed import and removed
    its lines while they were being written. Now one import stores the file and the other adds nothing:
    it finds it imported, or is refused in one line because it is being imported right now."""
    rows = [line(category="charge", gross="1.00", net="0.97") for _ in range(30_000)]
    path = report(stack, rows)
    command = ["reconcile", "import", "--connection", "stripe-test", str(path)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: stack.cli(*command, check=False), range(2)))
    outcomes = sorted((r.returncode, (r.stdout + r.stderr).strip()) for r in results)
    assert outcomes[0][0] == 0, outcomes
    assert outcomes[0][1].startswith(f"{path.name}: 30000 lines read"), outcomes
    second_code, second = outcomes[1]
    if second_code == 0:
        assert f"{path.name}: already imported (30000 lines); nothing added" in second, outcomes
    else:
        assert len(second.splitlines()) == 1, second
        assert "is being imported right now" in second, second
        assert "Traceback" not in second
    files = db_rows(stack, "SELECT id, status, lines FROM settlement_files WHERE name = ?", path.name)
    assert [(status, count) for _, status, count in files] == [("imported", 30_000)], files
    stored = db_rows(stack, "SELECT count(*) FROM settlement_lines WHERE file_id = ?", files[0][0])
    assert stored == [(30_000,)]


def test_lines_across_matching_batches_keep_duplicates_and_repeats_apart(stack: Stack) -> None:
    """A report longer than one matching batch (2,000 lines), with a line duplicated across the first
    two batches: on PostgreSQL a batch is decided while the one before it is still being written, so
    the second copy is found through that batch's verdicts in memory. A cumulative report repeating
    it all adds only its own new lines."""
    foreign = [
        line(gross="-1.00", net="-1.00", source_id=f"re_far{n}_{uuid.uuid4().hex[:6]}") for n in range(2_100)
    ]
    rows = [*foreign[:2_050], dict(foreign[5]), *foreign[2_050:]]
    first = report(stack, rows)
    assert imported(stack, first).startswith(f"{first.name}: 2101 lines read, 0 matched, 2101 breaks found")
    new = [line(gross="-2.00", net="-2.00", source_id=f"re_new{n}_{uuid.uuid4().hex[:6]}") for n in range(3)]
    second = report(stack, [*rows, *new])
    assert imported(stack, second).startswith(f"{second.name}: 2104 lines read, 0 matched, 3 breaks found")
    kinds = db_rows(
        stack,
        "SELECT b.kind, count(*) FROM reconciliation_breaks b JOIN settlement_lines l ON b.line_id = l.id"
        " WHERE l.file_id IN (SELECT id FROM settlement_files WHERE name IN (?, ?)) GROUP BY b.kind",
        first.name,
        second.name,
    )
    assert sorted(kinds) == [("duplicate_line", 1), ("missing_local", 2_103)], kinds


def _settled_after_reversal(stack: Stack, refund_id: str) -> None:
    """The refund's report of failure was decided before its settlement line: the failure reversed it,
    and the settlement that followed was recorded and ignored ("has since reversed")."""
    refund = stack.get(refund_id)
    assert refund["status"] == "reversed", refund
    last = refund["events"][-1]
    assert last["source"] == "reconciliation", last
    assert "settled this refund — ignored" in last["detail"], last


def test_a_refund_failure_ahead_of_its_refunds_line_is_decided_first(stack: Stack) -> None:
    """Lines are decided in report order. A refund line that agrees with its refund is stored already
    matched on PostgreSQL, unless a refund failure ahead of it (found by the processor's refund id, or
    by the reference refundwatch sent) concerns the same refund: the failure reverses the refund first,
    and the refund line then only confirms money refundwatch already knows was taken back. (The line
    found by reference comes a matching batch later, where its refund is read afresh.)"""
    by_id, by_reference, plain = (succeeded(stack, amount) for amount in (2_100, 2_200, 2_300))
    unknown_id = f"re_elsewhere{uuid.uuid4().hex[:8]}"
    charges = [line(category="charge", gross="1.00", net="0.97") for _ in range(2_000)]
    rows = [
        line(by_id, category="refund_failure"),
        line(by_reference, category="refund_failure", source_id=unknown_id),
        line(by_id),
        *charges,
        line(by_reference),
        line(plain),
    ]
    path = report(stack, rows)
    expected = f"{path.name}: 2005 lines read, 3 matched, 2 breaks found (reversed_after_success 2)"
    assert imported(stack, path) == expected
    _settled_after_reversal(stack, by_id["id"])
    _settled_after_reversal(stack, by_reference["id"])
    assert stack.get(plain["id"])["status"] == "succeeded"


def test_a_refund_failure_imported_and_not_matched_yet_is_decided_before_a_later_file(stack: Stack) -> None:
    """A refund failure stored by an import whose matching has not run yet (the process stopped in
    between) comes before the lines of any later file: a later file's line for the same refund is left
    to matching, which decides the failure first."""
    refund = succeeded(stack, 2_400)
    first = report(stack, [line(category="charge", gross="24.00", net="24.00")])
    imported(stack, first)
    (file_id,) = db_rows(stack, "SELECT id FROM settlement_files WHERE name = ?", first.name)[0]
    # The failure as that import would have stored it, not matched yet.
    db_write(
        stack,
        "INSERT INTO settlement_lines (file_id, connection_id, row_number, row_hash, raw, line_key, kind,"
        " direction, gross, fee, net, currency, settlement_currency, gateway_refund_id, raw_type)"
        " SELECT file_id, connection_id, row_number + 1, row_hash, raw, ?, 'refund_failure', 'credit',"
        " 2400, 0, 2400, 'EUR', 'EUR', ?, 'refund_failure' FROM settlement_lines WHERE file_id = ?",
        f"txn_waiting{uuid.uuid4().hex[:8]}",
        refund["gateway_refund_id"],
        file_id,
    )
    later = report(stack, [line(refund)])
    expected = f"{later.name}: 1 lines read, 1 matched, 1 breaks found (reversed_after_success 1)"
    assert imported(stack, later) == expected
    _settled_after_reversal(stack, refund["id"])


def test_a_repeated_line_keeps_its_earlier_verdict_even_where_it_would_agree_now(stack: Stack) -> None:
    """A cumulative report repeats a line an earlier report brought when refundwatch did not know the
    refund by the processor's id yet (unknown: a missing_local break). It learns the id later; the
    repeat is still that same line, with its verdict, and opens nothing (it is not stored matched)."""
    refund = succeeded(stack, 2_500)
    later_id = f"re_learnt{uuid.uuid4().hex[:8]}"
    row = line(refund, source_id=later_id, **{"refund_metadata[refundwatch_refund_id]": ""})
    first = report(stack, [row])
    assert (
        imported(stack, first) == f"{first.name}: 1 lines read, 0 matched, 1 breaks found (missing_local 1)"
    )
    db_write(
        stack,
        "UPDATE refunds SET gateway_refund_id = ? WHERE gateway_refund_id = ?",
        later_id,
        refund["gateway_refund_id"],
    )
    second = report(stack, [row, line(category="charge", gross="25.00", net="24.25")])  # the report so far
    assert imported(stack, second) == f"{second.name}: 2 lines read, 0 matched, 0 breaks found"
    rows = db_rows(
        stack, "SELECT match FROM settlement_lines WHERE line_key = ?", row["balance_transaction_id"]
    )
    assert rows == [("missing_local",), ("missing_local",)]


def test_the_workers_schedule_leaves_a_just_imported_file_to_its_importer(stack: Stack) -> None:
    """Two matchers would split a file's lines and the importer's summary would miss the other's
    share: the scheduled check matches a file only once it has been imported for a minute (a crashed
    importer's lines are then still matched)."""
    unknown = [
        line(gross="-4.00", net="-4.00", source_id=f"re_grace{n}_{uuid.uuid4().hex[:6]}") for n in range(2)
    ]
    path = report(stack, unknown)
    actor = Actor("system", "test")

    async def import_then_check() -> tuple[int, int]:
        settings = Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url)
        rt = await Runtime.build(settings).open(redis=False, http=False)
        try:
            done = await import_report(rt, "stripe-test", path, actor)  # stored, not matched yet
            now = dt.datetime.now(dt.UTC)
            left = await check(rt, now, scheduled=True)
            later = await check(rt, now + IMPORTER_GRACE + dt.timedelta(seconds=1), scheduled=True)
            assert done.lines == 2
            return left.lines, later.lines
        finally:
            await rt.close()

    left, later = asyncio.run(import_then_check())
    assert left == 0  # the importer's, for a minute
    assert later >= 2  # then anyone's (the worker's schedule may have taken other files' lines too)
    unmatched = db_rows(
        stack,
        "SELECT COUNT(*) FROM settlement_lines l JOIN settlement_files f ON f.id = l.file_id"
        " WHERE f.name = ? AND l.match IS NULL",
        path.name,
    )
    assert unmatched[0][0] == 0
