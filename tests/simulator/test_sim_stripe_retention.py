"""Idempotency-key retention, the refunds list, and mangled answers (issue 11), through the official SDK.

Stripe forgets a key after (at least) 24 hours: the same key then executes a new refund. The
simulator models that with ``idempotency_retention_seconds`` so a test can age a key in a second.
"""

from __future__ import annotations

import json
import time

import httpx2
import pytest
import stripe

from .conftest import SIMULATOR_KEY, Simulator


def create(sim: Simulator, reference: str, key: str, amount: int = 300) -> stripe.Refund:
    params: stripe.params.RefundCreateParams = {
        "payment_intent": reference,
        "amount": amount,
        "metadata": {"refundwatch_refund_id": "rf_1", "refundwatch_idempotency_key": key},
    }
    return sim.client().v1.refunds.create(params=params, options={"idempotency_key": key})


def age_past(seconds: float) -> None:
    """Let a key grow older than ``seconds`` (monotonic, bounded: the simulator measures the same way)."""
    deadline = time.monotonic() + seconds + 0.05
    while time.monotonic() < deadline:
        time.sleep(0.05)


# --- retention -----------------------------------------------------------------------------------------


def test_within_retention_the_key_replays(sim: Simulator) -> None:
    sim.payment("pi_keep", amount=5000)
    sim.faults(processor="stripe", idempotency_retention_seconds=60)
    first = create(sim, "pi_keep", "k-keep")
    again = create(sim, "pi_keep", "k-keep")
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(sim.ledger()) == 1


def test_past_retention_the_same_key_pays_again(sim: Simulator) -> None:
    """A blind re-send of an old key: Stripe no longer knows it, so it refunds a second time."""
    sim.payment("pi_old", amount=5000)
    sim.faults(processor="stripe", idempotency_retention_seconds=1)
    first = create(sim, "pi_old", "k-old")
    age_past(1.0)
    again = create(sim, "pi_old", "k-old")
    assert again.id != first.id
    assert again.last_response is not None
    assert "Idempotent-Replayed" not in again.last_response.headers
    rows = sim.ledger()
    assert [r["gateway_refund_id"] for r in rows] == [first.id, again.id]
    assert {r["idempotency_key"] for r in rows} == {"k-old"}
    (payment,) = sim.control("GET", "/payments?processor=stripe").json()
    assert payment["refunded"] == 600
    # The new execution is remembered again, for its own retention.
    assert create(sim, "pi_old", "k-old").id == again.id


def test_retention_is_per_processor_and_reset_restores_it(sim: Simulator) -> None:
    config = sim.faults(processor="stripe", idempotency_retention_seconds=1)
    assert config["stripe"]["idempotency_retention_seconds"] == 1.0
    assert config["adyen"]["idempotency_retention_seconds"] == 31 * 86400.0
    sim.reset()
    assert sim.control("GET", "/faults").json()["stripe"]["idempotency_retention_seconds"] == 86400.0


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_retention_seconds": -1},
        {"idempotency_retention_seconds": "1"},
        {"idempotency_retention_seconds": 10**12},
        {"malformed_rate": 1.5},
    ],
)
def test_bad_values_are_refused(sim: Simulator, body: dict[str, object]) -> None:
    response = sim.control("POST", "/faults", body)
    assert response.status_code == 400
    assert next(iter(body)) in response.json()["error"]


# --- the refunds list ----------------------------------------------------------------------------------


def test_list_pages_newest_first_with_metadata(sim: Simulator) -> None:
    sim.payment("pi_many", amount=10_000)
    sim.payment("pi_other", amount=10_000)
    created = [create(sim, "pi_many", f"k-{i}", amount=100 + i) for i in range(5)]
    create(sim, "pi_other", "k-other")
    client = sim.client()
    page = client.v1.refunds.list(params={"payment_intent": "pi_many", "limit": 2})
    assert page.object == "list"
    assert page.url == "/v1/refunds"
    assert page.has_more is True
    assert [r.id for r in page.data] == [created[4].id, created[3].id]
    following = client.v1.refunds.list(
        params={"payment_intent": "pi_many", "limit": 2, "starting_after": page.data[-1].id}
    )
    assert [r.id for r in following.data] == [created[2].id, created[1].id]
    every = list(page.auto_paging_iter())
    assert [r.id for r in every] == [r.id for r in reversed(created)]
    assert [r.metadata["refundwatch_idempotency_key"] for r in every] == [f"k-{i}" for i in range(4, -1, -1)]
    assert all(r.metadata["refundwatch_refund_id"] == "rf_1" for r in every)
    by_charge = client.v1.refunds.list(params={"charge": str(created[0].charge), "limit": 100})
    assert [r.id for r in by_charge.data] == [r.id for r in reversed(created)]
    assert by_charge.has_more is False


def test_list_of_an_unknown_payment_is_resource_missing(sim: Simulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sim.client().v1.refunds.list(params={"charge": "ch_nope"})
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"


# --- malformed answers ---------------------------------------------------------------------------------


def test_malformed_answers_still_execute_the_refund(sim: Simulator) -> None:
    """A proxy mangles the 2xx: the client cannot read it, yet the refund exists and its key is saved."""
    sim.payment("pi_mangled", amount=10_000)
    sim.faults(processor="stripe", malformed_rate=1.0)
    shapes = set()
    headers = {"Authorization": f"Bearer {SIMULATOR_KEY}"}
    with httpx2.Client(timeout=10.0, trust_env=False) as http:
        for i in range(16):
            form = {"payment_intent": "pi_mangled", "amount": "100"}
            try:
                response = http.post(
                    f"{sim.stripe_url}/v1/refunds", data=form, headers={**headers, "Idempotency-Key": f"m{i}"}
                )
            except httpx2.DecodingError:
                shapes.add("gzip")
                continue
            assert response.status_code == 200
            with pytest.raises(json.JSONDecodeError):
                response.json()
            shapes.add("truncated")
    assert shapes == {"truncated", "gzip"}  # 2^-15 chance of one shape only
    rows = sim.ledger()
    assert len(rows) == 16
    assert [r["idempotency_key"] for r in rows] == [f"m{i}" for i in range(16)]
    # The SDK sees an error, although the refund was executed.
    with pytest.raises(stripe.StripeError):
        create(sim, "pi_mangled", "sdk-1")
    assert len(sim.ledger()) == 17
    # Once the answers are clean again, the same key replays the refund that was executed.
    sim.faults(processor="stripe", malformed_rate=0.0)
    replayed = create(sim, "pi_mangled", "sdk-1")
    assert replayed.id == sim.ledger()[-1]["gateway_refund_id"]
    assert len(sim.ledger()) == 17
    assert sim.control("GET", "/payments").json()[0]["refunded"] == 16 * 100 + 300
