"""The official Adyen SDK 16.0.0, pointed at the simulator, is the witness of its Checkout API."""

from __future__ import annotations

import uuid

import Adyen
import pytest
from Adyen.exceptions import (
    AdyenAPIAuthenticationError,
    AdyenAPIInvalidPermission,
    AdyenAPIUnprocessableEntity,
)

from .conftest import ADYEN_KEY, ADYEN_MERCHANT, ADYEN_US_KEY, Simulator, adyen_client, adyen_payment


def _refund(value: int, reference: str = "rw-1", merchant: str = ADYEN_MERCHANT) -> dict[str, object]:
    return {
        "merchantAccount": merchant,
        "amount": {"value": value, "currency": "EUR"},
        "reference": reference,
    }


def test_sdk_refund_is_received_and_recorded(asim: Simulator) -> None:
    psp = adyen_payment(asim, 10_000)
    result = adyen_client(asim).checkout.modifications_api.refund_captured_payment(
        {**_refund(2_500, "order-42"), "merchantRefundReason": "CUSTOMER REQUEST"}, psp, idempotency_key="k-1"
    )
    assert result.status_code == 201
    body = result.message
    assert body["status"] == "received"
    assert body["paymentPspReference"] == psp
    assert body["merchantAccount"] == ADYEN_MERCHANT
    assert body["reference"] == "order-42"
    assert body["amount"] == {"value": 2_500, "currency": "EUR"}
    assert len(body["pspReference"]) == 16
    assert body["pspReference"] != psp
    assert asim.ledger("adyen") == [
        {
            "processor": "adyen",
            "payment_reference": psp,
            "gateway_refund_id": body["pspReference"],
            "idempotency_key": "k-1",
            "amount": 2_500,
            "currency": "EUR",
            "status": "pending",
        }
    ]


def test_sdk_over_refund_is_its_unprocessable_entity(asim: Simulator) -> None:
    psp = adyen_payment(asim, 10_000)
    api = adyen_client(asim).checkout.modifications_api
    api.refund_captured_payment(_refund(6_000), psp)
    with pytest.raises(AdyenAPIUnprocessableEntity) as caught:
        api.refund_captured_payment(_refund(4_001), psp)
    assert caught.value.status_code == 422
    assert caught.value.error_code == "137"
    assert caught.value.message["errorType"] == "validation"
    assert set(caught.value.message) >= {"status", "errorCode", "message", "errorType"}
    api.refund_captured_payment(_refund(4_000), psp)  # exactly the rest is fine
    assert sum(row["amount"] for row in asim.ledger("adyen")) == 10_000


def test_sdk_idempotent_repeat_returns_the_same_psp_reference(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    api = adyen_client(asim).checkout.modifications_api
    key = str(uuid.uuid4())
    first = api.refund_captured_payment(_refund(1_000), psp, idempotency_key=key)
    again = api.refund_captured_payment(_refund(1_000), psp, idempotency_key=key)
    assert again.message == first.message
    assert len(asim.ledger("adyen")) == 1


def test_sdk_unknown_key_and_foreign_merchant(asim: Simulator) -> None:
    psp = adyen_payment(asim)
    with pytest.raises(AdyenAPIAuthenticationError) as caught:
        adyen_client(asim, key="AQE_not_a_key").checkout.modifications_api.refund_captured_payment(
            _refund(100), psp
        )
    assert caught.value.message == {
        "status": 401,
        "errorCode": "000",
        "message": "HTTP Status Response - Unauthorized",
        "errorType": "security",
    }
    with pytest.raises(AdyenAPIInvalidPermission) as denied:
        adyen_client(asim, key=ADYEN_US_KEY).checkout.modifications_api.refund_captured_payment(
            _refund(100), psp
        )
    assert denied.value.error_code == "901"
    assert asim.ledger("adyen") == []


def test_sdk_unknown_payment(asim: Simulator) -> None:
    with pytest.raises(AdyenAPIUnprocessableEntity) as caught:
        adyen_client(asim).checkout.modifications_api.refund_captured_payment(
            _refund(100), "ZZZZZZZZZZZZZZZZ"
        )
    assert caught.value.error_code == "167"


def test_sdk_payment_methods_is_the_health_check(asim: Simulator) -> None:
    result = adyen_client(asim).checkout.payments_api.payment_methods({"merchantAccount": ADYEN_MERCHANT})
    assert result.status_code == 200
    assert result.message == {"paymentMethods": []}
    with pytest.raises(AdyenAPIAuthenticationError):
        adyen_client(asim, key="nope").checkout.payments_api.payment_methods(
            {"merchantAccount": ADYEN_MERCHANT}
        )


def test_sdk_is_the_pinned_version() -> None:
    assert Adyen.settings.LIB_VERSION == "16.0.0"
    assert ADYEN_KEY
