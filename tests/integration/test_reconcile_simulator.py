"""The simulator as the other side (issue 14 §4): its settlement reports, imported with ``refundwatch
reconcile import``, agree with what refundwatch did through faults and a SIGKILLed worker (zero
breaks); then each discrepancy injected at the simulator is found as its own kind of break, with the
right amounts. Per processor, on both databases. Reports are cumulative, so every import after the
first brings the earlier lines again: they must not look like duplicates."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

from processors import PROCESSORS, kit
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "reversed", "manual_review", "canceled", "rejected")


def fetch_report(stack: Stack, processor: str) -> Path:
    response = httpx2.get(f"{stack.sim_url}/_control/reports/{processor}", timeout=30)
    assert response.status_code == 200, response.text
    path = stack.workdir / f"{processor}-settlement-{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(response.content)
    return path


def import_report(stack: Stack, processor: str) -> str:
    path = fetch_report(stack, processor)
    result = stack.cli("reconcile", "import", "--connection", kit(processor).connection, str(path))
    return result.stdout.strip()


def open_breaks(stack: Stack, processor: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"connection": kit(processor).connection, "status": "open", "limit": 200}
    with stack.api() as client:
        while True:
            page = client.get("/api/v1/reconciliation/breaks", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            found += body["data"]
            if not body.get("next_cursor"):
                return found
            params["cursor"] = body["next_cursor"]


def inject(stack: Stack, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = stack.control("discrepancies", body)
    return result


def refunds_of(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {i: stack.get(i) for i in ids}


def disagreements(stack: Stack, ids: list[str]) -> list[tuple[str, str, str | None]]:
    """Refunds not yet settled on both sides alike: (id, status here, status at the simulator). Agreed:
    final here, not pending there, and succeeded on both sides or on neither (a refund failed or
    reversed there is failed or reversed here)."""
    theirs = {row["gateway_refund_id"]: row["status"] for row in stack.ledger()}
    found = []
    for refund_id, refund in refunds_of(stack, ids).items():
        here, there = refund["status"], theirs.get(refund["gateway_refund_id"])
        if here not in FINAL or there == "pending" or (there == "succeeded") != (here == "succeeded"):
            found.append((refund_id, here, there))
    return found


def run_with_faults_and_a_crash(stack: Stack, processor: str) -> list[str]:
    """Refunds in EUR and JPY through errors, pending and failing-later refunds, and a SIGKILL."""
    stack.faults(
        processor,
        latency_ms=800,
        error_rate=0.15,
        pending_rate=0.3,
        fail_later_rate=0.3,
        reversal_rate=0.5,
        settle_ms=300,
    )
    ids: list[str] = []
    try:
        stack.stop_worker()  # created while no worker runs, so they go out together

        def create(count: int) -> None:
            for _ in range(count):
                currency = "JPY" if len(ids) % 3 == 0 else "EUR"
                reference = stack.payment(50_000, currency, processor=processor)
                response = stack.refund(reference, 1_000 + len(ids), currency=currency)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])

        create(6)
        stack.start_worker()
        wait_until(
            lambda: sum(r["status"] == "submitting" for r in refunds_of(stack, ids).values()) >= 2,
            timeout=30,
            interval=0.05,
            what="refunds in flight",
        )
        stack.procs["worker"].kill()  # SIGKILL: calls in flight, outcomes unknown
        create(3)  # more work arrives while no worker runs
        stack.start_worker()
        try:
            wait_until(lambda: not disagreements(stack, ids), timeout=60, interval=0.3, what="agreement")
        except AssertionError:
            raise AssertionError(f"the two sides disagree: {disagreements(stack, ids)}") from None
    finally:
        worker = stack.procs.get("worker")
        if worker is None or not worker.alive:
            stack.start_worker()
        stack.faults(processor)
    return ids


def succeeded(stack: Stack, processor: str, amount: int, currency: str = "EUR") -> dict[str, Any]:
    response = stack.refund(stack.payment(50_000, currency, processor=processor), amount, currency=currency)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("processor", PROCESSORS)
def test_simulator_reports_reconcile_and_each_discrepancy_is_its_own_break(
    stack: Stack, processor: str
) -> None:
    stack.connect(processor)
    first_ids = run_with_faults_and_a_crash(stack, processor)
    statuses = {r["status"] for r in refunds_of(stack, first_ids).values()}
    assert "succeeded" in statuses, statuses
    out = import_report(stack, processor)
    assert out.endswith(" 0 breaks found"), out
    stack.cli("reconcile", "check")
    assert open_breaks(stack, processor) == []

    # Fresh refunds, one per discrepancy (and one left alone), all succeeded.
    made = {
        name: succeeded(stack, processor, amount, currency)
        for name, amount, currency in [
            ("drop", 2_100, "EUR"),
            ("change", 5_000, "JPY"),
            ("fail", 2_300, "EUR"),
            ("duplicate", 2_400, "EUR"),
            ("shift", 2_500, "EUR"),
            ("plain", 2_600, "EUR"),
        ]
    }
    made = {name: stack.wait_status(r["id"], "succeeded") for name, r in made.items()}
    gw = {name: r["gateway_refund_id"] for name, r in made.items()}
    inject(stack, processor=processor, kind="drop_line", gateway_refund_id=gw["drop"])
    inject(stack, processor=processor, kind="change_amount", gateway_refund_id=gw["change"], amount=4_999)
    inject(stack, processor=processor, kind="fail_after_success", gateway_refund_id=gw["fail"])
    inject(stack, processor=processor, kind="duplicate_line", gateway_refund_id=gw["duplicate"])
    inject(stack, processor=processor, kind="shift_cutoff", gateway_refund_id=gw["shift"])
    jpy_payment = stack.payment(90_000, "JPY", processor=processor)
    foreign = inject(
        stack, processor=processor, kind="foreign_refund", payment_reference=jpy_payment, amount=1_234
    )

    out = import_report(stack, processor)
    assert out.endswith(" 4 breaks found") or " 4 breaks found (" in out, out
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    found = open_breaks(stack, processor)

    def of(name: str) -> list[dict[str, Any]]:
        return [b for b in found if b["refund_id"] == made[name]["id"] or b["gateway_refund_id"] == gw[name]]

    (missing,) = of("drop")
    assert (missing["kind"], missing["expected"], missing["currency"]) == ("missing_settlement", 2_100, "EUR")
    (mismatch,) = of("change")
    assert (mismatch["kind"], mismatch["expected"], mismatch["actual"], mismatch["currency"]) == (
        "amount_mismatch",
        5_000,
        4_999,
        "JPY",
    )
    (reversal,) = of("fail")
    assert (reversal["kind"], reversal["expected"], reversal["actual"]) == (
        "reversed_after_success",
        2_300,
        2_300,
    )
    assert stack.get(made["fail"]["id"])["status"] == "reversed"
    (duplicate,) = of("duplicate")
    assert (duplicate["kind"], duplicate["actual"]) == ("duplicate_line", 2_400)
    assert of("shift") == []
    assert of("plain") == []
    (outside,) = [b for b in found if b["gateway_refund_id"] == foreign["gateway_refund_id"]]
    assert (outside["kind"], outside["actual"], outside["currency"]) == ("missing_local", 1_234, "JPY")
    assert len(found) == 5, found
    # shift_cutoff moved the line to the next payout, nothing else.
    payouts = {
        name: {
            row[0]
            for row in db_rows(
                stack, "SELECT payout_id FROM settlement_lines WHERE gateway_refund_id = ?", gw[name]
            )
        }
        for name in ("shift", "plain")
    }
    assert len(payouts["shift"]) == 1
    assert payouts["shift"] != payouts["plain"]

    # The next report repeats all of that and adds one refund: nothing new is found.
    last = succeeded(stack, processor, 2_700)
    stack.wait_status(last["id"], "succeeded")
    out = import_report(stack, processor)
    assert out.endswith(" 0 breaks found"), out
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    assert len(open_breaks(stack, processor)) == 5


def test_another_merchant_accounts_adyen_report_is_refused(stack: Stack) -> None:
    """A settlement details report is one merchant account's. Imported for a connection of another
    account it was taken: its refunds became missing_local breaks, the connection's own missing."""
    stack.connect("adyen")
    stack.wait_status(succeeded(stack, "adyen", 1_900)["id"], "succeeded")
    path = fetch_report(stack, "adyen")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows
    assert {r["Merchant Account"] for r in rows} != {"SomeoneElseECOM"}
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "Merchant Account": "SomeoneElseECOM"} for r in rows)
    other = stack.workdir / "settlement_detail_report_batch_other.csv"
    other.write_text(out.getvalue())
    before = db_rows(stack, "SELECT count(*) FROM settlement_lines")
    result = stack.cli(
        "reconcile", "import", "--connection", kit("adyen").connection, str(other), check=False
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Merchant Account 'SomeoneElseECOM' is not this connection's" in result.stderr, result.stderr
    assert db_rows(stack, "SELECT count(*) FROM settlement_lines") == before
