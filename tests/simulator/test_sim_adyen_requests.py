"""Adyen's refund endpoint at the HTTP level: idempotency, retention, validation, faults, signing."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx2
import pytest
from Adyen.util import generate_notification_sig

from refundwatch.simulator.adyen.wire import sign_item

from .adyen_checkout import validate_answer
from .conftest import ADYEN_HMAC, ADYEN_KEY, ADYEN_MERCHANT, Simulator, adyen_payment


def post(
    sim: Simulator,
    psp: str,
    body: Any,
    *,
    key: str | None = None,
    api_key: str = ADYEN_KEY,
    path: str = "refunds",
) -> httpx2.Response:
    headers = {"X-API-Key": api_key}
    if key is not None:
        headers["Idempotency-Key"] = key
    url = f"{sim.url}/adyen/v72/payments/{psp}/{path}" if path == "refunds" else f"{sim.url}/adyen/v72/{path}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return sim.http.post(url, content=content, headers={**headers, "Content-Type": "application/json"})


def body(value: int = 1_000, **extra: Any) -> dict[str, Any]:
    return {"merchantAccount": ADYEN_MERCHANT, "amount": {"value": value, "currency": "EUR"}, **extra}


def error_shape(response: httpx2.Response) -> dict[str, Any]:
    data: dict[str, Any] = response.json()
    assert {"status", "errorCode", "message", "errorType"} <= set(data)
    assert data["status"] == response.status_code
    return data


# -- idempotency ------------------------------------------------------------------------------------
def test_same_key_same_request_replays_without_a_new_row(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    first = post(asim, psp, body(reference="a"), key="key-1")
    again = post(asim, psp, body(reference="a"), key="key-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotency-Key"] == "key-1"
    assert len(asim.ledger("adyen")) == 1


def test_same_key_different_request_is_refused(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    assert post(asim, psp, body(1_000), key="key-2").status_code == 201
    other = post(asim, psp, body(2_000), key="key-2")
    assert other.status_code == 422
    assert error_shape(other)["errorCode"] == "704"
    assert other.headers["transient-error"] == "false"
    assert len(asim.ledger("adyen")) == 1


def test_idempotency_key_longer_than_64_is_refused(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    assert post(asim, psp, body(), key="k" * 64).status_code == 201
    too_long = post(asim, psp, body(), key="k" * 65)
    assert too_long.status_code == 400
    assert error_shape(too_long)["errorCode"] == "702"
    assert len(asim.ledger("adyen")) == 1


def test_concurrent_twins_execute_once(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    answers: list[httpx2.Response] = []

    def send() -> None:
        answers.append(post(asim, psp, body(), key="twin"))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len({a.json()["pspReference"] for a in answers}) == 1
    assert len(asim.ledger("adyen")) == 1


def test_retention_default_is_31_days_and_a_forgotten_key_pays_again(asim: Simulator) -> None:
    faults = asim.control("GET", "/faults").json()
    assert faults["adyen"]["idempotency_retention_seconds"] == 31 * 86400
    psp = adyen_payment(asim)
    asim.faults(processor="adyen", idempotency_retention_seconds=1)
    first = post(asim, psp, body(), key="old").json()
    deadline = time.monotonic() + 1.05
    while time.monotonic() < deadline:
        time.sleep(0.05)
    again = post(asim, psp, body(), key="old").json()
    assert again["pspReference"] != first["pspReference"]
    assert [row["idempotency_key"] for row in asim.ledger("adyen")] == ["old", "old"]


def test_a_refused_over_refund_is_kept_under_its_key(asim: Simulator) -> None:
    psp = adyen_payment(asim, 1_000)
    over = post(asim, psp, body(1_001), key="over")
    assert over.status_code == 422
    assert error_shape(over)["errorCode"] == "137"
    validate_answer(over)  # a 422 the spec declares, a ServiceError body
    again = post(asim, psp, body(1_001), key="over")
    assert again.json() == over.json()
    assert asim.ledger("adyen") == []


# -- validation -------------------------------------------------------------------------------------
# Codes and texts as Adyen's sources give them (gateways/adyen/errors.py names them; the simulator
# does not import it): spec generic-400, the error-code list, the SDK's mocks, Adyen's Go SDK tests.
@pytest.mark.parametrize(
    ("payload", "status", "code", "message"),
    [
        (b"{not json", 400, "702", None),
        ([1, 2], 400, "702", None),
        (
            {**body(), "colour": "red"},
            400,
            "702",
            "Structure of PaymentRefundRequest contains the following unknown fields: [colour]",
        ),
        ({"amount": {"value": 1, "currency": "EUR"}}, 422, "702", "Required field 'merchantAccount' is null"),
        ({"merchantAccount": ADYEN_MERCHANT}, 422, "100", "Required object 'amount' is not provided."),
        (body(0), 422, "137", "Field 'amount' is not valid."),
        (body(-5), 422, "137", "Field 'amount' is not valid."),
        (
            {**body(), "amount": {"value": 1, "currency": "EURO"}},
            422,
            "138",
            "Unsupported currency specified",
        ),
        ({**body(), "amount": {"value": 1, "currency": "USD"}}, 422, "138", "Unsupported currency specified"),
        ({**body(), "merchantRefundReason": "BORED"}, 400, "702", None),
        ({**body(), "merchantAccount": "SomeoneElse"}, 403, "901", "Invalid Merchant Account"),
    ],
)
def test_bad_requests_get_adyen_errors_and_no_row(
    asim: Simulator, payload: Any, status: int, code: str, message: str | None
) -> None:
    psp = adyen_payment(asim)
    response = post(asim, psp, payload)
    assert response.status_code == status, response.text
    error = error_shape(response)
    assert error["errorCode"] == code
    assert error["errorType"] == ("security" if status == 403 else "validation")
    if message is not None:
        assert error["message"] == message
    if status != 400 or code != "702" or message is not None:
        validate_answer(response)  # an unreadable body cannot be checked as a request
    assert asim.ledger("adyen") == []


def test_answers_match_the_checkout_spec(asim: Simulator) -> None:
    psp = adyen_payment(asim, 1_000)
    received = post(asim, psp, body(400, reference="order-1"), key="spec-1")
    assert received.status_code == 201
    validate_answer(received)
    validate_answer(post(asim, "ZZZZZZZZZZZZZZZZ", body(100)))  # 167: an unknown payment
    validate_answer(post(asim, psp, body(100), api_key="AQE_unknown"))  # 401


def test_a_body_over_the_limit_is_adyens_29_100(asim: Simulator) -> None:
    response = post(asim, adyen_payment(asim), b'{"merchantAccount": "' + b"x" * (1 << 20) + b'"}')
    assert response.status_code == 413
    error = error_shape(response)
    assert error["errorCode"] == "29_100"
    assert error["message"] == "The request is larger than the allowed maximum of 1048576 bytes"


def test_unknown_adyen_path_is_an_adyen_404(asim: Simulator) -> None:
    response = asim.http.get(f"{asim.url}/adyen/v72/payments/X/refunds/Y")
    assert response.status_code == 404
    assert error_shape(response)["status"] == 404


# -- faults -----------------------------------------------------------------------------------------
def test_outage_and_server_errors_execute_nothing(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    asim.faults(processor="adyen", outage=True)
    assert post(asim, psp, body()).status_code == 503
    assert post(asim, psp, {"merchantAccount": ADYEN_MERCHANT}, path="paymentMethods").status_code == 503
    asim.faults(processor="adyen", outage=False, error_rate=1.0)
    failed = post(asim, psp, body())
    assert failed.status_code in {500, 502, 503}
    assert {k: error_shape(failed)[k] for k in ("errorCode", "message", "errorType")} == {
        "errorCode": "903",
        "message": "Internal error",
        "errorType": "internal",
    }
    assert post(asim, psp, {}, path="paymentMethods").status_code in {500, 502, 503}
    assert asim.ledger("adyen") == []
    asim.faults(processor="adyen", error_rate=0.0)
    methods = post(asim, psp, {"merchantAccount": ADYEN_MERCHANT}, path="paymentMethods")
    assert methods.json() == {"paymentMethods": []}


def test_stripe_faults_leave_adyen_alone(asim: Simulator) -> None:
    asim.faults(processor="stripe", outage=True)
    assert post(asim, adyen_payment(asim), body()).status_code == 201


def test_malformed_answer_still_executes(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    asim.faults(processor="adyen", malformed_rate=1.0)
    try:  # cut in half, or labelled gzip without being compressed: no JSON either way
        json.loads(post(asim, psp, body(), key="mangled").content)
        readable = True
    except (httpx2.DecodingError, json.JSONDecodeError):
        readable = False
    assert not readable
    asim.faults(processor="adyen", malformed_rate=0.0)
    again = post(asim, psp, body(), key="mangled")
    assert again.json()["pspReference"] == asim.ledger("adyen")[0]["gateway_refund_id"]
    assert len(asim.ledger("adyen")) == 1


def test_a_retry_after_a_reset_is_the_same_refund(asim: Simulator) -> None:
    """Reset before or after execution (half each): a retry with the same key leaves one row."""
    psp = adyen_payment(asim)
    asim.faults(processor="adyen", reset_rate=1.0)
    with pytest.raises(httpx2.TransportError):
        post(asim, psp, body(100), key="after-reset")
    asim.faults(processor="adyen", reset_rate=0.0)
    retried = post(asim, psp, body(100), key="after-reset")
    assert retried.status_code == 201
    assert [row["gateway_refund_id"] for row in asim.ledger("adyen")] == [retried.json()["pspReference"]]


# -- the signature, independently of the simulator process ------------------------------------------
@pytest.mark.parametrize(
    "item",
    [
        {
            "amount": {"currency": "EUR", "value": 1000},
            "eventCode": "REFUND",
            "merchantAccountCode": "M",
            "merchantReference": "ref:with:colons",
            "originalReference": "9913140798220028",
            "pspReference": "QFQTPCQ8HXSKGK82",
            "success": "false",
        },
        {  # no originalReference, no merchantReference: both sign as empty strings
            "amount": {"currency": "JPY", "value": 7},
            "eventCode": "REFUNDED_REVERSED",
            "merchantAccountCode": "M",
            "pspReference": "ABCDEFGHIJKLMNOP",
            "success": "true",
        },
    ],
)
def test_signature_is_the_sdks(item: dict[str, Any]) -> None:
    signed = sign_item(item, ADYEN_HMAC)
    assert signed["additionalData"]["hmacSignature"] == generate_notification_sig(item, ADYEN_HMAC).decode()
