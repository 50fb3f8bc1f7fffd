"""REPORT_AVAILABLE → the Settlement details report's URL, and the guard in front of its download: only
Adyen's report hosts or the connection's own base URL, only that merchant account's settlement file,
only with the report user's credentials, never a redirect, never past the size limit. Downloads are
answered by httpx2.MockTransport; every refusal is checked to have sent nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import pytest
from adyen_helpers import HMAC_KEY, MERCHANT, Recorder

from refundwatch.gateways.adyen import AdyenGateway
from refundwatch.gateways.adyen import transformers as tx
from refundwatch.gateways.adyen.settlement_pull import (
    ReportDownloadFailed,
    ReportRefused,
    checked_report_url,
    download_report,
)
from refundwatch.gateways.base import Credentials
from refundwatch.lib.crypto import Secret

FILE = "settlement_detail_report_batch_12.csv"
TEST_URL = f"https://ca-test.adyen.com/reports/download/MerchantAccount/{MERCHANT}/{FILE}"
SIM = "http://127.0.0.1:8900/adyen"
SIM_URL = f"http://127.0.0.1:8900/adyen/reports/download/MerchantAccount/{MERCHANT}/{FILE}"
USER, PASSWORD = "report@Company.Refundwatch", "Rep0rt-pa55word-never-shown"
CSV = b"Company Account,Merchant Account\nRefundwatch,RefundwatchECOM\n"


def creds(base_url: str = "https://checkout-test.adyen.com", **fields: str | None) -> Credentials:
    values: dict[str, str | None] = {
        "report_username": USER,
        "report_password": PASSWORD,
        "merchant_account": MERCHANT,
    } | fields
    secrets = {
        "api_key": "AQE_test_key",
        "hmac_key": HMAC_KEY,
        "report_password": values.pop("report_password"),
    }
    return Credentials(
        connection_name="adyen-test",
        processor="adyen",
        base_url=base_url,
        secrets={k: Secret(v) for k, v in secrets.items() if v},
        options={k: v for k, v in values.items() if v},
        timeout_seconds=3.0,
    )


def item(**changes: Any) -> dict[str, Any]:
    return {
        "amount": {"currency": "EUR", "value": 0},
        "eventCode": "REPORT_AVAILABLE",
        "eventDate": "2026-12-06T04:00:00+01:00",
        "merchantAccountCode": MERCHANT,
        "merchantReference": "",
        "pspReference": FILE,
        "reason": TEST_URL,
        "success": "true",
    } | changes


# -- the notification ------------------------------------------------------------------------------
def test_report_available_for_a_settlement_details_report_names_its_url() -> None:
    event = tx.parse_item(item())
    assert event.settlement_ref == TEST_URL
    assert (event.event_id, event.event_type) == (f"{FILE}:REPORT_AVAILABLE:true", "REPORT_AVAILABLE")
    assert (event.status, event.gateway_refund_id, event.refund_id) == (None, None, None)
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item()}]}).encode()
    (parsed,) = AdyenGateway().parse_webhook(body)
    assert parsed.settlement_ref == TEST_URL


@pytest.mark.parametrize(
    "changes",
    [
        {"pspReference": "payments_accounting_report_2026_12_05.csv"},  # another report: not settlement data
        {"pspReference": "received_payments_report_2026_12_05.csv"},
        {"pspReference": "settlement_detail_report_batch_12.xlsx"},
        {"success": "false"},
        {"reason": None},
    ],
)
def test_other_reports_or_unsuccessful_ones_name_nothing_to_pull(changes: dict[str, Any]) -> None:
    event = tx.parse_item({k: v for k, v in item(**changes).items() if v is not None})
    assert event.settlement_ref is None
    assert event.status is None


def test_refund_notifications_name_nothing_to_pull() -> None:
    refund = item(
        eventCode="REFUND", pspReference="993617894906488A", amount={"currency": "EUR", "value": 100}
    )
    assert tx.parse_item(refund).settlement_ref is None


# -- where a report may come from -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "ref"),
    [
        ("https://checkout-test.adyen.com", TEST_URL),
        ("https://checkout-test.adyen.com", TEST_URL.replace("ca-test", "ca-live")),
        ("https://checkout-test.adyen.com", TEST_URL.replace(".com/", ".com:443/")),
        ("https://checkout-test.adyen.com", TEST_URL.replace("https://ca-test", "HTTPS://CA-TEST")),
        (SIM, SIM_URL),
        (SIM + "/", SIM_URL),
    ],
)
def test_adyen_report_hosts_and_the_connections_own_base_url_are_allowed(base_url: str, ref: str) -> None:
    url, name = checked_report_url(creds(base_url), ref)
    assert name == FILE
    assert url.lower() == ref.lower()


REFUSED = [
    ("http://ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "points to"),
    ("https://ca-test.adyen.com:8443/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "points to"),
    ("https://evil.example/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "points to"),
    (
        "https://ca-test.adyen.com.evil.example/reports/download/MerchantAccount/RefundwatchECOM/" + FILE,
        "points to",
    ),
    ("https://ca-test.adyen.com./reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "points to"),
    (
        "https://ca-test.adyen.com@evil.example/reports/download/MerchantAccount/RefundwatchECOM/" + FILE,
        "credentials",
    ),
    ("https://u:p@ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "credentials"),
    (
        "https://ca-test.adyen.com\\@evil.example/reports/download/MerchantAccount/RefundwatchECOM/" + FILE,
        "plain URL",
    ),
    ("https://evil.example/?https://ca-test.adyen.com/reports/download/MerchantAccount/x/" + FILE, "query"),
    (TEST_URL + "?x=1", "query"),
    (TEST_URL + "#top", "query"),
    ("ftp://ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "not an http"),
    ("file:///etc/passwd", "not an http"),
    ("/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "not an http"),
    ("", "empty"),
    ("https://ca-test.adyen.com/reports/download/MerchantAccount/OtherECOM/" + FILE, "merchant account"),
    ("https://ca-test.adyen.com/reports/download/Company/Refundwatch/" + FILE, "download path"),
    ("https://ca-test.adyen.com/x/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "download path"),
    (
        "https://ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/../../" + FILE,
        "download path",
    ),
    (
        "https://ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/payments_report.csv",
        "not a Settlement",
    ),
    (
        "https://ca-test.adyen.com/reports/download/MerchantAccount/RefundwatchECOM/%2e%2e%2fx.csv",
        "not a Settlement",
    ),
    ("https://[::1]:8900/adyen/reports/download/MerchantAccount/RefundwatchECOM/" + FILE, "points to"),
]


@pytest.mark.parametrize(("ref", "why"), REFUSED)
async def test_anything_else_is_refused_before_any_request(ref: str, why: str) -> None:
    recorder = Recorder(lambda request: httpx2.Response(200, content=CSV))
    async with recorder.client() as client:
        with pytest.raises(ReportRefused, match=why):
            await download_report(client, creds(), ref)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "ref",
    [
        SIM_URL.replace(":8900", ":6379"),  # the connection's host, another port
        SIM_URL.replace("http://", "https://"),  # another scheme
        SIM_URL.replace("127.0.0.1", "localhost"),  # the same machine by another name
        SIM_URL.replace(":8900", ""),  # port 80
        SIM_URL.replace("/adyen/", "/stripe/"),  # the same origin, outside the connection's base path
        SIM_URL.replace("/adyen/reports", "/reports"),
        TEST_URL.replace("ca-test.adyen.com", "127.0.0.1:8900"),
    ],
)
async def test_the_connections_own_origin_means_its_scheme_host_port_and_path(ref: str) -> None:
    recorder = Recorder(lambda request: httpx2.Response(200, content=CSV))
    async with recorder.client() as client:
        with pytest.raises(ReportRefused):
            await download_report(client, creds(SIM), ref)
    assert recorder.requests == []


@pytest.mark.parametrize(
    "missing",
    [
        {"report_username": None},
        {"report_password": None},
        {"report_username": None, "report_password": None},
    ],
)
async def test_without_report_credentials_nothing_is_requested(missing: dict[str, None]) -> None:
    recorder = Recorder(lambda request: httpx2.Response(200, content=CSV))
    async with recorder.client() as client:
        with pytest.raises(ReportRefused, match="report_username and report_password"):
            await download_report(client, creds(**missing), TEST_URL)
    assert recorder.requests == []


# -- the download ------------------------------------------------------------------------------------
async def test_the_report_user_downloads_it_in_basic_auth() -> None:
    recorder = Recorder(
        lambda request: httpx2.Response(200, content=CSV, headers={"Content-Type": "text/csv"})
    )
    async with recorder.client() as client:
        found = await download_report(client, creds(), TEST_URL)
    assert (found.name, found.content) == (FILE, CSV)
    (request,) = recorder.requests
    assert str(request.url) == TEST_URL
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {token}"


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (401, "refused the report user's credentials"),
        (403, "refused the report user's credentials"),
        (404, "no report"),
        (302, "redirect"),
        (500, "HTTP 500"),
    ],
)
async def test_a_refused_download_says_why_without_the_password(status: int, why: str) -> None:
    headers = {"Location": "https://evil.example/steal"} if status == 302 else {}
    recorder = Recorder(lambda request: httpx2.Response(status, content=b"no", headers=headers))
    async with recorder.client() as client:
        with pytest.raises(ReportDownloadFailed, match=why) as raised:
            await download_report(client, creds(), TEST_URL)
    assert len(recorder.requests) == 1  # a redirect is never followed
    assert PASSWORD not in str(raised.value)


async def test_a_body_past_the_limit_is_refused() -> None:
    big = b"x" * 5_000
    recorder = Recorder(lambda request: httpx2.Response(200, content=big))
    async with recorder.client() as client:
        with pytest.raises(ReportDownloadFailed, match="larger than"):
            await download_report(client, creds(), TEST_URL, limit=4_096)

    def streamed(request: httpx2.Request) -> httpx2.Response:  # no Content-Length: counted as it comes
        return httpx2.Response(200, stream=httpx2.ByteStream(big), headers={"Transfer-Encoding": "chunked"})

    async with Recorder(streamed).client() as client:
        with pytest.raises(ReportDownloadFailed, match="larger than"):
            await download_report(client, creds(), TEST_URL, limit=4_096)


async def test_an_unreachable_host_is_a_failure_naming_no_secret() -> None:
    def unreachable(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot reach {request.url} {request.headers['Authorization']}")

    async with Recorder(unreachable).client() as client:
        with pytest.raises(ReportDownloadFailed, match="could not download") as raised:
            await download_report(client, creds(), TEST_URL)
    assert "Basic" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_the_pull_registry_knows_the_adyen_puller() -> None:
    from refundwatch.reconciliation.pulling import puller_for

    assert type(puller_for("adyen")).__name__ == "AdyenSettlementPull"
