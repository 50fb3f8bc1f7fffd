"""PayPal refunds at the simulator over plain HTTP: idempotency, Prefer, the balance, issues, faults,
and every answer checked against payments_payment_v2.json."""

from __future__ import annotations

import concurrent.futures
import time
import uuid

import httpx2

from .conftest import Simulator, wait_for
from .paypal_kit import (
    capture,
    eur,
    get_token,
    paypal_cert_dir,
    paypal_receiver,
    paypal_simulator_process,
    psim,
    refund,
)
from .paypal_schema import validate_capture, validate_refund, validate_refund_error

__all__ = ["paypal_cert_dir", "paypal_receiver", "paypal_simulator_process", "psim"]


def test_same_request_id_is_the_same_refund_and_no_second_row(psim: Simulator) -> None:
    token, capture_id, key = get_token(psim), capture(psim), str(uuid.uuid4())
    first = refund(psim, token, capture_id, eur("10.00", invoice_id=key), request_id=key)
    again = refund(psim, token, capture_id, eur("10.00", invoice_id=key), request_id=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    validate_refund(first.json())
    minimal = refund(
        psim, token, capture_id, eur("10.00", invoice_id=key), request_id=key, representation=False
    )
    assert minimal.json() == {k: first.json()[k] for k in ("id", "status", "links")}
    assert [row["idempotency_key"] for row in psim.ledger("paypal")] == [key]
    # Without a request id PayPal executes every call.
    refund(psim, token, capture_id, eur("1.00"))
    refund(psim, token, capture_id, eur("1.00"))
    assert len(psim.ledger("paypal")) == 3


def test_a_replay_answers_the_latest_state(psim: Simulator) -> None:
    psim.faults(processor="paypal", pending_rate=1.0, settle_ms=300)
    token, capture_id, key = get_token(psim), capture(psim), str(uuid.uuid4())
    first = refund(psim, token, capture_id, eur("10.00"), request_id=key).json()
    assert (first["status"], first["status_details"]) == ("PENDING", {"reason": "ECHECK"})
    wait_for(lambda: psim.ledger("paypal")[0]["status"] == "succeeded")
    later = refund(psim, token, capture_id, eur("10.00"), request_id=key).json()
    assert (later["id"], later["status"]) == (first["id"], "COMPLETED")
    assert "status_details" not in later
    assert len(psim.ledger("paypal")) == 1


def test_a_refused_request_is_replayed_as_refused(psim: Simulator) -> None:
    token, capture_id, key = get_token(psim), capture(psim, 1_000), str(uuid.uuid4())
    first = refund(psim, token, capture_id, eur("10.01"), request_id=key)
    assert first.status_code == 422
    refund(psim, token, capture_id, eur("5.00"))
    again = refund(psim, token, capture_id, eur("1.00"), request_id=key)  # a smaller amount, same id
    assert (again.status_code, again.json()) == (422, first.json())


def test_a_forgotten_request_id_executes_again_unless_the_invoice_id_was_used(psim: Simulator) -> None:
    psim.faults(processor="paypal", idempotency_retention_seconds=0.3)
    token, capture_id, key = get_token(psim), capture(psim), str(uuid.uuid4())
    assert refund(psim, token, capture_id, eur("10.00"), request_id=key).status_code == 201
    time.sleep(0.4)
    assert refund(psim, token, capture_id, eur("10.00"), request_id=key).status_code == 201
    assert len(psim.ledger("paypal")) == 2  # forgotten: a second refund, as PayPal would
    invoiced = str(uuid.uuid4())
    assert (
        refund(psim, token, capture_id, eur("1.00", invoice_id=invoiced), request_id=invoiced).status_code
        == 201
    )
    time.sleep(0.4)
    duplicate = refund(psim, token, capture_id, eur("1.00", invoice_id=invoiced), request_id=invoiced)
    assert duplicate.status_code == 422
    assert duplicate.json()["details"][0]["issue"] == "DUPLICATE_INVOICE_ID"
    validate_refund_error(422, duplicate.json())
    assert len(psim.ledger("paypal")) == 3


def test_the_same_request_id_in_flight_is_a_conflict(psim: Simulator) -> None:
    psim.faults(processor="paypal", latency_ms=600)
    token, capture_id, key = get_token(psim), capture(psim), str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(refund, psim, token, capture_id, eur("10.00"), request_id=key)
        time.sleep(0.2)
        second = pool.submit(refund, psim, token, capture_id, eur("10.00"), request_id=key)
        answers = {f.result().status_code: f.result() for f in (first, second)}
    assert sorted(answers) == [201, 409]
    conflict, created = answers[409], answers[201]
    assert conflict.json()["name"] == "RESOURCE_CONFLICT"
    assert conflict.json()["details"][0]["issue"] == "PREVIOUS_REQUEST_IN_PROGRESS"
    validate_refund_error(409, conflict.json())
    again = refund(psim, token, capture_id, eur("10.00"), request_id=key)
    assert again.json()["id"] == created.json()["id"]
    assert len(psim.ledger("paypal")) == 1


def test_no_body_refunds_the_rest_of_the_capture(psim: Simulator) -> None:
    token, capture_id = get_token(psim), capture(psim, 10_000, "USD")
    refund(psim, token, capture_id, {"amount": {"currency_code": "USD", "value": "30.00"}})
    rest = refund(psim, token, capture_id, None)
    assert rest.status_code == 201
    assert rest.json()["amount"] == {"currency_code": "USD", "value": "70.00"}
    assert rest.json()["seller_payable_breakdown"]["total_refunded_amount"]["value"] == "100.00"
    read = psim.http.get(
        f"{psim.url}/paypal/v2/payments/captures/{capture_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert read.json()["status"] == "REFUNDED"
    validate_capture(read.json())
    full = refund(psim, token, capture_id, None)
    assert full.json()["details"][0]["issue"] == "CAPTURE_FULLY_REFUNDED"


def test_an_issue_set_on_a_capture(psim: Simulator) -> None:
    token, capture_id = get_token(psim), capture(psim)
    assert (
        psim.control(
            "POST", f"/paypal/captures/{capture_id}/issue", {"issue": "TRANSACTION_DISPUTED"}
        ).status_code
        == 200
    )
    disputed = refund(psim, token, capture_id, eur("1.00"))
    assert disputed.status_code == 422
    assert disputed.json()["details"][0]["issue"] == "TRANSACTION_DISPUTED"
    validate_refund_error(422, disputed.json())
    assert (
        psim.control("POST", f"/paypal/captures/{capture_id}/issue", {"issue": "NOT_AN_ISSUE"}).status_code
        == 400
    )
    psim.control("POST", f"/paypal/captures/{capture_id}/issue", {"issue": None})
    assert refund(psim, token, capture_id, eur("1.00")).status_code == 201


def test_bad_requests(psim: Simulator) -> None:
    token, capture_id = get_token(psim), capture(psim)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{psim.url}/paypal/v2/payments/captures/{capture_id}/refund"
    malformed = psim.http.post(url, content=b"{not json", headers=headers)
    assert (malformed.status_code, malformed.json()["name"]) == (400, "INVALID_REQUEST")
    too_long = refund(psim, token, capture_id, eur("1.00", note_to_payer="x" * 256))
    assert too_long.json()["details"][0]["issue"] == "INVALID_STRING_LENGTH"
    validate_refund_error(400, too_long.json())
    number = refund(psim, token, capture_id, {"amount": {"currency_code": "EUR", "value": 1}})
    assert number.json()["details"][0]["issue"] == "INVALID_PARAMETER_SYNTAX"
    unknown = refund(psim, token, "NOSUCHCAPTURE", eur("1.00"))
    assert unknown.status_code == 404
    validate_refund_error(404, unknown.json())
    refund_read = psim.http.get(f"{psim.url}/paypal/v2/payments/refunds/NOSUCH", headers=headers)
    assert refund_read.status_code == 404
    assert psim.http.get(f"{psim.url}/paypal/v2/nothing/here").status_code == 404
    assert psim.ledger("paypal") == []


def test_shared_faults_apply_to_paypal(psim: Simulator) -> None:
    token, capture_id = get_token(psim), capture(psim)
    psim.faults(processor="paypal", error_rate=1.0)
    failed = refund(psim, token, capture_id, eur("1.00"))
    assert failed.status_code in {500, 502, 503}
    validate_refund_error(503 if failed.status_code == 503 else 500, failed.json())
    psim.faults(processor="paypal", error_rate=0.0, outage=True)
    assert refund(psim, token, capture_id, eur("1.00")).json()["name"] == "SERVICE_UNAVAILABLE"
    psim.faults(processor="paypal", outage=False, reset_rate=1.0)
    try:
        refund(psim, token, capture_id, eur("1.00"))
        raise AssertionError("the connection should have been dropped")
    except httpx2.TransportError:
        pass
    psim.faults(processor="paypal", reset_rate=0.0, malformed_rate=1.0)
    try:  # executed; the answer arrives cut in half or labelled gzip without being compressed
        mangled = refund(psim, token, capture_id, eur("1.00"), request_id="mangled-1")
        assert mangled.status_code == 201
    except httpx2.DecodingError:
        pass
    psim.faults(processor="paypal", malformed_rate=0.0)
    assert refund(psim, token, capture_id, eur("1.00"), request_id="mangled-1").status_code == 201
    assert sum(1 for row in psim.ledger("paypal") if row["idempotency_key"] == "mangled-1") == 1


def test_ledger_rows_follow_the_refunds_life(psim: Simulator) -> None:
    psim.faults(processor="paypal", pending_rate=1.0, fail_later_rate=1.0, settle_ms=1_500)
    token, capture_id = get_token(psim), capture(psim)
    created = refund(psim, token, capture_id, eur("4.00")).json()
    assert psim.ledger("paypal")[0]["status"] == "pending"
    wait_for(lambda: psim.ledger("paypal")[0]["status"] == "failed")
    read = psim.http.get(
        f"{psim.url}/paypal/v2/payments/refunds/{created['id']}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert (read["status"], read["status_details"]) == ("FAILED", {"reason": "ECHECK"})
    validate_refund(read)
    # The failed refund released its hold on the capture.
    assert refund(psim, token, capture_id, None).json()["amount"]["value"] == "100.00"
