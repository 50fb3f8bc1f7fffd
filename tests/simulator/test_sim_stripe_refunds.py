"""Stripe refunds through the official SDK: create, retrieve, list, errors, balance."""

from __future__ import annotations

import httpx2
import pytest
import stripe

from .conftest import SIMULATOR_KEY, Simulator


def test_create_refund_answers_a_stripe_refund(sim: Simulator) -> None:
    sim.payment("pi_create", amount=5000, currency="EUR")
    refund = sim.client().v1.refunds.create(
        params={
            "payment_intent": "pi_create",
            "amount": 1200,
            "reason": "requested_by_customer",
            "metadata": {"order_id": "ord_1", "invoice": "inv_9"},
        },
        options={"idempotency_key": "create-1"},
    )
    assert isinstance(refund, stripe.Refund)
    assert refund.id.startswith("re_")
    assert refund.object == "refund"
    assert refund.amount == 1200
    assert refund.currency == "eur"
    assert refund.status == "succeeded"
    assert refund.payment_intent == "pi_create"
    assert isinstance(refund.charge, str)
    assert refund.charge.startswith("ch_")
    assert isinstance(refund.balance_transaction, str)
    assert refund.balance_transaction.startswith("txn_")
    assert refund.reason == "requested_by_customer"
    assert refund.metadata is not None
    assert refund.metadata.to_dict() == {
        "order_id": "ord_1",
        "invoice": "inv_9",
    }
    assert refund.receipt_number is None
    assert isinstance(refund.created, int)
    assert refund.last_response is not None
    assert str(refund.last_response.request_id).startswith("req_")

    assert sim.ledger() == [
        {
            "processor": "stripe",
            "payment_reference": "pi_create",
            "gateway_refund_id": refund.id,
            "idempotency_key": "create-1",
            "amount": 1200,
            "currency": "EUR",
            "status": "succeeded",
        }
    ]


def test_amount_defaults_to_the_remaining_balance(sim: Simulator) -> None:
    sim.payment("pi_rest", amount=3000)
    client = sim.client()
    client.v1.refunds.create(params={"payment_intent": "pi_rest", "amount": 1000})
    rest = client.v1.refunds.create(params={"payment_intent": "pi_rest"})
    assert rest.amount == 2000


def test_refund_by_charge_id(sim: Simulator) -> None:
    sim.payment("ch_direct", amount=700, currency="usd")
    refund = sim.client().v1.refunds.create(params={"charge": "ch_direct"})
    assert refund.charge == "ch_direct"
    assert refund.payment_intent is None
    assert refund.amount == 700


def test_the_charge_of_a_payment_intent_refunds_the_same_payment(sim: Simulator) -> None:
    sim.payment("pi_alias", amount=1000)
    client = sim.client()
    first = client.v1.refunds.create(params={"payment_intent": "pi_alias", "amount": 400})
    assert isinstance(first.charge, str)
    second = client.v1.refunds.create(params={"charge": first.charge})
    assert second.amount == 600
    assert second.payment_intent == "pi_alias"


def test_retrieve_and_list(sim: Simulator) -> None:
    sim.payment("pi_list", amount=10_000)
    sim.payment("pi_other", amount=10_000)
    client = sim.client()
    created = [
        client.v1.refunds.create(params={"payment_intent": "pi_list", "amount": 100 + i}) for i in range(3)
    ]
    client.v1.refunds.create(params={"payment_intent": "pi_other", "amount": 50})

    fetched = client.v1.refunds.retrieve(created[1].id)
    assert fetched.id == created[1].id
    assert fetched.amount == 101
    assert fetched.to_dict() == created[1].to_dict()

    page = client.v1.refunds.list(params={"payment_intent": "pi_list", "limit": 2})
    assert [r.id for r in page.data] == [created[2].id, created[1].id]  # newest first
    assert page.has_more is True
    everything = [r.id for r in page.auto_paging_iter()]
    assert everything == [created[2].id, created[1].id, created[0].id]

    by_charge = client.v1.refunds.list(params={"charge": str(created[0].charge)})
    assert len(by_charge.data) == 3
    assert len(client.v1.refunds.list().data) == 4


def test_unknown_refund_is_resource_missing(sim: Simulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sim.client().v1.refunds.retrieve("re_doesnotexist")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "id"


def test_refunds_belong_to_the_key_that_made_them(sim: Simulator) -> None:
    sim.payment("pi_account", amount=500)
    refund = sim.client().v1.refunds.create(params={"payment_intent": "pi_account"})
    with pytest.raises(stripe.InvalidRequestError):
        sim.client("sk_test_another_account").v1.refunds.retrieve(refund.id)


@pytest.mark.parametrize(("param", "reference"), [("payment_intent", "pi_unknown"), ("charge", "ch_unknown")])
def test_unknown_payment_is_resource_missing(sim: Simulator, param: str, reference: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sim.client().v1.refunds.create(params={param: reference, "amount": 100})  # type: ignore[arg-type,misc]
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == param
    assert reference in str(caught.value.user_message)
    assert sim.ledger() == []


def test_amount_too_large(sim: Simulator) -> None:
    sim.payment("pi_small", amount=1000, currency="usd")
    client = sim.client()
    client.v1.refunds.create(params={"payment_intent": "pi_small", "amount": 600})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": "pi_small", "amount": 401})
    assert caught.value.http_status == 400
    assert caught.value.code == "amount_too_large"
    assert caught.value.param == "amount"
    assert "$4.01" in str(caught.value.user_message)
    assert "$4.00" in str(caught.value.user_message)
    assert len(sim.ledger()) == 1


def test_charge_already_refunded(sim: Simulator) -> None:
    sim.payment("pi_full", amount=1000)
    client = sim.client()
    client.v1.refunds.create(params={"payment_intent": "pi_full"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": "pi_full", "amount": 1})
    assert caught.value.http_status == 400
    assert caught.value.code == "charge_already_refunded"
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": "pi_full"})
    assert again.value.code == "charge_already_refunded"


def test_currency_mismatch(sim: Simulator) -> None:
    sim.payment("pi_eur", amount=1000, currency="EUR")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sim.client().v1.refunds.create(params={"payment_intent": "pi_eur", "amount": 100, "currency": "usd"})
    assert caught.value.http_status == 400
    assert caught.value.param == "currency"
    assert sim.ledger() == []
    same = sim.client().v1.refunds.create(
        params={"payment_intent": "pi_eur", "amount": 100, "currency": "EUR"}
    )
    assert same.currency == "eur"


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"payment_intent": "pi_p", "amount": 0}, "parameter_invalid_integer", "amount"),
        ({"payment_intent": "pi_p", "amount": "ten"}, "parameter_invalid_integer", "amount"),
        ({"payment_intent": "pi_p", "bogus": "1"}, "parameter_unknown", "bogus"),
        ({"amount": 100}, "parameter_missing", None),
        ({"payment_intent": "pi_p", "reason": "because"}, None, "reason"),
    ],
)
def test_invalid_parameters(
    sim: Simulator, params: dict[str, object], code: str | None, param: str | None
) -> None:
    sim.payment("pi_p", amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sim.client().v1.refunds.create(params=params)  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert caught.value.code == code
    assert caught.value.param == param
    assert sim.ledger() == []


def test_authentication(sim: Simulator) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        sim.client("rk_nope_abcd").v1.balance.retrieve()
    assert caught.value.http_status == 401
    assert "****abcd" in str(caught.value.user_message)
    response = httpx2.get(f"{sim.stripe_url}/v1/balance", trust_env=False)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_balance(sim: Simulator) -> None:
    balance = sim.client().v1.balance.retrieve()
    assert balance.object == "balance"
    assert balance.livemode is False
    assert balance.available[0].currency == "usd"


def test_request_id_and_version_headers(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {SIMULATOR_KEY}", "Stripe-Version": "2024-06-20"}
    response = httpx2.get(f"{sim.stripe_url}/v1/balance", headers=headers, trust_env=False)
    assert response.status_code == 200
    assert response.headers["Request-Id"].startswith("req_")
    assert response.headers["Stripe-Version"] == "2024-06-20"
    missing = httpx2.get(f"{sim.stripe_url}/v1/refunds/re_x", headers=headers, trust_env=False)
    assert missing.status_code == 404
    assert missing.headers["Request-Id"].startswith("req_")
    assert missing.json()["error"]["code"] == "resource_missing"


def test_unrecognized_url(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {SIMULATOR_KEY}"}
    response = httpx2.get(f"{sim.stripe_url}/v1/charges_nope", headers=headers, trust_env=False)
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (GET: /v1/charges_nope)")


def test_basic_auth_and_form_encoding_like_curl(sim: Simulator) -> None:
    sim.payment("pi_curl", amount=900)
    response = httpx2.post(
        f"{sim.stripe_url}/v1/refunds",
        auth=(SIMULATOR_KEY, ""),
        data={"payment_intent": "pi_curl", "amount": "300", "metadata[source]": "curl"},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"source": "curl"}
    assert sim.ledger()[0]["idempotency_key"] is None
