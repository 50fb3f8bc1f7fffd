"""Adyen's Settlement details report as files: a batch closed and published, announced with a signed
REPORT_AVAILABLE notification (checked against Adyen's Webhooks spec and its SDK's HMAC), downloaded in
the report user's basic auth; its content is that batch of ``GET /_control/reports/adyen``."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from Adyen.util import is_valid_hmac_notification

from refundwatch.gateways.adyen import transformers as tx
from refundwatch.gateways.adyen.settlement_pull import ReportDownloadFailed, download_report
from refundwatch.gateways.base import Credentials
from refundwatch.lib.crypto import Secret
from refundwatch.reconciliation.parsing import parser_for

from .adyen_receiver import AdyenReceiver
from .adyen_schema import validate_notification
from .conftest import Simulator, start_simulator, stop_simulator, wait_for

KEY, MERCHANT, HMAC_KEY = "AQE_files_eu_key", "FilesEU", "AB" * 32
OTHER_KEY, OTHER_MERCHANT, OTHER_HMAC = "AQE_files_us_key", "FilesUS", "CD" * 32
REPORT_USER, REPORT_PASSWORD = "report@Company.Files", "report-pass-EU"
OTHER_USER, OTHER_PASSWORD = "report@Company.FilesUS", "report-pass-US"


@pytest.fixture(scope="module")
def files_receiver() -> Iterator[AdyenReceiver]:
    receiver = AdyenReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def files_process(
    tmp_path_factory: pytest.TempPathFactory, files_receiver: AdyenReceiver
) -> Iterator[Simulator]:
    path: Path = tmp_path_factory.mktemp("adyen-files") / "connections.toml"
    path.write_text(
        f"""
[[connection]]
name = "files-eu"
processor = "adyen"
api_key = "{KEY}"
merchant_account = "{MERCHANT}"
hmac_key = "{HMAC_KEY}"
report_username = "{REPORT_USER}"
report_password = "{REPORT_PASSWORD}"

[[connection]]
name = "files-us"
processor = "adyen"
api_key = "{OTHER_KEY}"
merchant_account = "{OTHER_MERCHANT}"
hmac_key = "{OTHER_HMAC}"
report_username = "{OTHER_USER}"
report_password = "{OTHER_PASSWORD}"
""",
        encoding="utf-8",
    )
    template = f"http://127.0.0.1:{files_receiver.port}/webhooks/{{connection}}"
    simulator = start_simulator(connections=path, webhook_url=template)
    yield simulator
    stop_simulator(simulator)


@pytest.fixture
def fsim(files_process: Simulator, files_receiver: AdyenReceiver) -> Simulator:
    files_process.reset()
    files_receiver.clear()
    files_process.faults(processor="adyen", settle_ms=50)
    return files_process


def refund(sim: Simulator, amount: int, *, key: str = KEY, merchant: str = MERCHANT) -> str:
    payment = uuid.uuid4().hex[:16].upper()
    sim.payment(payment, 50_000, "EUR", processor="adyen")
    response = sim.http.post(
        f"{sim.url}/adyen/v72/payments/{payment}/refunds",
        headers={"x-api-key": key},
        json={"merchantAccount": merchant, "amount": {"value": amount, "currency": "EUR"}, "reference": "r"},
    )
    assert response.status_code == 201, response.text
    psp: str = response.json()["pspReference"]
    wait_for(lambda: any(r["gateway_refund_id"] == psp and r["status"] == "succeeded" for r in sim.ledger()))
    return psp


def publish(sim: Simulator, **body: Any) -> list[dict[str, Any]]:
    response = sim.control("POST", "/reports/adyen/publish", body)
    assert response.status_code == 201, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def download(
    sim: Simulator, url: str, auth: tuple[str, str] | None = (REPORT_USER, REPORT_PASSWORD)
) -> httpx2.Response:
    return sim.http.get(url, auth=auth)


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def batch_rows(report: str, merchant: str, number: int) -> list[list[str]]:
    """The control report's rows of one merchant account's batch, header first."""
    header, *body = rows(report)
    at_merchant, at_batch = header.index("Merchant Account"), header.index("Batch Number")
    return [header, *(r for r in body if r[at_merchant] == merchant and r[at_batch] == str(number))]


def control_report(sim: Simulator) -> str:
    response = sim.control("GET", "/reports/adyen")
    assert response.status_code == 200, response.text
    return response.text


def announced(receiver: AdyenReceiver, file: str) -> list[dict[str, Any]]:
    return list(wait_for(lambda: receiver.items(file)))


def test_a_published_batch_is_announced_signed_and_downloads_as_its_part_of_the_report(
    fsim: Simulator, files_receiver: AdyenReceiver
) -> None:
    first = refund(fsim, 1_100)
    (batch,) = publish(fsim, connection="files-eu")
    number = batch["batch"]
    assert batch["file"] == f"settlement_detail_report_batch_{number}.csv"
    assert batch["url"] == f"{fsim.url}/adyen/reports/download/MerchantAccount/{MERCHANT}/{batch['file']}"
    assert batch["connections"] == ["files-eu"]

    (item,) = announced(files_receiver, batch["file"])
    note = next(n for n in files_receiver.notifications() if batch["file"] in n.body.decode())
    assert note.path == "/webhooks/files-eu"
    validate_notification(note.json())
    assert is_valid_hmac_notification(item, HMAC_KEY) is True
    assert (item["eventCode"], item["success"], item["merchantAccountCode"]) == (
        "REPORT_AVAILABLE",
        "true",
        MERCHANT,
    )
    assert (item["pspReference"], item["reason"]) == (batch["file"], batch["url"])

    response = download(fsim, batch["url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert rows(response.text) == batch_rows(control_report(fsim), MERCHANT, number)
    lines = list(parser_for("adyen").parse(io.BytesIO(response.content), batch["file"]))
    refunds = [line for line in lines if line.gateway_refund_id == first]
    assert [(line.kind.value, line.gross, line.payout_id) for line in refunds] == [
        ("refund", -1_100, str(number))
    ]

    # Booked after the cut-off: in the next batch, which the next publication closes.
    second = refund(fsim, 1_200)
    (later,) = publish(fsim, connection="files-eu")
    assert later["batch"] == number + 1
    again = download(fsim, batch["url"])
    assert again.content == response.content  # a closed batch never changes
    newer = download(fsim, later["url"]).text
    assert second in newer
    assert first not in newer
    assert [b["batch"] for b in fsim.control("GET", "/reports/adyen/batches?connection=files-eu").json()] == [
        number,
        number + 1,
    ]


def test_downloads_need_that_merchant_accounts_report_user(fsim: Simulator) -> None:
    refund(fsim, 1_300)
    (batch,) = publish(fsim, connection="files-eu")
    url = batch["url"]
    assert download(fsim, url, None).status_code == 401
    assert download(fsim, url, (REPORT_USER, "wrong")).status_code == 401
    assert download(fsim, url, (OTHER_USER, OTHER_PASSWORD)).status_code == 401  # another account's user
    unauthorized = fsim.http.get(url, headers={"Authorization": "Basic !!!"})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["www-authenticate"].startswith("Basic")
    unknown = url.replace(f"batch_{batch['batch']}.csv", f"batch_{batch['batch'] + 1}.csv")
    assert download(fsim, unknown).status_code == 404  # not closed yet
    assert (
        download(fsim, url.rsplit("/", 1)[0] + "/payments_accounting_report_2026_12_01.csv").status_code
        == 404
    )
    # The other account's batch is its own: nothing of files-eu's refund in it.
    (other,) = publish(fsim, connection="files-us")
    assert other["url"] != url
    text = download(fsim, other["url"], (OTHER_USER, OTHER_PASSWORD)).text
    assert MERCHANT not in text.split("\n", 1)[1]


def test_a_discrepancy_shows_the_same_in_the_download_as_in_the_control_report(fsim: Simulator) -> None:
    changed = refund(fsim, 2_000)
    dropped = refund(fsim, 2_100)
    for body in (
        {"processor": "adyen", "kind": "change_amount", "gateway_refund_id": changed, "amount": 1_999},
        {"processor": "adyen", "kind": "drop_line", "gateway_refund_id": dropped},
    ):
        assert fsim.control("POST", "/discrepancies", body).status_code == 201
    (batch,) = publish(fsim, connection="files-eu")
    text = download(fsim, batch["url"]).text
    assert rows(text) == batch_rows(control_report(fsim), MERCHANT, batch["batch"])
    lines = list(parser_for("adyen").parse(io.BytesIO(text.encode()), batch["file"]))
    assert [line.gross for line in lines if line.gateway_refund_id == changed] == [-1_999]
    assert [line for line in lines if line.gateway_refund_id == dropped] == []


def test_republishing_announces_the_same_file_again_and_closes_nothing(
    fsim: Simulator, files_receiver: AdyenReceiver
) -> None:
    (batch,) = publish(fsim, connection="files-eu")
    (again,) = publish(fsim, connection="files-eu", batch=batch["batch"])
    assert (again["batch"], again["file"], again["url"]) == (batch["batch"], batch["file"], batch["url"])
    wait_for(lambda: len(files_receiver.items(batch["file"])) == 2)
    listed = fsim.control("GET", "/reports/adyen/batches").json()
    assert [b["batch"] for b in listed] == [batch["batch"]]
    # Without a connection: every account's current batch closes.
    assert {b["merchant_account"] for b in publish(fsim)} == {MERCHANT, OTHER_MERCHANT}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"connection": "nope"}, 404, "unknown_connection"),
        ({"connection": "files-eu", "batch": 1}, 404, "unknown_batch"),
        ({"connection": "files-eu", "batch": "1"}, 400, "invalid_body"),
        ({"connection": 5}, 400, "invalid_body"),
        ({"merchant": "x"}, 400, "unknown_field"),
        ([], 400, "invalid_body"),
    ],
)
def test_publish_refuses_bad_requests(fsim: Simulator, body: Any, status: int, code: str) -> None:
    response = fsim.control("POST", "/reports/adyen/publish", body)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_reset_forgets_published_batches(fsim: Simulator) -> None:
    (batch,) = publish(fsim, connection="files-eu")
    fsim.reset()
    assert fsim.control("GET", "/reports/adyen/batches").json() == []
    assert download(fsim, batch["url"]).status_code == 404


def _creds(sim: Simulator, password: str) -> Credentials:
    return Credentials(
        connection_name="files-eu",
        processor="adyen",
        base_url=f"{sim.url}/adyen",
        secrets={"api_key": Secret(KEY), "hmac_key": Secret(HMAC_KEY), "report_password": Secret(password)},
        options={"merchant_account": MERCHANT, "report_username": REPORT_USER},
        timeout_seconds=5.0,
    )


async def test_refundwatchs_downloader_fetches_the_announced_file(
    fsim: Simulator, files_receiver: AdyenReceiver
) -> None:
    refund(fsim, 1_400)
    (batch,) = publish(fsim, connection="files-eu")
    (item,) = announced(files_receiver, batch["file"])
    ref = tx.parse_item(item).settlement_ref
    assert ref == batch["url"]
    async with httpx2.AsyncClient(trust_env=False) as client:
        found = await download_report(client, _creds(fsim, REPORT_PASSWORD), ref)
        assert (found.name, found.content) == (batch["file"], download(fsim, ref).content)
        with pytest.raises(ReportDownloadFailed, match="HTTP 401"):
            await download_report(client, _creds(fsim, "wrong"), ref)
