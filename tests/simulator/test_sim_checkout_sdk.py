"""The official checkout-sdk 4.8.1, pointed at the simulator: refunds, reads, Checkout.com's errors."""

from __future__ import annotations

import pytest
from checkout_sdk.exception import CheckoutApiException
from checkout_sdk.payments.payments import RefundRequest

from .checkout_kit import (
    PREVIOUS_KEY,
    SECRET_KEY,
    checkout_receiver,
    checkout_simulator_process,
    csim,
    ledger,
    payment,
    previous_sdk,
    sdk,
)
from .conftest import Simulator, wait_for

__all__ = ["checkout_receiver", "checkout_simulator_process", "csim"]


def _refund_request(amount: int | None, reference: str, **metadata: object) -> RefundRequest:
    request = RefundRequest()
    if amount is not None:
        request.amount = amount
    request.reference = reference
    request.metadata = dict(metadata)
    return request


def test_sdk_refunds_reads_the_payment_and_its_actions(csim: Simulator) -> None:
    api = sdk(csim)
    payment_id = payment(csim, 10_000, "EUR")
    accepted = api.payments.refund_payment(
        payment_id, _refund_request(2_500, "rf-0001", refund_id="rf-0001", idempotency_key="k-1"), "k-1"
    )
    assert accepted.http_metadata.status_code == 202
    assert accepted.action_id.startswith("act_")
    assert len(accepted.action_id) == 30
    assert accepted.reference == "rf-0001"
    assert accepted._links.payment.href.endswith(f"/checkout/payments/{payment_id}")

    details = api.payments.get_payment_details(payment_id)
    assert (details.id, details.amount, details.currency) == (payment_id, 10_000, "EUR")
    assert details.status == "Captured"  # the refund is only accepted: nothing refunded yet
    assert details.balances.total_captured == 10_000
    assert details.balances.total_refunded == 0
    assert details.balances.available_to_refund == 7_500  # held by the refund being processed

    pending = api.payments.get_payment_actions(payment_id).items
    assert [a.type for a in pending] == ["Refund", "Capture", "Authorization"]
    assert pending[0].id == accepted.action_id
    assert pending[0].approved is None

    def approved() -> bool:
        return api.payments.get_payment_actions(payment_id).items[0].approved is True

    wait_for(approved, timeout=10)
    action = api.payments.get_payment_actions(payment_id).items[0]
    assert (action.amount, action.response_code, action.response_summary) == (2_500, "10000", "Approved")
    assert action.reference == "rf-0001"
    assert (action.metadata.refund_id, action.metadata.idempotency_key) == ("rf-0001", "k-1")
    details = api.payments.get_payment_details(payment_id)
    assert details.status == "Partially Refunded"
    assert (details.balances.total_refunded, details.balances.available_to_refund) == (2_500, 7_500)

    rows = ledger(csim)
    assert [(r["gateway_refund_id"], r["idempotency_key"], r["amount"], r["status"]) for r in rows] == [
        (accepted.action_id, "k-1", 2_500, "succeeded")
    ]


def test_sdk_gets_the_over_refund_as_its_own_exception(csim: Simulator) -> None:
    api = sdk(csim)
    payment_id = payment(csim, 1_000)
    with pytest.raises(CheckoutApiException) as caught:
        api.payments.refund_payment(payment_id, _refund_request(1_001, "rf-over"), "k-over")
    error = caught.value
    assert error.http_metadata.status_code == 422
    assert error.error_type == "request_invalid"
    assert error.error_details == ["refund_amount_exceeds_balance"]
    assert error.request_id
    assert ledger(csim) == []


def test_sdk_gets_403_once_the_payment_is_fully_refunded(csim: Simulator) -> None:
    api = sdk(csim)
    payment_id = payment(csim, 1_000)
    whole = api.payments.refund_payment(payment_id)  # no body: the whole payment
    assert whole.http_metadata.status_code == 202
    with pytest.raises(CheckoutApiException) as caught:
        api.payments.refund_payment(payment_id, _refund_request(1, "rf-more"))
    assert caught.value.http_metadata.status_code == 403
    assert [r["amount"] for r in ledger(csim)] == [1_000]


def test_sdk_gets_404_for_an_unknown_payment_and_401_for_an_unknown_key(csim: Simulator) -> None:
    with pytest.raises(CheckoutApiException) as unknown:
        sdk(csim).payments.get_payment_details("pay_" + "a" * 26)
    assert unknown.value.http_metadata.status_code == 404
    stranger = "sk_sbox_" + "b" * 26 + "c"
    assert stranger != SECRET_KEY
    with pytest.raises(CheckoutApiException) as refused:
        sdk(csim, stranger).payments.refund_payment(payment(csim), _refund_request(100, "rf-x"))
    assert refused.value.http_metadata.status_code == 401
    assert ledger(csim) == []


def test_previous_platform_sends_the_bare_key(csim: Simulator) -> None:
    api = previous_sdk(csim)
    payment_id = payment(csim, 5_000, "GBP")
    request = RefundRequest()  # the previous platform's client takes the same class
    request.amount = 1_200
    request.reference = "rf-prev"
    accepted = api.payments.refund_payment(payment_id, request, "k-prev")
    assert accepted.http_metadata.status_code == 202
    details = api.payments.get_payment_details(payment_id)
    assert details.balances.available_to_refund == 3_800
    rows = ledger(csim)
    assert [(r["amount"], r["currency"], r["idempotency_key"]) for r in rows] == [(1_200, "GBP", "k-prev")]


def test_event_types_answer_both_platforms(csim: Simulator) -> None:
    """The health check's call: GET /event-types with the secret key (previous platform's EventsClient)."""
    answer = previous_sdk(csim).events.retrieve_all_event_types()
    versions = {item.version: item.event_types for item in answer.items}
    assert set(versions) == {"1.0", "2.0"}
    assert {"payment_refunded", "payment_refund_declined", "payment_refund_pending"} <= set(versions["2.0"])
    workflow = sdk(csim).workflows.get_event_types()
    assert workflow.http_metadata.status_code == 200
    with pytest.raises(CheckoutApiException) as refused:
        previous_sdk(csim, PREVIOUS_KEY.replace("4", "5")).events.retrieve_all_event_types()
    assert refused.value.http_metadata.status_code == 401
