"""The PayPal simulator's webhooks: signed with a certificate as PayPal signs them, verifiable offline
(cryptography, the served chain to the test CA) and online (verify-webhook-signature), re-sent as new
transmissions, bodies valid against notifications_webhooks_v1.json; and the health-check call."""

from __future__ import annotations

import base64
import datetime
import re
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import DNSName, PolicyBuilder, Store

from refundwatch.simulator.paypal.certs import load_or_create
from refundwatch.simulator.paypal.notifications import RETRY_DELAYS

from .conftest import Simulator, stop_simulator, wait_for
from .paypal_kit import (
    US_CLIENT_ID,
    US_CLIENT_SECRET,
    US_WEBHOOK_ID,
    WEBHOOK_ID,
    Delivery,
    PayPalReceiver,
    capture,
    eur,
    get_token,
    paypal_cert_dir,
    paypal_receiver,
    paypal_simulator_process,
    psim,
    refund,
    start_paypal_simulator,
)
from .paypal_schema import validate_event, validate_webhook

__all__ = ["paypal_cert_dir", "paypal_receiver", "paypal_simulator_process", "psim"]

SIGNING_NAME = "messageverificationcerts.paypal.com"


def _one(receiver: PayPalReceiver, event_type: str, count: int = 1) -> list[Delivery]:
    return wait_for(lambda: len(receiver.accepted(event_type)) >= count and receiver.accepted(event_type))


def _message(delivery: Delivery, webhook_id: str, body: bytes | None = None) -> bytes:
    crc = zlib.crc32(delivery.body if body is None else body) & 0xFFFFFFFF
    tid, when = delivery.header("PAYPAL-TRANSMISSION-ID"), delivery.header("PAYPAL-TRANSMISSION-TIME")
    return f"{tid}|{when}|{webhook_id}|{crc}".encode()


def _chain(sim: Simulator, delivery: Delivery) -> list[x509.Certificate]:
    response = sim.http.get(delivery.header("PAYPAL-CERT-URL"))
    assert response.status_code == 200
    return x509.load_pem_x509_certificates(response.content)


def _verify(leaf: x509.Certificate, delivery: Delivery, webhook_id: str, body: bytes | None = None) -> None:
    key = leaf.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    signature = base64.b64decode(delivery.header("PAYPAL-TRANSMISSION-SIG"))
    key.verify(signature, _message(delivery, webhook_id, body), padding.PKCS1v15(), hashes.SHA256())


def _claim(delivery: Delivery, **changes: Any) -> dict[str, Any]:
    claim = {
        "auth_algo": delivery.header("PAYPAL-AUTH-ALGO"),
        "cert_url": delivery.header("PAYPAL-CERT-URL"),
        "transmission_id": delivery.header("PAYPAL-TRANSMISSION-ID"),
        "transmission_sig": delivery.header("PAYPAL-TRANSMISSION-SIG"),
        "transmission_time": delivery.header("PAYPAL-TRANSMISSION-TIME"),
        "webhook_id": WEBHOOK_ID,
        "webhook_event": delivery.json(),
    }
    claim.update(changes)
    return claim


def _verify_online(sim: Simulator, token: str, claim: dict[str, Any]) -> tuple[int, Any]:
    response = sim.http.post(
        f"{sim.url}/paypal/v1/notifications/verify-webhook-signature",
        json=claim,
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.status_code, response.json()


def test_a_completed_refund_is_announced_signed_with_the_certificate(
    psim: Simulator, paypal_receiver: PayPalReceiver, paypal_cert_dir: Path
) -> None:
    token, capture_id = get_token(psim), capture(psim)
    created = refund(psim, token, capture_id, eur("12.34", invoice_id="inv-1", custom_id="rf_1")).json()
    [delivery] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    assert delivery.path == "/webhooks/paypal-eu"
    event = delivery.json()
    validate_event(event)
    assert event["id"].startswith("WH-")
    assert (event["resource_type"], event["resource_version"], event["event_version"]) == (
        "refund",
        "2.0",
        "1.0",
    )
    assert event["resource"]["id"] == created["id"]
    assert (event["resource"]["status"], event["resource"]["amount"]["value"]) == ("COMPLETED", "12.34")
    assert (event["resource"]["invoice_id"], event["resource"]["custom_id"]) == ("inv-1", "rf_1")

    uuid.UUID(delivery.header("PAYPAL-TRANSMISSION-ID"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", delivery.header("PAYPAL-TRANSMISSION-TIME"))
    assert delivery.header("PAYPAL-AUTH-ALGO") == "SHA256withRSA"
    assert delivery.header("PAYPAL-AUTH-VERSION") == "v2"
    port = psim.url.rsplit(":", 1)[1]
    assert re.fullmatch(
        rf"http://localhost:{port}/paypal/v1/notifications/certs/CERT-360caa42-fca2a594-[0-9a-f]{{8}}",
        delivery.header("PAYPAL-CERT-URL"),
    )  # --public-url

    leaf, issuer = _chain(psim, delivery)
    ca_pem = psim.control("GET", "/paypal/ca.pem").content
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert issuer == ca
    assert (paypal_cert_dir / "ca.pem").read_bytes() == ca_pem
    _verify(leaf, delivery, WEBHOOK_ID)
    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .time(datetime.datetime.now(datetime.UTC))
        .build_server_verifier(DNSName(SIGNING_NAME))
    )
    assert verifier.verify(leaf, [issuer])[-1] == ca
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SIGNING_NAME
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "PayPal, Inc."
    # One byte changed, or another webhook id: the signature no longer holds.
    with pytest.raises(InvalidSignature):
        _verify(leaf, delivery, WEBHOOK_ID, delivery.body.replace(b"12.34", b"12.35"))
    with pytest.raises(InvalidSignature):
        _verify(leaf, delivery, US_WEBHOOK_ID)


def test_verify_webhook_signature_answers_for_what_was_sent(
    psim: Simulator, paypal_receiver: PayPalReceiver
) -> None:
    token = get_token(psim)
    refund(psim, token, capture(psim), eur("5.00"))
    [delivery] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    assert _verify_online(psim, token, _claim(delivery)) == (200, {"verification_status": "SUCCESS"})
    tampered = delivery.json()
    tampered["resource"]["amount"]["value"] = "500.00"
    failures = [
        _claim(delivery, webhook_event=tampered),
        _claim(delivery, webhook_id=US_WEBHOOK_ID),
        _claim(delivery, transmission_id=str(uuid.uuid4())),
        _claim(delivery, transmission_sig=base64.b64encode(b"x" * 256).decode()),
        _claim(delivery, transmission_time="2020-01-01T00:00:00Z"),
    ]
    for claim in failures:
        assert _verify_online(psim, token, claim) == (200, {"verification_status": "FAILURE"})
    missing = _claim(delivery)
    del missing["transmission_sig"]
    status, body = _verify_online(psim, token, missing)
    assert (status, body["name"]) == (400, "VALIDATION_ERROR")
    unauthenticated = psim.http.post(
        f"{psim.url}/paypal/v1/notifications/verify-webhook-signature", json=_claim(delivery)
    )
    assert unauthenticated.status_code == 401


def test_pending_refund_settles_later_with_a_webhook(
    psim: Simulator, paypal_receiver: PayPalReceiver
) -> None:
    psim.faults(processor="paypal", pending_rate=1.0, settle_ms=300)
    token = get_token(psim)
    created = refund(psim, token, capture(psim), eur("7.00")).json()
    assert created["status"] == "PENDING"
    [pending] = _one(paypal_receiver, "PAYMENT.REFUND.PENDING")
    [completed] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    for delivery, status in ((pending, "PENDING"), (completed, "COMPLETED")):
        validate_event(delivery.json())
        assert (delivery.json()["resource"]["id"], delivery.json()["resource"]["status"]) == (
            created["id"],
            status,
        )
    assert pending.json()["resource"]["status_details"] == {"reason": "ECHECK"}
    assert pending.json()["id"] != completed.json()["id"]
    assert psim.ledger("paypal")[0]["status"] == "succeeded"


def test_failed_later_and_reversed_later(psim: Simulator, paypal_receiver: PayPalReceiver) -> None:
    psim.faults(processor="paypal", fail_later_rate=1.0, settle_ms=200)
    token = get_token(psim)
    failing = refund(psim, token, capture(psim), eur("3.00")).json()
    assert failing["status"] == "COMPLETED"
    [failed] = _one(paypal_receiver, "PAYMENT.REFUND.FAILED")
    validate_event(failed.json())
    assert (failed.json()["resource"]["id"], failed.json()["resource"]["status"]) == (failing["id"], "FAILED")

    psim.faults(processor="paypal", reversal_rate=1.0)
    reversing = refund(psim, token, capture(psim), eur("4.00")).json()
    [reversed_] = _one(paypal_receiver, "PAYMENT.CAPTURE.REVERSED")
    validate_event(reversed_.json())
    assert reversed_.json()["resource"]["id"] == reversing["id"]
    statuses = {row["gateway_refund_id"]: row["status"] for row in psim.ledger("paypal")}
    assert statuses == {failing["id"]: "failed", reversing["id"]: "reversed"}


def test_unacknowledged_webhooks_come_back_as_new_transmissions(
    psim: Simulator, paypal_receiver: PayPalReceiver
) -> None:
    psim.faults(processor="paypal", webhook_retry_scale=0.001)  # PayPal's 30 s first wait: 30 ms
    paypal_receiver.fail_next = 2
    token = get_token(psim)
    refund(psim, token, capture(psim), eur("2.00"))
    _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    attempts = list(paypal_receiver.deliveries)
    assert [d.answered for d in attempts] == [500, 500, 200]
    assert len({d.json()["id"] for d in attempts}) == 1  # the event id stays
    assert len({d.header("PAYPAL-TRANSMISSION-ID") for d in attempts}) == 3  # each attempt is a transmission
    assert len({d.header("PAYPAL-TRANSMISSION-SIG") for d in attempts}) == 3
    # The receiver records the request before its answer reaches the simulator: wait for that answer.
    [delivery] = wait_for(
        lambda: [
            d for d in psim.control("GET", "/webhooks?processor=paypal").json() if d["state"] != "pending"
        ]
    )
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 3)
    assert [round(a["waited"], 3) for a in delivery["attempt_log"]] == [0.0, 0.03, 0.06]
    # Every transmission, failed ones too, verifies online.
    assert all(
        _verify_online(psim, token, _claim(d))[1] == {"verification_status": "SUCCESS"} for d in attempts
    )


def test_each_connection_gets_its_own_webhooks(psim: Simulator, paypal_receiver: PayPalReceiver) -> None:
    token = get_token(psim, US_CLIENT_ID, US_CLIENT_SECRET)
    refund(psim, token, capture(psim), eur("2.00"))
    [delivery] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    assert delivery.path == "/webhooks/paypal-us"
    leaf = _chain(psim, delivery)[0]
    _verify(leaf, delivery, US_WEBHOOK_ID)


def test_dropped_and_duplicated_webhooks(psim: Simulator, paypal_receiver: PayPalReceiver) -> None:
    token = get_token(psim)
    psim.faults(processor="paypal", webhook_duplicate_rate=1.0)
    refund(psim, token, capture(psim), eur("2.00"))
    first, second = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED", 2)
    assert first.json() == second.json()
    assert first.header("PAYPAL-TRANSMISSION-ID") != second.header("PAYPAL-TRANSMISSION-ID")
    paypal_receiver.clear()
    psim.faults(processor="paypal", webhook_duplicate_rate=0.0, webhook_drop_rate=1.0)
    refund(psim, token, capture(psim), eur("2.00"))
    refund(psim, token, capture(psim), eur("3.00"), request_id="after-drop")
    psim.faults(processor="paypal", webhook_drop_rate=0.0)
    refund(psim, token, capture(psim), eur("4.00"))
    [only] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    assert only.json()["resource"]["amount"]["value"] == "4.00"


def test_the_health_check_reads_the_connections_webhook(
    psim: Simulator, paypal_receiver: PayPalReceiver
) -> None:
    token, us_token = get_token(psim), get_token(psim, US_CLIENT_ID, US_CLIENT_SECRET)

    def read(webhook_id: str, bearer: str) -> tuple[int, Any]:
        response = psim.http.get(
            f"{psim.url}/paypal/v1/notifications/webhooks/{webhook_id}",
            headers={"Authorization": f"Bearer {bearer}"},
        )
        return response.status_code, response.json()

    status, body = read(WEBHOOK_ID, token)
    assert status == 200
    validate_webhook(body)
    assert (body["id"], body["url"]) == (
        WEBHOOK_ID,
        f"http://127.0.0.1:{paypal_receiver.port}/webhooks/paypal-eu",
    )
    assert {t["name"] for t in body["event_types"]} >= {
        "PAYMENT.CAPTURE.REFUNDED",
        "PAYMENT.CAPTURE.REVERSED",
    }
    assert read(WEBHOOK_ID, us_token)[1]["name"] == "INVALID_RESOURCE_ID"  # another app's webhook
    assert read("NOSUCHWEBHOOK", token)[0] == 404
    assert psim.http.get(f"{psim.url}/paypal/v1/notifications/webhooks/{WEBHOOK_ID}").status_code == 401


def test_the_certificate_directory_is_reused(
    psim: Simulator, paypal_receiver: PayPalReceiver, paypal_cert_dir: Path, tmp_path: Path
) -> None:
    token = get_token(psim)
    refund(psim, token, capture(psim), eur("2.00"))
    [delivery] = _one(paypal_receiver, "PAYMENT.CAPTURE.REFUNDED")
    cert_path = "/paypal" + delivery.header("PAYPAL-CERT-URL").split("/paypal", 1)[1]
    connections = tmp_path / "connections.toml"
    connections.write_text("", encoding="utf-8")
    again = start_paypal_simulator(
        connections, "http://127.0.0.1:9/{connection}", paypal_cert_dir, public_url=False
    )
    try:
        assert again.control("GET", "/paypal/ca.pem").content == psim.control("GET", "/paypal/ca.pem").content
        served = again.http.get(again.url + cert_path)
        assert served.status_code == 200
        assert x509.load_pem_x509_certificates(served.content)[0] == _chain(psim, delivery)[0]
        other = cert_path[:-1] + ("1" if cert_path.endswith("0") else "0")
        assert again.http.get(again.url + other).status_code == 404
    finally:
        stop_simulator(again)


def test_paypal_retry_schedule_is_25_resends_over_three_days() -> None:
    assert len(RETRY_DELAYS) == 25
    assert sum(RETRY_DELAYS) == pytest.approx(72 * 3600)
    assert RETRY_DELAYS[0] == 30
    assert list(RETRY_DELAYS) == sorted(RETRY_DELAYS)


def test_a_stored_certificate_is_reissued_when_expired_or_from_another_ca(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "a")
    assert load_or_create(tmp_path / "a").leaf == first.leaf  # reused as it is
    other = load_or_create(tmp_path / "b")
    for name in ("signing.pem", "signing-key.pem"):  # a leaf another CA issued
        (tmp_path / "a" / name).write_bytes((tmp_path / "b" / name).read_bytes())
    reissued = load_or_create(tmp_path / "a")
    assert reissued.ca == first.ca
    assert reissued.leaf not in (first.leaf, other.leaf)
    reissued.leaf.verify_directly_issued_by(first.ca)
    assert reissued.leaf.not_valid_before_utc < datetime.datetime.now(datetime.UTC)
    assert reissued.leaf.not_valid_after_utc - reissued.leaf.not_valid_before_utc == datetime.timedelta(
        days=366
    )
