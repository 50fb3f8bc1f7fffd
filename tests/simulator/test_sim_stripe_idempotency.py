"""Stripe idempotency: replays, mismatches, key scope, and concurrent requests with one key."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import stripe

from .conftest import SIMULATOR_KEY, Simulator, wait_for


def test_same_key_same_params_replays_the_first_answer(sim: Simulator) -> None:
    sim.payment("pi_idem", amount=5000)
    client = sim.client()
    params: stripe.params.RefundCreateParams = {
        "payment_intent": "pi_idem",
        "amount": 700,
        "metadata": {"a": "1"},
    }
    first = client.v1.refunds.create(params=params, options={"idempotency_key": "idem-1"})
    second = client.v1.refunds.create(params=params, options={"idempotency_key": "idem-1"})
    assert second.id == first.id
    assert second.to_dict() == first.to_dict()
    assert second.last_response is not None
    assert first.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert second.last_response.headers["Original-Request"] == first.last_response.request_id
    assert second.last_response.request_id != first.last_response.request_id
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(sim.ledger()) == 1


def test_replay_keeps_the_status_of_the_first_answer(sim: Simulator) -> None:
    """A replay answers the saved body, even when the refund changed since (as Stripe does)."""
    sim.payment("pi_saved", amount=5000)
    sim.faults(processor="stripe", pending_rate=1.0, settle_ms=100)
    client = sim.client()
    first = client.v1.refunds.create(params={"payment_intent": "pi_saved"}, options={"idempotency_key": "k"})
    assert first.status == "pending"
    wait_for(lambda: sim.ledger()[0]["status"] == "succeeded")
    again = client.v1.refunds.create(params={"payment_intent": "pi_saved"}, options={"idempotency_key": "k"})
    assert again.status == "pending"
    assert client.v1.refunds.retrieve(first.id).status == "succeeded"


def test_same_key_different_params_is_an_idempotency_error(sim: Simulator) -> None:
    sim.payment("pi_mismatch", amount=5000)
    client = sim.client()
    client.v1.refunds.create(
        params={"payment_intent": "pi_mismatch", "amount": 100}, options={"idempotency_key": "m"}
    )
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.refunds.create(
            params={"payment_intent": "pi_mismatch", "amount": 200}, options={"idempotency_key": "m"}
        )
    assert caught.value.http_status == 400
    assert caught.value.json_body is not None
    error = caught.value.json_body["error"]  # type: ignore[index]
    assert error["type"] == "idempotency_error"
    assert error["message"].startswith(
        "Keys for idempotent requests can only be used with the same parameters they were first used with."
    )
    assert len(sim.ledger()) == 1


def test_errors_of_executed_requests_are_replayed(sim: Simulator) -> None:
    sim.payment("pi_err", amount=100)
    client = sim.client()
    params: stripe.params.RefundCreateParams = {"payment_intent": "pi_err", "amount": 500}
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.refunds.create(params=params, options={"idempotency_key": "too-much"})
        assert caught.value.code == "amount_too_large"
    assert caught.value.headers is not None
    assert caught.value.headers.get("Idempotent-Replayed") == "true"


def test_validation_failures_are_not_saved(sim: Simulator) -> None:
    """Stripe saves no result when parameters fail validation: the key stays usable."""
    sim.payment("pi_valid", amount=1000)
    client = sim.client()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(
            params={"payment_intent": "pi_valid", "amount": -5}, options={"idempotency_key": "v"}
        )
    refund = client.v1.refunds.create(
        params={"payment_intent": "pi_valid", "amount": 5}, options={"idempotency_key": "v"}
    )
    assert refund.amount == 5


def test_keys_are_scoped_per_api_key(sim: Simulator) -> None:
    sim.payment("pi_scope", amount=1000)
    params: stripe.params.RefundCreateParams = {"payment_intent": "pi_scope", "amount": 100}
    one = sim.client("sk_test_account_one").v1.refunds.create(
        params=params, options={"idempotency_key": "shared"}
    )
    two = sim.client("sk_test_account_two").v1.refunds.create(
        params=params, options={"idempotency_key": "shared"}
    )
    assert one.id != two.id
    assert len(sim.ledger()) == 2


def test_idempotency_key_longer_than_255_is_rejected(sim: Simulator) -> None:
    sim.payment("pi_long", amount=1000)
    client = sim.client()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": "pi_long"}, options={"idempotency_key": "k" * 256})
    assert caught.value.http_status == 400
    refund = client.v1.refunds.create(
        params={"payment_intent": "pi_long"}, options={"idempotency_key": "k" * 255}
    )
    assert refund.amount == 1000
    assert sim.ledger()[0]["idempotency_key"] == "k" * 255


def test_concurrent_sdk_requests_with_one_key_execute_once(sim: Simulator) -> None:
    sim.payment("pi_threads", amount=10_000)
    sim.faults(latency_ms=30, jitter_ms=20)

    def create(_: int) -> str:
        refund = sim.client().v1.refunds.create(
            params={"payment_intent": "pi_threads", "amount": 250}, options={"idempotency_key": "one-key"}
        )
        return refund.id

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(pool.map(create, range(32)))
    assert len(ids) == 1
    assert len(sim.ledger()) == 1


async def test_many_concurrent_identical_requests_make_one_ledger_row(sim: Simulator) -> None:
    sim.payment("pi_burst", amount=10_000)
    sim.faults(latency_ms=20, jitter_ms=20)
    headers = {"Authorization": f"Bearer {SIMULATOR_KEY}", "Idempotency-Key": "burst"}
    body = {"payment_intent": "pi_burst", "amount": "100"}
    limits = httpx2.Limits(max_connections=100)
    async with httpx2.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:
        responses = await asyncio.gather(
            *(client.post(f"{sim.stripe_url}/v1/refunds", data=body, headers=headers) for _ in range(100))
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 99
    assert len(sim.ledger()) == 1


async def test_concurrent_different_keys_never_overdraw(sim: Simulator) -> None:
    """The refundable balance holds under concurrency: 10 x 300 against 1000 → exactly 3 succeed."""
    sim.payment("pi_race", amount=1000)
    sim.faults(latency_ms=10, jitter_ms=10)
    async with httpx2.AsyncClient(timeout=30, trust_env=False) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{sim.stripe_url}/v1/refunds",
                    data={"payment_intent": "pi_race", "amount": "300"},
                    headers={"Authorization": f"Bearer {SIMULATOR_KEY}", "Idempotency-Key": f"race-{i}"},
                )
                for i in range(10)
            )
        )
    assert sorted(r.status_code for r in responses) == [200] * 3 + [400] * 7
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 400} == {"amount_too_large"}
    assert sum(row["amount"] for row in sim.ledger()) == 900
