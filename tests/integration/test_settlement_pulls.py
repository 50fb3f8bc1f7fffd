"""refundwatch pulls each processor's settlement data itself (issue 14 §2), announced as the processor
does (Stripe pays a payout: ``payout.paid``, the worker pulls its balance transactions; Adyen publishes
a batch: ``REPORT_AVAILABLE``, the worker downloads the report as the report user). Per processor: it is
imported and matched once, however often announced; the next holds only what came after; a discrepancy
reads the same as in the simulator's CSV report. Then each one's own: Adyen refuses a URL elsewhere
unasked; failed pulls (Stripe: 5xx, garbled, webhook lost; Adyen: wrong report password) leave nothing,
say why in one line, and the worker's schedule pulls them later. One stack per database for all."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx2
import pytest
import stripe

from processors import (
    ADYEN_HMAC_KEY,
    ADYEN_MERCHANT,
    ADYEN_REPORT_PASSWORD,
    PROCESSORS,
    STRIPE_SECRET,
    connections_toml,
    kit,
)
from refundwatch.config import Settings
from refundwatch.reconciliation.parsing import parser_for
from refundwatch.reconciliation.pulling import puller_for
from refundwatch.runtime import Runtime
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

PULL, PULL_FAILED = "reconciliation:settlement:pull", "reconciliation:settlement:pull_failed"


@pytest.fixture(scope="module")
def pulls(stack: Stack) -> Stack:
    """The stack with every processor's connection, the worker running the pull schedule every minute."""
    for processor in PULLED:
        stack.connect(processor)
        stack.faults(processor)
    stack.env["REFUNDWATCH_RECONCILE_PULL_MINUTES"] = "1"
    restart_worker(stack)
    return stack


def restart_worker(stack: Stack) -> None:
    """A fresh worker: it reads the connections anew (its cache would take up to 10 s)."""
    stack.stop_worker()
    stack.start_worker()
    stack.wait_worker_ready()


# --- what every processor's pull is read by ---------------------------------------------------------
def succeeded_refunds(
    stack: Stack, processor: str, *amounts: int, currency: str = "EUR"
) -> list[dict[str, Any]]:
    made = []
    for amount in amounts:
        response = stack.refund(
            stack.payment(amount * 4, currency, processor=processor), amount, currency=currency
        )
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    return [stack.wait_status(refund_id, "succeeded") for refund_id in made]


def file_of(stack: Stack, name: str) -> list[tuple[Any, ...]]:
    return db_rows(stack, "SELECT status, lines, source FROM settlement_files WHERE name = ?", name)


def lines_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    rows = db_rows(
        stack,
        "SELECT l.line_key, l.kind, l.gross, l.currency, l.gateway_refund_id, l.payout_id, l.match "
        "FROM settlement_lines l JOIN settlement_files f ON f.id = l.file_id WHERE f.name = ? "
        "ORDER BY l.row_number",
        name,
    )
    keys = ("line_key", "kind", "gross", "currency", "gateway_refund_id", "payout_id", "match")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def pulled(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The file's lines once imported and every one of them matched."""
    lines = lines_of(stack, name)
    return lines if lines and all(line["match"] for line in lines) else []


def audited(stack: Stack, action: str, ref: str) -> list[dict[str, Any]]:
    rows = db_rows(stack, "SELECT details FROM audit_log WHERE action = ? ORDER BY id", action)
    found = [json.loads(row[0]) for row in rows]
    return [details for details in found if details.get("ref") == ref]


def open_breaks(stack: Stack, processor: str) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"connection": kit(processor).connection, "status": "open", "limit": 200}
    with stack.api() as client:
        page = client.get("/api/v1/reconciliation/breaks", params=params)
    assert page.status_code == 200, page.text
    breaks: list[dict[str, Any]] = page.json()["data"]
    return breaks


def notices(stack: Stack, processor: str) -> list[tuple[Any, ...]]:
    """(event id, outcome) of the connection's settlement announcements, in the order received."""
    return db_rows(
        stack,
        "SELECT w.event_id, w.outcome FROM webhook_events w JOIN connections c ON c.id = w.connection_id "
        "WHERE c.name = ? AND w.event_type = ? ORDER BY w.received_at",
        kit(processor).connection,
        kit(processor).settlement_notice,
    )


def due(stack: Stack, processor: str) -> list[str]:
    """What the worker's schedule would pull for the processor's connection now (its puller's due)."""

    async def run() -> list[str]:
        rt = Runtime.build(Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url))
        try:
            conn = await rt.connections.by_name(kit(processor).connection)
            puller = puller_for(processor)
            assert conn is not None
            assert puller is not None
            return await puller.due(rt, conn)
        finally:
            await rt.close()

    return asyncio.run(run())


# --- how each processor announces settlement data ---------------------------------------------------
@dataclass(frozen=True)
class Settlement:
    """Settlement data the simulator announced to refundwatch."""

    ref: str  # what refundwatch pulls and audits: Stripe's payout id, Adyen's report URL
    file: str  # the settlement file refundwatch imports it as
    payout_id: str  # what its lines name as their payout: Stripe's payout, Adyen's batch number
    announced: dict[str, Any]  # as the simulator told it: Stripe's payout object, Adyen's batch


def pay_stripe_payouts(stack: Stack) -> list[Settlement]:
    """Close Stripe's running payout period: the payouts paid to the connection (one per currency)."""
    paid = stack.control("payouts/pay", {"processor": "stripe"})["paid"]
    payouts = [p["payout"] for p in paid if kit("stripe").connection in p["connections"]]
    return [Settlement(p["id"], f"stripe payout {p['id']}", p["id"], p) for p in payouts]


def publish_adyen_batch(stack: Stack, **body: Any) -> list[Settlement]:
    """Close the merchant account's batch (``batch``: announce a published one again)."""
    connection = kit("adyen").connection
    before = stack.control(f"reports/adyen/batches?connection={connection}")
    (batch,) = stack.control("reports/adyen/publish", {"connection": connection, **body})
    assert batch["file"] == f"settlement_detail_report_batch_{batch['batch']}.csv"
    if "batch" not in body:  # a new batch follows the last one published
        assert batch["batch"] == max((b["batch"] for b in before), default=batch["batch"] - 1) + 1
    return [Settlement(batch["url"], batch["file"], str(batch["batch"]), batch)]


def announce_stripe_payout(stack: Stack, payout: dict[str, Any]) -> None:
    """Deliver a signed ``payout.paid`` ourselves, as Stripe would (again)."""
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    body = json.dumps(
        {"id": event_id, "object": "event", "type": "payout.paid", "data": {"object": payout}}
    ).encode()
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), STRIPE_SECRET)
    response = httpx2.post(
        f"{stack.web_url}/webhooks/{kit('stripe').connection}",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": str(signature)},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def announce_adyen_report(stack: Stack, file: str, url: str) -> None:
    """Deliver a REPORT_AVAILABLE signed with the connection's HMAC key ourselves, as Adyen would."""
    signed = ":".join([file, "", ADYEN_MERCHANT, "", "0", "EUR", "REPORT_AVAILABLE", "true"])
    digest = hmac.new(bytes.fromhex(ADYEN_HMAC_KEY), signed.encode(), hashlib.sha256).digest()
    item: dict[str, Any] = {
        "additionalData": {"hmacSignature": base64.b64encode(digest).decode()},
        "amount": {"currency": "EUR", "value": 0},
        "eventCode": "REPORT_AVAILABLE",
        "eventDate": "2026-12-06T04:00:00+01:00",
        "merchantAccountCode": ADYEN_MERCHANT,
        "merchantReference": "",
        "pspReference": file,
        "reason": url,
        "success": "true",
    }
    response = httpx2.post(
        f"{stack.web_url}/webhooks/{kit('adyen').connection}",
        json={"live": "false", "notificationItems": [{"NotificationRequestItem": item}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.text == "[accepted]"


def stripe_announces_again(stack: Stack, payout: Settlement) -> None:
    """A new ``payout.paid`` for the same payout: pulled again, audited as already imported."""
    announce_stripe_payout(stack, payout.announced)
    wait_until(
        lambda: any(d.get("already") for d in audited(stack, PULL, payout.ref)),
        timeout=60,
        what="the pull again",
    )


def adyen_announces_again(stack: Stack, batch: Settlement) -> None:
    """Adyen's redelivery of the same REPORT_AVAILABLE: stored once, nothing pulled."""
    publish_adyen_batch(stack, batch=batch.announced["batch"])

    def states() -> list[str]:
        rows: list[dict[str, Any]] = stack.control("webhooks?processor=adyen")
        return [d["state"] for d in rows if batch.file in d["event_id"]]

    wait_until(lambda: states() == ["delivered", "delivered"], timeout=60, what="the redelivery acknowledged")
    event_id = f"{batch.file}:REPORT_AVAILABLE:true"
    assert [row for row in notices(stack, "adyen") if row[0] == event_id] == [
        (event_id, "REPORT_AVAILABLE: settlement pull queued")
    ]


@dataclass(frozen=True)
class Announcing:
    settle: Callable[[Stack], list[Settlement]]  # what is booked so far, announced to refundwatch
    announce_again: Callable[[Stack, Settlement], None]  # and once more, as the processor may
    currencies_per_file: list[list[str]]  # for refunds in EUR and JPY: Stripe pays per currency


ANNOUNCING = {
    "stripe": Announcing(pay_stripe_payouts, stripe_announces_again, [["EUR"], ["JPY"]]),
    "adyen": Announcing(publish_adyen_batch, adyen_announces_again, [["EUR", "JPY"]]),
}
# PayPal announces no settlement data refundwatch could pull (its STL report is a file, imported).
PULLED = [processor for processor in PROCESSORS if kit(processor).settlement_notice]


# --- every processor ----------------------------------------------------------------------------------
@pytest.mark.parametrize("processor", PULLED)
def test_announced_settlement_data_is_pulled_imported_and_matched_once(pulls: Stack, processor: str) -> None:
    stack, announcing = pulls, ANNOUNCING[processor]
    made = succeeded_refunds(stack, processor, 1_100, 1_200) + succeeded_refunds(
        stack, processor, 1_300, currency="JPY"
    )
    settlements = announcing.settle(stack)
    refund_lines: list[dict[str, Any]] = []
    source = kit(processor).settlement_source
    for settlement in settlements:
        lines = wait_until(partial(pulled, stack, settlement.file), timeout=60, what="the data pulled")
        assert {line["payout_id"] for line in lines} == {settlement.payout_id}
        assert file_of(stack, settlement.file) == [("imported", len(lines), source)]
        (done,) = [d for d in audited(stack, PULL, settlement.ref) if not d.get("already")]
        assert (done["file"], done["lines"], done["source"]) == (settlement.file, len(lines), source)
        refund_lines += [line for line in lines if line["kind"] == "refund"]
    currencies = sorted(sorted({line["currency"] for line in lines_of(stack, s.file)}) for s in settlements)
    assert currencies == announcing.currencies_per_file
    assert sorted(
        (line["gateway_refund_id"], line["gross"], line["currency"]) for line in refund_lines
    ) == sorted((r["gateway_refund_id"], -r["amount"], r["currency"]) for r in made)
    assert {line["match"] for line in refund_lines} == {"matched"}
    assert open_breaks(stack, processor) == []
    # Each announcement's outcome names the pull it queued.
    queued = f"{kit(processor).settlement_notice}: settlement pull queued"
    assert [outcome for _, outcome in notices(stack, processor)] == [queued] * len(settlements)

    # Announced again: nothing is added.
    first = settlements[0]
    before = lines_of(stack, first.file)
    announcing.announce_again(stack, first)
    assert lines_of(stack, first.file) == before
    assert len(file_of(stack, first.file)) == 1
    assert open_breaks(stack, processor) == []

    # The next settlement holds only what came after: its own file, nothing from the first again.
    (later,) = succeeded_refunds(stack, processor, 1_400)
    (following,) = announcing.settle(stack)
    assert following.file not in {s.file for s in settlements}
    newer = wait_until(lambda: pulled(stack, following.file), timeout=60, what="the next settlement")
    assert [line["gateway_refund_id"] for line in newer if line["kind"] == "refund"] == [
        later["gateway_refund_id"]
    ]
    assert open_breaks(stack, processor) == []


@pytest.mark.parametrize("processor", PULLED)
def test_a_discrepancy_reads_the_same_in_the_pull_as_in_the_control_report(
    pulls: Stack, processor: str
) -> None:
    stack = pulls
    changed, dropped, doubled, plain = succeeded_refunds(stack, processor, 2_000, 2_100, 2_200, 2_300)
    for kind, refund, extra in [
        ("change_amount", changed, {"amount": 1_999}),
        ("drop_line", dropped, {}),
        ("duplicate_line", doubled, {}),
    ]:
        body = {
            "processor": processor,
            "kind": kind,
            "gateway_refund_id": refund["gateway_refund_id"],
            **extra,
        }
        stack.control("discrepancies", body)
    (settlement,) = ANNOUNCING[processor].settle(stack)
    wait_until(lambda: pulled(stack, settlement.file), timeout=60, what="the data pulled")
    ours = {r["gateway_refund_id"] for r in (changed, dropped, doubled, plain)}
    in_pull = sorted(
        (line["line_key"], line["gross"], line["payout_id"])
        for line in lines_of(stack, settlement.file)
        if line["gateway_refund_id"] in ours
    )
    report = httpx2.get(
        f"{stack.sim_url}/_control/reports/{processor}",
        params={"connection": kit(processor).connection},
        timeout=30,
    )
    assert report.status_code == 200, report.text
    in_report = sorted(
        (line.line_key, line.gross, line.payout_id)
        for line in parser_for(processor).parse(io.BytesIO(report.content), "report.csv")
        if line.gateway_refund_id in ours
    )
    assert in_pull == in_report
    assert sorted(gross for _, gross, _ in in_pull) == [-2_300, -2_200, -2_200, -1_999]
    # Matching the pull finds what it holds; the check then finds what it lacks.
    matched = {(b["kind"], b["gateway_refund_id"]) for b in open_breaks(stack, processor)}
    assert ("amount_mismatch", changed["gateway_refund_id"]) in matched
    assert ("duplicate_line", doubled["gateway_refund_id"]) in matched
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    found = {(b["kind"], b["gateway_refund_id"]): b for b in open_breaks(stack, processor)}
    mismatch = found[("amount_mismatch", changed["gateway_refund_id"])]
    assert (mismatch["expected"], mismatch["actual"]) == (2_000, 1_999)
    assert ("missing_settlement", dropped["gateway_refund_id"]) in found
    assert ("duplicate_line", doubled["gateway_refund_id"]) in found
    assert not [key for key in found if key[1] == plain["gateway_refund_id"]]


# --- one processor's own ------------------------------------------------------------------------------
def test_adyen_refuses_a_report_url_elsewhere_without_connecting(pulls: Stack) -> None:
    stack = pulls
    # A port that listens and never accepts: a connection attempt would wait in its backlog.
    with socket.create_server(("127.0.0.1", 0)) as elsewhere:
        elsewhere.setblocking(False)
        port = elsewhere.getsockname()[1]
        file = "settlement_detail_report_batch_999999.csv"
        url = f"http://127.0.0.1:{port}/adyen/reports/download/MerchantAccount/{ADYEN_MERCHANT}/{file}"
        announce_adyen_report(stack, file, url)
        (failure,) = wait_until(lambda: audited(stack, PULL_FAILED, url), timeout=60, what="the refusal")
        assert "points to http://127.0.0.1" in failure["reason"], failure
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nobody ever connected
    assert file_of(stack, file) == []
    assert url not in due(stack, "adyen")  # refused once, never retried by the schedule


def set_adyen_report_password(stack: Stack, password: str) -> None:
    path = stack.workdir / "connections-adyen-report.toml"
    toml = connections_toml(stack.sim_url, "adyen").replace(
        f'report_password = "{ADYEN_REPORT_PASSWORD}"', f'report_password = "{password}"'
    )
    path.write_text(toml)
    stack.cli("connections", "import", str(path))
    restart_worker(stack)


def stripe_pulls_fail_and_the_webhook_is_lost(stack: Stack) -> Settlement:
    """A paid payout whose ``payout.paid`` never arrives; announced by hand, its pulls fail."""
    stack.faults(webhook_drop_rate=1.0, error_rate=1.0)  # payout.paid is lost; Stripe answers 5xx
    try:
        (payout,) = pay_stripe_payouts(stack)
        announce_stripe_payout(stack, payout.announced)
        failures = wait_until(
            lambda: audited(stack, PULL_FAILED, payout.ref), timeout=60, what="the failed pull"
        )
        assert failures[0]["reason"].startswith("Stripe answered 50"), failures
        stack.faults(webhook_drop_rate=1.0, malformed_rate=1.0)  # now a garbled answer
        announce_stripe_payout(stack, payout.announced)
        failures = wait_until(
            lambda: audited(stack, PULL_FAILED, payout.ref)[1:], timeout=60, what="the second failed pull"
        )
        assert "unreadable" in failures[0]["reason"], failures
        for details in audited(stack, PULL_FAILED, payout.ref):
            assert "Traceback" not in details["reason"]
            assert "\n" not in details["reason"]
        assert file_of(stack, payout.file) == []
        assert lines_of(stack, payout.file) == []
    finally:
        stack.faults()
    return payout


def adyen_download_fails_for_a_wrong_password(stack: Stack) -> Settlement:
    """A published batch downloaded with a wrong report password; the password is then put right."""
    wrong = "not-the-report-password"
    set_adyen_report_password(stack, wrong)
    try:
        (batch,) = publish_adyen_batch(stack)
        (failure,) = wait_until(
            lambda: audited(stack, PULL_FAILED, batch.ref), timeout=60, what="the failed download"
        )
        assert "refused the report user's credentials" in failure["reason"], failure
        assert "HTTP 401" in failure["reason"]
        assert wrong not in failure["reason"]
        assert file_of(stack, batch.file) == []
        assert batch.ref in due(stack, "adyen")  # the schedule will try it again
        log = stack.procs["worker"].tail(200_000)
        assert wrong not in log
        assert ADYEN_REPORT_PASSWORD not in log
    finally:
        set_adyen_report_password(stack, ADYEN_REPORT_PASSWORD)
    return batch


def test_failed_pulls_leave_nothing_and_the_schedule_pulls_them_later(pulls: Stack) -> None:
    """Both processors' failures before one wait: one run of the schedule pulls every connection's."""
    stack = pulls
    (stripe_refund,) = succeeded_refunds(stack, "stripe", 1_500)
    (adyen_refund,) = succeeded_refunds(stack, "adyen", 1_500)
    left = {
        "stripe": (stripe_pulls_fail_and_the_webhook_is_lost(stack), stripe_refund),
        "adyen": (adyen_download_fails_for_a_wrong_password(stack), adyen_refund),
    }
    # No notification will come (again): the worker's schedule finds both due and pulls them.
    for settlement, refund in left.values():
        lines = wait_until(
            partial(pulled, stack, settlement.file), timeout=150, interval=1, what="the scheduled pull"
        )
        (line,) = [line for line in lines if line["kind"] == "refund"]
        assert (line["gateway_refund_id"], line["gross"], line["match"]) == (
            refund["gateway_refund_id"],
            -1_500,
            "matched",
        )
    assert left["adyen"][0].ref not in due(stack, "adyen")
