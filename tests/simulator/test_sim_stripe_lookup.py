"""refundwatch's Stripe adapter against the simulator: an unknown outcome settled by looking it up.

Two independent readings of Stripe's protocol (STYLE rule 12) meet here: the adapter's ``find_refund``
and the simulator's refunds list. The scenarios are issue 11's: a mangled 2xx after the refund was
executed (defect 2), and a blind re-send of a key past Stripe's retention (defect 4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from refundwatch.gateways.base import Credentials, ErrorCode, GatewayError, GatewayStatus, RefundRequest
from refundwatch.gateways.stripe import StripeGateway
from refundwatch.lib.crypto import Secret

from .conftest import SIMULATOR_KEY, Simulator
from .test_sim_stripe_retention import age_past

gateway = StripeGateway()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False) as client:
        yield client


def creds(sim: Simulator) -> Credentials:
    return Credentials(
        "stripe-sim", "stripe", sim.stripe_url, {"api_key": Secret(SIMULATOR_KEY)}, timeout_seconds=10
    )


def attempt(key: str, reference: str = "pi_lookup") -> RefundRequest:
    return RefundRequest("rf_7", reference, 700, "EUR", "requested_by_customer", key)


async def test_a_mangled_2xx_is_unknown_and_the_lookup_finds_the_refund(
    sim: Simulator, http: httpx2.AsyncClient
) -> None:
    sim.payment("pi_lookup", amount=5000)
    sim.faults(processor="stripe", malformed_rate=1.0)
    for i in range(4):  # both mangled shapes, whichever the simulator picks
        with pytest.raises(GatewayError) as caught:
            await gateway.create_refund(http, creds(sim), attempt(f"rw-rf_7-{i}"))
        assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
        assert caught.value.outcome_unknown
    ledger = sim.ledger()
    assert len(ledger) == 4  # every one was executed
    found = await gateway.find_refund(http, creds(sim), attempt("rw-rf_7-2"))
    assert found is not None
    assert found.gateway_refund_id == ledger[2]["gateway_refund_id"]
    assert (found.status, found.amount, found.currency, found.idempotency_key) == (
        GatewayStatus.SUCCEEDED,
        700,
        "EUR",
        "rw-rf_7-2",
    )
    assert await gateway.find_refund(http, creds(sim), attempt("rw-rf_7-never-sent")) is None


async def test_lookup_by_charge_follows_pages(sim: Simulator, http: httpx2.AsyncClient) -> None:
    sim.payment("ch_lookuppages", amount=500_000)
    for i in range(120):  # more than one page of 100
        request = RefundRequest(f"rf_{i}", "ch_lookuppages", 700, "EUR", "requested_by_customer", f"k{i}")
        await gateway.create_refund(http, creds(sim), request)
    oldest = RefundRequest("rf_0", "ch_lookuppages", 700, "EUR", "requested_by_customer", "k0")
    found = await gateway.find_refund(http, creds(sim), oldest)
    assert found is not None
    assert found.gateway_refund_id == sim.ledger()[0]["gateway_refund_id"]


async def test_a_blind_resend_past_retention_pays_twice_and_the_lookup_says_so(
    sim: Simulator, http: httpx2.AsyncClient
) -> None:
    sim.payment("pi_lookup", amount=5000)
    sim.faults(processor="stripe", idempotency_retention_seconds=1)
    request = attempt("rw-rf_7-1")
    first = await gateway.create_refund(http, creds(sim), request)
    found = await gateway.find_refund(http, creds(sim), request)
    assert found is not None
    assert found.gateway_refund_id == first.gateway_refund_id
    age_past(1.0)
    second = await gateway.create_refund(http, creds(sim), request)  # what a blind re-send does
    assert second.gateway_refund_id != first.gateway_refund_id
    assert len(sim.ledger()) == 2
    with pytest.raises(GatewayError) as caught:
        await gateway.find_refund(http, creds(sim), request)
    assert caught.value.code is ErrorCode.RESPONSE_MISMATCH  # paid twice: a person must look
