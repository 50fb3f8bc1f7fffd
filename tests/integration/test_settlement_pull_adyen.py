"""refundwatch downloads Adyen's Settlement details report itself (issue 14 §2): refunds executed at the
simulator, a batch published, ``REPORT_AVAILABLE`` signed and sent, the worker downloads the file in the
report user's basic auth, imports and matches it with zero breaks; announced again it adds nothing; a
discrepancy reads the same in the download as in ``/_control/reports/adyen``; a wrong report password or
a URL elsewhere fails with a clear audited reason and imports nothing, and the schedule downloads the
failed file once the password is right. Real simulator, web, worker and database, on both databases."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from processors import ADYEN_HMAC_KEY, ADYEN_MERCHANT, ADYEN_REPORT_PASSWORD, connections_toml
from refundwatch.config import Settings
from refundwatch.gateways.adyen.settlement_pull import AdyenSettlementPull
from refundwatch.reconciliation.parsing import parser_for
from refundwatch.runtime import Runtime
from stack import Stack, db_rows, wait_until

pytestmark = pytest.mark.slow

CONNECTION = "adyen-test"


@pytest.fixture(scope="module")
def pulls(stack: Stack) -> Stack:
    """The stack with its Adyen connection, the worker running the pull schedule every minute."""
    stack.connect("adyen")
    stack.faults("adyen")
    stack.env["REFUNDWATCH_RECONCILE_PULL_MINUTES"] = "1"
    restart_worker(stack)
    return stack


def restart_worker(stack: Stack) -> None:
    """A fresh worker: it reads the connections anew (its cache would take up to 10 s)."""
    stack.stop_worker()
    stack.start_worker()
    stack.wait_worker_ready()


def set_report_password(stack: Stack, password: str) -> None:
    path = stack.workdir / "connections-adyen-report.toml"
    toml = connections_toml(stack.sim_url, "adyen").replace(
        f'report_password = "{ADYEN_REPORT_PASSWORD}"', f'report_password = "{password}"'
    )
    path.write_text(toml)
    stack.cli("connections", "import", str(path))
    restart_worker(stack)


def succeeded_refunds(stack: Stack, *amounts: int, currency: str = "EUR") -> list[dict[str, Any]]:
    made = []
    for amount in amounts:
        reference = stack.payment(amount * 4, currency, processor="adyen")
        response = stack.refund(reference, amount, currency=currency)
        assert response.status_code == 201, response.text
        made.append(response.json()["id"])
    return [stack.wait_status(refund_id, "succeeded") for refund_id in made]


def publish(stack: Stack, **body: Any) -> dict[str, Any]:
    (batch,) = stack.control("reports/adyen/publish", {"connection": CONNECTION, **body})
    assert isinstance(batch, dict)
    return batch


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


def open_breaks(stack: Stack) -> list[dict[str, Any]]:
    with stack.api() as client:
        page = client.get(
            "/api/v1/reconciliation/breaks", params={"connection": CONNECTION, "status": "open", "limit": 200}
        )
    assert page.status_code == 200, page.text
    breaks: list[dict[str, Any]] = page.json()["data"]
    return breaks


def deliveries(stack: Stack, file: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = stack.control("webhooks?processor=adyen")
    return [d for d in rows if file in d["event_id"]]


def due(stack: Stack) -> list[str]:
    """What the worker's schedule would pull for the connection now (AdyenSettlementPull.due)."""

    async def run() -> list[str]:
        rt = Runtime.build(Settings(mode="test", database_url=stack.database_url, redis_url=stack.redis_url))
        try:
            conn = await rt.connections.by_name(CONNECTION)
            assert conn is not None
            return await AdyenSettlementPull().due(rt, conn)
        finally:
            await rt.close()

    return asyncio.run(run())


def announce(stack: Stack, file: str, url: str) -> None:
    """Deliver a REPORT_AVAILABLE signed with the connection's HMAC key ourselves, as Adyen would."""
    item: dict[str, Any] = {
        "amount": {"currency": "EUR", "value": 0},
        "eventCode": "REPORT_AVAILABLE",
        "eventDate": "2026-12-06T04:00:00+01:00",
        "merchantAccountCode": ADYEN_MERCHANT,
        "merchantReference": "",
        "pspReference": file,
        "reason": url,
        "success": "true",
    }
    signed = ":".join([file, "", ADYEN_MERCHANT, "", "0", "EUR", "REPORT_AVAILABLE", "true"])
    digest = hmac.new(bytes.fromhex(ADYEN_HMAC_KEY), signed.encode(), hashlib.sha256).digest()
    item = copy.deepcopy(item) | {"additionalData": {"hmacSignature": base64.b64encode(digest).decode()}}
    response = httpx2.post(
        f"{stack.web_url}/webhooks/{CONNECTION}",
        json={"live": "false", "notificationItems": [{"NotificationRequestItem": item}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.text == "[accepted]"


def test_a_published_batch_is_downloaded_imported_and_matched_once(pulls: Stack) -> None:
    stack = pulls
    made = succeeded_refunds(stack, 1_100, 1_200) + succeeded_refunds(stack, 1_300, currency="JPY")
    batch = publish(stack)
    name = batch["file"]
    assert name == f"settlement_detail_report_batch_{batch['batch']}.csv"
    lines = wait_until(lambda: pulled(stack, name), timeout=60, what="the batch downloaded and matched")
    assert file_of(stack, name) == [("imported", len(lines), "file")]
    assert {line["payout_id"] for line in lines} == {str(batch["batch"])}
    refund_lines = [line for line in lines if line["kind"] == "refund"]
    assert sorted(
        (line["gateway_refund_id"], line["gross"], line["currency"]) for line in refund_lines
    ) == sorted((r["gateway_refund_id"], -r["amount"], r["currency"]) for r in made)
    assert {line["match"] for line in refund_lines} == {"matched"}
    assert open_breaks(stack) == []
    (done,) = audited(stack, "reconciliation:settlement:pull", batch["url"])
    assert (done["file"], done["lines"], done["source"]) == (name, len(lines), "file")
    outcomes = db_rows(
        stack, "SELECT outcome FROM webhook_events WHERE event_id = ?", f"{name}:REPORT_AVAILABLE:true"
    )
    assert outcomes == [("REPORT_AVAILABLE: settlement pull queued",)]

    # Announced again (Adyen's redelivery): the same event, stored once, nothing pulled or added.
    publish(stack, batch=batch["batch"])
    wait_until(
        lambda: [d["state"] for d in deliveries(stack, name)] == ["delivered", "delivered"],
        timeout=60,
        what="the redelivery acknowledged",
    )
    assert (
        len(
            db_rows(
                stack, "SELECT id FROM webhook_events WHERE event_id = ?", f"{name}:REPORT_AVAILABLE:true"
            )
        )
        == 1
    )
    assert lines_of(stack, name) == lines
    assert len(file_of(stack, name)) == 1
    assert open_breaks(stack) == []

    # The next batch holds only what came after: its own file, nothing from the first again.
    (later,) = succeeded_refunds(stack, 1_400)
    following = publish(stack)
    assert following["batch"] == batch["batch"] + 1
    newer = wait_until(lambda: pulled(stack, following["file"]), timeout=60, what="the next batch")
    assert [line["gateway_refund_id"] for line in newer if line["kind"] == "refund"] == [
        later["gateway_refund_id"]
    ]
    assert open_breaks(stack) == []


def test_a_discrepancy_reads_the_same_in_the_download_as_in_the_control_report(pulls: Stack) -> None:
    stack = pulls
    changed, dropped, plain = succeeded_refunds(stack, 2_000, 2_100, 2_200)
    stack.control(
        "discrepancies",
        {
            "processor": "adyen",
            "kind": "change_amount",
            "gateway_refund_id": changed["gateway_refund_id"],
            "amount": 1_999,
        },
    )
    stack.control(
        "discrepancies",
        {"processor": "adyen", "kind": "drop_line", "gateway_refund_id": dropped["gateway_refund_id"]},
    )
    batch = publish(stack)
    wait_until(lambda: pulled(stack, batch["file"]), timeout=60, what="the batch downloaded")
    ours = {r["gateway_refund_id"] for r in (changed, dropped, plain)}
    in_pull = sorted(
        (line["line_key"], line["gross"], line["payout_id"])
        for line in lines_of(stack, batch["file"])
        if line["gateway_refund_id"] in ours
    )
    report = httpx2.get(
        f"{stack.sim_url}/_control/reports/adyen", params={"connection": CONNECTION}, timeout=30
    )
    assert report.status_code == 200, report.text
    in_report = sorted(
        (line.line_key, line.gross, line.payout_id)
        for line in parser_for("adyen").parse(io.BytesIO(report.content), "report.csv")
        if line.gateway_refund_id in ours
    )
    assert in_pull == in_report
    assert sorted(gross for _, gross, _ in in_pull) == [-2_200, -1_999]
    stack.cli("reconcile", "check", extra_env={"REFUNDWATCH_RECONCILE_EXPECTED_HOURS": "0"})
    found = {(b["kind"], b["gateway_refund_id"]): b for b in open_breaks(stack)}
    mismatch = found[("amount_mismatch", changed["gateway_refund_id"])]
    assert (mismatch["expected"], mismatch["actual"]) == (2_000, 1_999)
    assert ("missing_settlement", dropped["gateway_refund_id"]) in found
    assert not [key for key in found if key[1] == plain["gateway_refund_id"]]


class _Listener:
    """A local HTTP server that counts the requests it gets: where a refused URL points."""

    def __init__(self) -> None:
        self.requests = 0
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_url_elsewhere_is_refused_without_a_request(pulls: Stack) -> None:
    stack = pulls
    listener = _Listener()
    try:
        file = "settlement_detail_report_batch_999999.csv"
        url = (
            f"http://127.0.0.1:{listener.port}/adyen/reports/download/MerchantAccount/{ADYEN_MERCHANT}/{file}"
        )
        announce(stack, file, url)
        (failure,) = wait_until(
            lambda: audited(stack, "reconciliation:settlement:pull_failed", url),
            timeout=60,
            what="the refusal",
        )
        assert "points to http://127.0.0.1" in failure["reason"], failure
        assert listener.requests == 0
        assert file_of(stack, file) == []
        assert url not in due(stack)  # refused once, never retried by the schedule
    finally:
        listener.close()


def test_a_wrong_report_password_fails_clearly_and_the_schedule_downloads_it_once_fixed(pulls: Stack) -> None:
    stack = pulls
    wrong = "not-the-report-password"
    (refund,) = succeeded_refunds(stack, 1_500)
    set_report_password(stack, wrong)
    try:
        batch = publish(stack)
        (failure,) = wait_until(
            lambda: audited(stack, "reconciliation:settlement:pull_failed", batch["url"]),
            timeout=60,
            what="the failed download",
        )
        assert "refused the report user's credentials" in failure["reason"], failure
        assert "HTTP 401" in failure["reason"]
        assert wrong not in failure["reason"]
        assert file_of(stack, batch["file"]) == []
        assert batch["url"] in due(stack)  # the schedule will try it again
        log = stack.procs["worker"].tail(200_000)
        assert wrong not in log
        assert ADYEN_REPORT_PASSWORD not in log
    finally:
        set_report_password(stack, ADYEN_REPORT_PASSWORD)
    # No notification will come again: the schedule retries the failed download.
    lines = wait_until(
        lambda: pulled(stack, batch["file"]), timeout=150, interval=1, what="the scheduled retry"
    )
    (line,) = [line for line in lines if line["kind"] == "refund"]
    assert (line["gateway_refund_id"], line["gross"], line["match"]) == (
        refund["gateway_refund_id"],
        -1_500,
        "matched",
    )
    assert batch["url"] not in due(stack)
